"""Any audio (or the audio track of a video) -> mono float32 at 16 kHz, the rate every encoder expects.

Decoding and resampling go through `vasa.media.read_audio` (PyAV/FFmpeg); channels are averaged
here (FFmpeg's own stereo->mono matrix scales by 1/sqrt(2), a plain mean keeps full-scale mono at
full scale). Silence is valid input; a file with no audio, no samples or damaged data is a `VasaError`.
"""

from __future__ import annotations

import math
import os

import numpy as np
from scipy.signal import resample_poly

from vasa.errors import VasaError
from vasa.latents import SAMPLE_RATE  # Whisper, wav2vec2/HuBERT and silero-vad all work at 16 kHz
from vasa.media import read_audio



def load_audio(source: str | os.PathLike | tuple[np.ndarray, int], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A path (audio or video file) or a `(samples, rate)` pair -> mono float32 (samples,) at `sample_rate`.

    Arrays may be (samples,), (channels, samples) with channels <= 8, or (samples, channels);
    integer PCM arrays are scaled to [-1, 1].
    """
    if isinstance(source, tuple):
        samples, rate = source
        return to_mono(samples, rate, sample_rate)
    decoded = read_audio(source, sample_rate=sample_rate, mono=False)
    if decoded is None:
        raise VasaError(f"{source} has no audio (no audio stream, or a stream without samples)")
    samples, _ = decoded  # (channels, samples) float32
    if samples.shape[-1] == 0:
        raise VasaError(f"{source} has an audio stream with no samples")
    return _checked(samples.mean(axis=0), str(source))


def to_mono(samples: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """An in-memory waveform -> mono float32 (samples,) at `target_rate` (polyphase resampling)."""
    samples = np.asarray(samples)
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise VasaError(f"sample rate must be a positive integer, got {sample_rate!r}")
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        samples = (samples.astype(np.float64) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
    elif samples.dtype.kind != "f":
        raise VasaError(f"unsupported audio dtype {samples.dtype}")
    if samples.ndim == 2:
        channel_axis = 0 if samples.shape[0] <= 8 and samples.shape[0] < samples.shape[1] else 1
        samples = samples.mean(axis=channel_axis)
    elif samples.ndim != 1:
        raise VasaError(f"audio must be (samples,) or (channels, samples), got shape {samples.shape}")
    if samples.size == 0:
        raise VasaError("audio has no samples")
    samples = samples.astype(np.float32)
    if sample_rate != target_rate:
        common = math.gcd(int(sample_rate), int(target_rate))
        samples = resample_poly(samples, target_rate // common, sample_rate // common).astype(np.float32)
    return _checked(samples, "audio")


def _checked(samples: np.ndarray, what: str) -> np.ndarray:
    if samples.size == 0:
        raise VasaError(f"{what} has no samples")
    if not np.all(np.isfinite(samples)):
        raise VasaError(f"{what} contains NaN or infinite samples")
    return np.ascontiguousarray(samples, dtype=np.float32)
