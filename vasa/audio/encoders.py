"""`AudioEncoder`: mono 16 kHz waveform -> features (T_frames, D) at the video fps.

An encoder only says how to turn one window of audio into frames at its own rate
(`encode_window`); `vasa.audio.streaming.AudioStream` cuts the audio into windows and resamples
to the video rate, for offline (`encode`) and streaming (`stream`) use alike.
Implementations: `WhisperEncoder` (default, vasa.audio.whisper), `TransformersEncoder`
(wav2vec2/HuBERT/WavLM from a local folder, vasa.audio.wav2vec2) and `LogMelEncoder` (no weights).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from vasa.audio import mel
from vasa.audio.loading import load_audio
from vasa.audio.streaming import AudioFeatures, AudioStream, WindowSchedule
from vasa.errors import VasaError
from vasa.latents import FPS as DEFAULT_FPS

WHISPER_NAMES = ("whisper", "whisper-base")  # packaged tiny.en; packaged base (multilingual)


class AudioEncoder(ABC):
    dim: int  # feature size D
    native_rate_hz: float  # frames per second that encode_window returns
    first_frame_s: float = 0.0  # time of native frame 0's centre after the window start
    default_schedule = WindowSchedule()

    def __init__(self, fps: float = DEFAULT_FPS, schedule: WindowSchedule | None = None):
        if not np.isfinite(fps) or fps <= 0:
            raise VasaError(f"fps must be a positive number, got {fps}")
        self.fps = float(fps)
        self.schedule = schedule or self.default_schedule

    @abstractmethod
    def encode_window(self, samples: np.ndarray) -> np.ndarray:
        """Mono 16 kHz samples (N,) -> (frames, dim) float32 at `native_rate_hz`, at least one frame."""

    def stream(self, vad=None) -> AudioStream:
        """A fresh incremental extractor; `vad` (a `VoiceActivity`) adds per-frame speech probability."""
        return AudioStream(self, vad)

    def encode(self, audio: np.ndarray | str | os.PathLike, vad=None) -> AudioFeatures:
        """Whole audio -> features of round(duration * fps) frames: the stream with one chunk.

        `audio` is a mono float32 16 kHz waveform or a path to any audio/video file.
        """
        waveform = audio if isinstance(audio, np.ndarray) else load_audio(audio)
        if waveform.ndim != 1 or waveform.size == 0:
            raise VasaError(f"need a non-empty mono waveform (samples,), got shape {waveform.shape}")
        stream = self.stream(vad)
        first = stream.push(waveform)
        return AudioFeatures.concatenate([first, stream.flush()])


class LogMelEncoder(AudioEncoder):
    """Log-mel filterbanks (Whisper's filters and log10 scaling, without the per-window floor), 100 Hz."""

    native_rate_hz = 1000.0 / 10.0  # hop 160 samples
    # Mel frames are local (a 25 ms window), so the features do not depend on the hop: hops of one video
    # frame make each frame final 20 ms after it ends (> the 12.5 ms half-window plus half a mel hop).
    default_schedule = WindowSchedule(hop_s=0.04, left_context_s=0.04, lookahead_s=0.02)

    def __init__(self, fps: float = DEFAULT_FPS, schedule: WindowSchedule | None = None, n_mels: int = mel.N_MELS):
        super().__init__(fps, schedule)
        self.dim = n_mels

    def encode_window(self, samples: np.ndarray) -> np.ndarray:
        frames = max(1, -(-samples.shape[0] // mel.HOP_SAMPLES))
        padded = np.pad(samples, (0, frames * mel.HOP_SAMPLES - samples.shape[0]))
        log_spec = mel.mel_power(padded, self.dim).clamp(min=mel.LOG_FLOOR).log10()
        return ((log_spec.T + 4.0) / 4.0).numpy().astype(np.float32)  # (frames, n_mels)


SPEC_KEYS = {"hop": "hop_s", "left": "left_context_s", "lookahead": "lookahead_s"}
LAYERS_KEY = "layers"  # "layers=2+4": encoder layers, concatenated in this order


def encoder_spec(name: str, schedule: WindowSchedule | None = None, layers: tuple[int, ...] | None = None) -> str:
    """An encoder's name with its layers and window schedule, e.g. "whisper:hop=0.08,left=1,lookahead=0.04"
    or "whisper:layers=3"; the bare name for the encoder's own output and default schedule."""
    options = [f"{LAYERS_KEY}=" + "+".join(str(int(layer)) for layer in layers)] if layers else []
    if schedule is not None:
        options += [f"{key}={getattr(schedule, field):g}" for key, field in SPEC_KEYS.items()]
    return name + (":" + ",".join(options) if options else "")


def parse_encoder_spec(spec: str) -> tuple[str, WindowSchedule | None, tuple[int, ...] | None]:
    """`encoder_spec`'s inverse: (name, schedule or None, layers or None)."""
    name, _, options = spec.partition(":")
    if not options:
        return name, None, None
    values, layers = {}, None
    for item in options.split(","):
        key, _, value = item.partition("=")
        if key == LAYERS_KEY:
            try:
                layers = tuple(int(layer) for layer in value.split("+"))
            except ValueError:
                raise VasaError(f"audio encoder {spec!r}: layers are whole numbers joined by +, got {value!r}") from None
            continue
        if key not in SPEC_KEYS:
            raise VasaError(f"audio encoder {spec!r}: unknown key {key!r} (use layers, hop, left, lookahead)")
        try:
            values[SPEC_KEYS[key]] = float(value)
        except ValueError:
            raise VasaError(f"audio encoder {spec!r}: {key} must be a number of seconds, got {value!r}") from None
    return name, (WindowSchedule(**values) if values else None), layers
