"""Whisper's log-mel input, written from its definition (Radford et al. 2022, sec. 2.2 and the
released preprocessing): 25 ms Hann windows (n_fft 400) every 10 ms (hop 160) at 16 kHz, power
spectrum, 80 Slaney-scale mel bands up to 8 kHz, log10 clamped at 1e-10, then floored at 8 below
the window's maximum and mapped by (x + 4) / 4.
"""

from __future__ import annotations

import numpy as np
import torch

from vasa.latents import SAMPLE_RATE
N_FFT = 400  # 25 ms window
HOP_SAMPLES = 160  # 10 ms: 100 mel frames per second
N_MELS = 80
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below the window's loudest bin (Whisper)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3.0))


def mel_filters(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular Slaney mel filterbank with area normalisation -> (n_mels, n_fft // 2 + 1) float32."""
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges_hz)  # (n_mels + 1,)
    offsets = edges_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, bins)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per band
    return weights.astype(np.float32)


_FILTERS: dict[int, torch.Tensor] = {}


def mel_power(samples: np.ndarray, n_mels: int = N_MELS) -> torch.Tensor:
    """Mono 16 kHz samples -> mel power (n_mels, len // 160), frame j centred on sample 160 j."""
    audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    if audio.shape[0] <= N_FFT // 2:  # reflect padding needs more samples than half a window
        audio = torch.nn.functional.pad(audio, (0, N_FFT // 2 + 1 - audio.shape[0]))
    window = torch.hann_window(N_FFT)
    spectrum = torch.stft(audio, N_FFT, HOP_SAMPLES, window=window, center=True, pad_mode="reflect",
                          return_complex=True)  # (bins, frames + 1)
    power = spectrum[:, :-1].abs() ** 2
    if n_mels not in _FILTERS:
        _FILTERS[n_mels] = torch.from_numpy(mel_filters(n_mels=n_mels))
    return _FILTERS[n_mels] @ power  # (n_mels, frames)


def log_mel(samples: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """Whisper's normalised log-mel spectrogram -> float32 (n_mels, len // 160)."""
    log_spec = torch.clamp(mel_power(samples, n_mels), min=LOG_FLOOR).log10()
    if log_spec.numel():
        log_spec = torch.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
    return ((log_spec + 4.0) / 4.0).numpy()
