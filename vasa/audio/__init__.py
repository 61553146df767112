"""Audio front end: loading (any file -> mono 16 kHz), encoders at the video fps, streaming, VAD.

    from vasa.audio import WhisperEncoder, VoiceActivity, load_audio
    encoder = WhisperEncoder()                     # packaged Whisper tiny.en, 384-d, 25 fps
    feats = encoder.encode(load_audio("speech.m4a"), vad=VoiceActivity())
    feats.features  # (round(duration * 25), 384) float32;  feats.voice  # (T,) speech probability

    stream = encoder.stream(vad=VoiceActivity())   # same windows, audio in chunks of any size
    for chunk in chunks: new = stream.push(chunk)  # features of frames that became final
    last = stream.flush()

Heavy back ends (CTranslate2, transformers, onnxruntime) are imported only by the classes that use them.
"""

from vasa.audio.encoders import AudioEncoder, LogMelEncoder
from vasa.audio.loading import SAMPLE_RATE, load_audio, to_mono
from vasa.audio.registry import load_encoder
from vasa.audio.streaming import AudioFeatures, AudioStream, WindowSchedule
from vasa.audio.vad import VoiceActivity
from vasa.audio.wav2vec2 import TransformersEncoder
from vasa.audio.whisper import WhisperEncoder

__all__ = [
    "SAMPLE_RATE", "AudioEncoder", "AudioFeatures", "AudioStream", "LogMelEncoder", "TransformersEncoder",
    "VoiceActivity", "WhisperEncoder", "WindowSchedule", "load_audio", "load_encoder", "to_mono",
]
