"""Loading every common audio format, rate and channel layout (and a video's audio) as mono 16 kHz."""

from __future__ import annotations

import shutil
import subprocess
import wave

import av
import numpy as np
import pytest

from vasa import media
from vasa.audio import SAMPLE_RATE, load_audio, to_mono
from vasa.errors import VasaError

RNG_SEED = 0
TONE_HZ = 440.0
FLITE = shutil.which("flite")
SPEECH_TEXT = "The quick brown fox jumps over the lazy dog. Open the window, please."


def tone(seconds: float, rate: int, channels: int, amplitudes=(0.6, 0.2)) -> np.ndarray:
    """(channels, samples) float32: the same 440 Hz sine per channel at different levels."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave_ = np.sin(2 * np.pi * TONE_HZ * t)
    return np.stack([a * wave_ for a in amplitudes[:channels]]).astype(np.float32)


def write_audio(path, samples: np.ndarray, rate: int, codec: str, sample_format: str) -> None:
    """(channels, samples) float -> file through PyAV (the test makes every fixture it needs)."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        stream.format = sample_format
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
        for start in range(0, samples.shape[1], 1000):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1000]),
                                               format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            for converted in resampler.resample(frame):
                container.mux(stream.encode(converted))
        container.mux(stream.encode(None))


def peak_hz(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def flite_speech(path, text: str = SPEECH_TEXT) -> np.ndarray:
    """Speech from Debian's flite (offline TTS) as mono 16 kHz; skips the test when flite is absent."""
    if FLITE is None:
        pytest.skip("flite is not installed (apt install flite)")
    subprocess.run([FLITE, "-t", text, "-o", str(path)], check=True, capture_output=True)
    return load_audio(path)


FORMATS = {  # extension -> (codec, sample format, lossy)
    "wav16": ("wav", "pcm_s16le", "s16", False),
    "wav24": ("wav", "pcm_s24le", "s32", False),
    "wav32": ("wav", "pcm_s32le", "s32", False),
    "wavf32": ("wav", "pcm_f32le", "flt", False),
    "flac": ("flac", "flac", "s16", False),
    "mp3": ("mp3", "libmp3lame", "fltp", True),
    "m4a": ("m4a", "aac", "fltp", True),
}
CASES = [(name, 44100, 2) for name in FORMATS] + [
    ("wav16", 8000, 1), ("wav16", 16000, 1), ("wav24", 48000, 2), ("wav16", 22050, 2),
    ("flac", 96000, 1), ("mp3", 48000, 1), ("m4a", 22050, 1), ("wavf32", 11025, 2),
]


@pytest.mark.parametrize("name,rate,channels", CASES)
def test_every_format_rate_and_layout_becomes_mono_16k(tmp_path, name, rate, channels):
    extension, codec, sample_format, lossy = FORMATS[name]
    seconds = 1.3
    path = tmp_path / f"tone.{extension}"
    write_audio(path, tone(seconds, rate, channels), rate, codec, sample_format)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - seconds * SAMPLE_RATE) <= (0.03 * SAMPLE_RATE if lossy else 2)
    assert abs(peak_hz(audio) - TONE_HZ) < 2.0
    middle = audio[len(audio) // 4 : 3 * len(audio) // 4]
    expected = 0.4 if channels == 2 else 0.6  # channels are averaged: (0.6 + 0.2) / 2
    assert abs(np.abs(middle).max() - expected) < (0.03 if lossy else 0.005)


def test_lossless_16bit_wav_at_16k_is_read_exactly(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    pcm = (rng.uniform(-0.5, 0.5, 8001) * 32767).astype("<i2")
    path = tmp_path / "noise.wav"
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1), file.setsampwidth(2), file.setframerate(SAMPLE_RATE)
        file.writeframes(pcm.tobytes())
    np.testing.assert_allclose(load_audio(path), pcm / 32768.0, atol=1e-7)


def test_silence_is_valid_input(tmp_path):
    path = tmp_path / "silence.wav"
    write_audio(path, np.zeros((2, 12345), np.float32), 44100, "pcm_s16le", "s16")
    audio = load_audio(path)
    assert np.all(audio == 0) and abs(len(audio) - 12345 * 16000 / 44100) <= 2


def test_audio_track_of_a_video(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = [np.full((32, 32, 3), 128, np.uint8)] * 25  # 1 s at 25 fps
    media.write_video(path, frames, fps=25, audio=(tone(1.5, 48000, 2), 48000))
    audio = load_audio(path)
    assert abs(len(audio) - SAMPLE_RATE) <= 0.05 * SAMPLE_RATE  # audio is cut to the video's length
    assert abs(peak_hz(audio) - TONE_HZ) < 2.0


def test_video_without_audio_is_a_clear_error(tmp_path):
    path = tmp_path / "mute.mp4"
    media.write_video(path, [np.zeros((32, 32, 3), np.uint8)] * 5, fps=25)
    with pytest.raises(VasaError, match="no audio"):
        load_audio(path)


def test_empty_corrupt_missing_and_zero_length_files_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(np.random.default_rng(RNG_SEED).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    header_only = tmp_path / "header.wav"
    with wave.open(str(header_only), "wb") as file:
        file.setnchannels(1), file.setsampwidth(2), file.setframerate(SAMPLE_RATE)
    for path, message in [(empty, "empty"), (corrupt, "cannot"), (header_only, "no audio"),
                          (tmp_path / "missing.wav", "not found"), (tmp_path, "folder")]:
        with pytest.raises(VasaError, match=message):
            load_audio(path)


def test_arrays_in_any_layout_dtype_and_rate():
    stereo = tone(0.5, 48000, 2)  # (2, N)
    from_rows = load_audio((stereo, 48000))
    from_columns = load_audio((stereo.T.copy(), 48000))
    np.testing.assert_array_equal(from_rows, from_columns)
    assert len(from_rows) == 8000 and abs(peak_hz(from_rows) - TONE_HZ) < 2.0
    pcm = (tone(0.25, 16000, 1)[0] * 32767).astype(np.int16)
    np.testing.assert_allclose(to_mono(pcm, 16000), pcm / 32768.0, atol=1e-7)
    with pytest.raises(VasaError, match="NaN"):
        to_mono(np.array([0.0, np.nan, 0.1]), 16000)
    with pytest.raises(VasaError, match="no samples"):
        to_mono(np.zeros(0, np.float32), 16000)
    with pytest.raises(VasaError, match="sample rate"):
        to_mono(np.zeros(10, np.float32), 0)


def test_flite_speech_loads(tmp_path):
    speech = flite_speech(tmp_path / "speech.wav")
    assert speech.dtype == np.float32 and len(speech) > SAMPLE_RATE  # a sentence lasts over a second
    assert 0.01 < np.sqrt(np.mean(speech**2)) < 0.5
