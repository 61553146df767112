"""Fréchet distances: FVD (I3D features of video clips) and the offline substitute over motion descriptors.

FVD (Unterthiner et al., "Towards accurate generative models of video", 2018) is the Fréchet distance
between Gaussians fitted to I3D features of real and generated clips; VASA-1 reports FVD25 (25-frame
clips). I3D is Inception-v1 inflated to 3D (Carreira & Zisserman, "Quo vadis, action recognition?",
CVPR 2017), trained on Kinetics-400; the feature is its 400 logits. No weights ship: `load_i3d(path)`
reads a state dict in the key layout of the common PyTorch port of the released model
(`Conv3d_1a_7x7.conv3d.weight`, `Conv3d_1a_7x7.bn.running_mean`, `Mixed_3b.b1b.conv3d.weight`, ...,
`logits.conv3d.bias`), as .safetensors or a torch state dict (read with weights_only=True). Inputs are RGB
clips resized to 224 x 224 and scaled to [-1, 1]. The logits are taken after a global average pool (the
port pools 2 x 7 x 7 windows and then averages over time; the two agree but for the edge frames' weight).

`frechet_distance` works on any features. Offline, the report computes it over per-frame motion
descriptors re-extracted from the videos (`vasa.eval`): it compares how faces move, not how they look.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from scipy import linalg
from torch import Tensor, nn

from vasa.errors import VasaError
from vasa.metrics.weights import load_weights

I3D_SIDE = 224
I3D_CLASSES = 400
BN_EPS = 1e-3  # the released model's batch-norm epsilon


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½) of features a (N, D), b (M, D); 0 for equal sets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise VasaError(f"Fréchet distance needs two (N >= 2, D) feature sets, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # near-singular product: regularise both covariances
        offset = eps * np.eye(len(cov_a))
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
    return max(value, 0.0)  # rounding can leave a tiny negative for identical sets


# --- I3D ---------------------------------------------------------------------------------------------------
def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (front, back) of one dimension."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    t, h, w = (_same_padding(s, k, st) for s, k, st in zip(x.shape[2:], kernel, stride))
    return nn.functional.pad(x, (*w, *h, *t))


class Unit3D(nn.Module):
    """Conv3d with "SAME" padding, then batch norm and ReLU (or a plain biased conv for the logits)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm: bool = True):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=not norm)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        return torch.relu(self.bn(x)) if self.bn is not None else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """An Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1, concatenated on channels."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(cin, widths[0])
        self.b1a, self.b1b = Unit3D(cin, widths[1]), Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, widths[3]), Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, widths[5])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """RGB clips (B, 3, T, 224, 224) in [-1, 1] -> Kinetics-400 logits (B, 400)."""

    def __init__(self, classes: int = I3D_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))  # (B, 64, T/2, 112, 112)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # (B, 64, T/2, 56, 56)
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # (B, 192, T/2, 28, 28)
        self.Mixed_3b = Mixed(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = Mixed(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))  # (B, 480, T/4, 14, 14)
        self.Mixed_4b = Mixed(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = Mixed(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = Mixed(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = Mixed(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = Mixed(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))  # (B, 832, T/8, 7, 7)
        self.Mixed_5b = Mixed(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = Mixed(832, (384, 192, 384, 48, 128, 128))  # (B, 1024, T/8, 7, 7)
        self.logits = Unit3D(1024, classes, norm=False)

    def features(self, clips: Tensor) -> Tensor:
        """(B, 1024) globally pooled features of the last Inception block."""
        x = clips
        for name, module in self.named_children():
            if name == "logits":
                break
            x = module(x)
        return x.mean(dim=(2, 3, 4))

    def forward(self, clips: Tensor) -> Tensor:
        pooled = self.features(clips)[:, :, None, None, None]  # (B, 1024, 1, 1, 1)
        return self.logits(pooled).flatten(1)  # (B, classes)


def load_i3d(path: str | os.PathLike) -> I3D:
    """I3D with the weights at `path` (.safetensors or a torch state dict), strict keys, eval mode."""
    return load_weights(I3D(), path, "I3D")


def i3d_clips(frames: np.ndarray, clip_frames: int = 25) -> Tensor:
    """Frames (T, H, W, 3) RGB uint8 -> non-overlapping clips (N, 3, clip_frames, 224, 224) in [-1, 1]."""
    import cv2

    count = len(frames) // clip_frames
    if count == 0:
        raise VasaError(f"{len(frames)} frames are fewer than one {clip_frames}-frame clip")
    resized = np.stack([cv2.resize(f, (I3D_SIDE, I3D_SIDE), interpolation=cv2.INTER_AREA)
                        for f in frames[:count * clip_frames]])
    x = torch.from_numpy(resized).float().div(127.5).sub(1.0)  # (N clip_frames, 224, 224, 3)
    return x.reshape(count, clip_frames, I3D_SIDE, I3D_SIDE, 3).permute(0, 4, 1, 2, 3)


@torch.no_grad()
def fvd(model: I3D, real_videos: list[np.ndarray], generated_videos: list[np.ndarray], clip_frames: int = 25) -> float:
    """FVD{clip_frames} between two sets of videos (each (T, H, W, 3) RGB uint8), cut into clips."""
    def logits(videos):
        return torch.cat([model(i3d_clips(v, clip_frames)) for v in videos]).numpy()

    return frechet_distance(logits(real_videos), logits(generated_videos))
