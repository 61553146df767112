"""SyncNet lip-sync scores (SC: confidence, SD: distance), as VASA-1 and most talking-face papers report them.

The network is SyncNet (Chung & Zisserman, "Out of time: automated lip sync in the wild", ACCV
workshops 2016) in the layout of its public release ("syncnet_v2"): a 2D audio CNN over 13 MFCCs x 20
steps (0.2 s) and a 3D video CNN over 5 face-crop frames (0.2 s at 25 fps, 224 x 224), each ending in a
1024-d embedding. The scoring protocol is the release's: an embedding per video frame (the 5 frames from
it on, and the 20 MFCC steps from 4 x frame on); for every audio offset in [-15, 15] frames the mean
Euclidean distance between video and offset audio embeddings (audio past the ends counts as a zero
embedding); SD = the smallest mean distance, the offset = where it is, SC = median over offsets - SD.

No weights ship (none are redistributable here). `load_syncnet(path)` reads a state dict with this
module's keys, which are the release's (`netcnnaud.0.weight`, ..., `netfclip.3.bias`): a .safetensors file,
or the release's `syncnet_v2.model` read with `torch.load(weights_only=True)` (tensors only, no code).
Inputs follow the release: face crops as float BGR in 0..255 (OpenCV's order), audio at 16 kHz.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from vasa.errors import VasaError
from vasa.latents import SAMPLE_RATE
from vasa.metrics.weights import load_weights

MFCC_PER_FRAME = 4  # 100 MFCC steps per second / 25 video frames per second
VIDEO_FRAMES = 5  # frames per video window (0.2 s)
AUDIO_STEPS = 20  # MFCC steps per audio window (0.2 s)
CROP_SIDE = 224
MAX_OFFSET = 15  # frames searched either way
# MFCC as in the release's front end (HTK-style, the python_speech_features defaults)
WINDOW_SAMPLES, HOP_SAMPLES, N_FFT = 400, 160, 512  # 25 ms, 10 ms
N_FILTERS, N_CEPSTRA, LIFTER, PREEMPHASIS = 26, 13, 22, 0.97
EPS = np.finfo(np.float64).eps


# --- audio front end --------------------------------------------------------------------------------------
def mel_filterbank(n_filters: int = N_FILTERS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters on the HTK mel scale, 0 Hz..Nyquist, on FFT bins: (n_filters, n_fft // 2 + 1)."""
    mel = np.linspace(0.0, 2595 * np.log10(1 + (sample_rate / 2) / 700), n_filters + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    bins = np.floor((n_fft + 1) * hz / sample_rate).astype(int)
    bank = np.zeros((n_filters, n_fft // 2 + 1))
    for j in range(n_filters):
        left, centre, right = bins[j], bins[j + 1], bins[j + 2]
        for i in range(left, centre):
            bank[j, i] = (i - left) / max(centre - left, 1)
        for i in range(centre, right):
            bank[j, i] = (right - i) / max(right - centre, 1)
    return bank


def mfcc(waveform: np.ndarray) -> np.ndarray:
    """Mono 16 kHz waveform -> (N, 13) MFCCs at 100 per second: pre-emphasis, 25 ms rectangular frames,
    512-point power spectrum, 26 mel filters, log, DCT-II, liftering, coefficient 0 replaced by log energy."""
    x = np.asarray(waveform, np.float64)
    x = np.append(x[:1], x[1:] - PREEMPHASIS * x[:-1])
    count = 1 + int(np.ceil(max(len(x) - WINDOW_SAMPLES, 0) / HOP_SAMPLES))
    x = np.pad(x, (0, (count - 1) * HOP_SAMPLES + WINDOW_SAMPLES - len(x)))
    index = np.arange(WINDOW_SAMPLES)[None, :] + HOP_SAMPLES * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(x[index], N_FFT)) ** 2 / N_FFT  # (N, 257)
    energy = np.maximum(power.sum(axis=1), EPS)
    log_mel = np.log(np.maximum(power @ mel_filterbank().T, EPS))  # (N, 26)
    n = np.arange(N_FILTERS)
    dct = np.cos(np.pi * np.arange(N_CEPSTRA)[:, None] * (2 * n[None, :] + 1) / (2 * N_FILTERS))  # DCT-II
    dct *= np.sqrt(2.0 / N_FILTERS)
    dct[0] /= np.sqrt(2.0)  # orthonormal
    cepstra = log_mel @ dct.T  # (N, 13)
    cepstra *= 1 + (LIFTER / 2) * np.sin(np.pi * np.arange(N_CEPSTRA) / LIFTER)
    cepstra[:, 0] = np.log(energy)
    return cepstra.astype(np.float32)


# --- the network --------------------------------------------------------------------------------------------
def _conv2d(cin: int, cout: int, kernel, padding) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout), nn.ReLU()]


def _conv3d(cin: int, cout: int, kernel, stride=(1, 1, 1), padding=(0, 0, 0)) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding), nn.BatchNorm3d(cout), nn.ReLU()]


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))


class SyncNet(nn.Module):
    """Audio (B, 1, 13, 20) MFCCs and video (B, 3, 5, 224, 224) BGR crops -> 1024-d embeddings each."""

    def __init__(self):
        super().__init__()
        self.netcnnaud = nn.Sequential(  # (B, 1, 13, 20)
            *_conv2d(1, 64, 3, 1), nn.MaxPool2d(1, 1),
            *_conv2d(64, 192, 3, 1), nn.MaxPool2d(3, (1, 2)),  # (B, 192, 11, 9)
            *_conv2d(192, 384, 3, 1), *_conv2d(384, 256, 3, 1), *_conv2d(256, 256, 3, 1),
            nn.MaxPool2d(3, 2),  # (B, 256, 5, 4)
            *_conv2d(256, 512, (5, 4), 0),  # (B, 512, 1, 1)
        )
        self.netfcaud = _head()
        self.netfclip = _head()
        self.netcnnlip = nn.Sequential(  # (B, 3, 5, 224, 224)
            *_conv3d(3, 96, (5, 7, 7), (1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),  # (B, 96, 1, 54, 54)
            *_conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # (B, 256, 1, 13, 13)
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),  # (B, 256, 1, 6, 6)
            *_conv3d(256, 512, (1, 6, 6)),  # (B, 512, 1, 1, 1)
        )

    def forward_audio(self, mfccs: Tensor) -> Tensor:
        return self.netfcaud(self.netcnnaud(mfccs).flatten(1))  # (B, 1024)

    def forward_video(self, crops: Tensor) -> Tensor:
        return self.netfclip(self.netcnnlip(crops).flatten(1))  # (B, 1024)


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """SyncNet with the weights at `path` (.safetensors or a torch state dict), strict keys, eval mode."""
    return load_weights(SyncNet(), path, "SyncNet")


# --- the protocol ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncScore:
    offset: int  # frames; the audio offset where the distance is smallest (0 = in sync)
    distance: float  # SD: the smallest mean distance
    confidence: float  # SC: median mean distance over offsets - SD
    distances: np.ndarray  # (2 MAX_OFFSET + 1,) mean distance per offset, offsets -MAX_OFFSET..MAX_OFFSET


def offset_distances(video: Tensor, audio: Tensor, max_offset: int = MAX_OFFSET) -> np.ndarray:
    """Video (N, E) and audio (N, E) embeddings -> (2 max_offset + 1,) mean distance of video frame i to
    audio frame i + k - max_offset over i; audio beyond the ends is a zero embedding (as released)."""
    padded = nn.functional.pad(audio, (0, 0, max_offset, max_offset))  # (N + 2 max_offset, E)
    n = len(video)
    window = torch.stack([padded[k:k + n] for k in range(2 * max_offset + 1)])  # (2 max_offset + 1, N, E)
    return nn.functional.pairwise_distance(video[None], window, eps=1e-6).mean(dim=1).numpy()


def sync_score(distances: np.ndarray) -> SyncScore:
    """Offset, SD and SC from the mean distances per offset."""
    max_offset = (len(distances) - 1) // 2
    best = int(np.argmin(distances))
    return SyncScore(offset=max_offset - best, distance=float(distances[best]),
                     confidence=float(np.median(distances) - distances[best]), distances=distances)


@torch.no_grad()
def syncnet_score(model: SyncNet, crops: np.ndarray, waveform: np.ndarray, batch: int = 20,
                  max_offset: int = MAX_OFFSET) -> SyncScore:
    """SC/SD of a video: face crops (T, 224, 224, 3) RGB uint8 at 25 fps and its 16 kHz mono audio."""
    if crops.shape[1:] != (CROP_SIDE, CROP_SIDE, 3):
        raise VasaError(f"SyncNet takes {CROP_SIDE}x{CROP_SIDE} RGB crops, got {crops.shape[1:]}")
    coefficients = mfcc(waveform)  # (M, 13)
    count = min(len(crops), len(coefficients) // MFCC_PER_FRAME) - VIDEO_FRAMES + 1
    if count < 1:
        raise VasaError("the video is shorter than SyncNet's window of 5 frames")
    bgr = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).float().permute(3, 0, 1, 2)  # (3, T, H, W)
    mel = torch.from_numpy(coefficients.T.copy())  # (13, M)
    video, audio = [], []
    for start in range(0, count, batch):
        frames = range(start, min(start + batch, count))
        video.append(model.forward_video(torch.stack([bgr[:, i:i + VIDEO_FRAMES] for i in frames])))
        audio.append(model.forward_audio(torch.stack(
            [mel[None, :, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + AUDIO_STEPS] for i in frames])))
    return sync_score(offset_distances(torch.cat(video), torch.cat(audio), max_offset))
