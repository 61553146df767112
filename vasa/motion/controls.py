"""Post-controls in motion space: applied to generated [pose, dynamics] frames before decoding.

    frames = scale_head_motion(frames, 0.5, center=portrait_pose)   # calmer head
    frames = scale_expression(frames, 1.3, neutral=portrait_dynamics)
    frames = still_head(frames, portrait_pose)
    smoother = Smoother(pose=0.6, dynamics=0.0); frames = smoother.push(frames)   # streaming-safe

Frames are (T, motion_dim) arrays: pose = frames[:, :6] (yaw, pitch, roll in degrees, tx, ty, scale),
dynamics = the rest. Each function returns a new array.

Centres. Offline, the head-motion centre defaults to the clip's mean pose; a stream does not know its
clip's mean yet, so streaming callers pass a centre (the portrait's own pose is the natural one). The
expression centre is the neutral dynamics: the portrait's own dynamics, or zeros (the basis's mean face).

Smoothing. `Smoother` is a causal one-pole low-pass (exponential moving average) per channel:
y_n = a y_{n-1} + (1 - a) x_n with a = strength in [0, 1). It keeps one frame of state, so it runs on a
stream chunk by chunk and gives the same output as on the whole clip, with no added latency in frames;
the price is phase lag (group delay a / (1 - a) frames at low frequencies: 1 frame = 40 ms at a = 0.5).
`smooth_zero_phase` runs the same filter forwards then backwards: no lag, but it needs the whole clip
(offline only). Keep dynamics strength low: smoothing the mouth costs lip sync.
"""

from __future__ import annotations

import numpy as np

from vasa.motion.config import POSE_DIM


def _check(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] <= POSE_DIM:
        raise ValueError(f"motion frames must be (T, {POSE_DIM} + dynamics), got {frames.shape}")
    return frames


def scale_head_motion(frames: np.ndarray, scale: float, center: np.ndarray | None = None) -> np.ndarray:
    """Head-motion amplitude: pose = center + scale (pose - center); center = the clip's mean pose by default."""
    frames = _check(frames).copy()
    pose = frames[:, :POSE_DIM]
    center = pose.mean(axis=0) if center is None else np.asarray(center, dtype=np.float64)
    frames[:, :POSE_DIM] = center + scale * (pose - center)
    return frames


def scale_expression(frames: np.ndarray, scale: float, neutral: np.ndarray | None = None) -> np.ndarray:
    """Expression amplitude: dynamics = neutral + scale (dynamics - neutral); neutral = zeros by default."""
    frames = _check(frames).copy()
    neutral = 0.0 if neutral is None else np.asarray(neutral, dtype=np.float64)
    frames[:, POSE_DIM:] = neutral + scale * (frames[:, POSE_DIM:] - neutral)
    return frames


def still_head(frames: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
    """Still-head mode: every frame gets `pose` (6,) (default: the clip's first pose); dynamics untouched."""
    frames = _check(frames).copy()
    frames[:, :POSE_DIM] = frames[0, :POSE_DIM] if pose is None else np.asarray(pose, dtype=np.float64)
    return frames


class Smoother:
    """Causal exponential smoothing with separate strengths for pose and dynamics, in [0, 1) (0 = off)."""

    def __init__(self, pose: float = 0.5, dynamics: float = 0.0):
        for name, value in (("pose", pose), ("dynamics", dynamics)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} smoothing strength must be in [0, 1), got {value}")
        self.pose, self.dynamics = pose, dynamics
        self._state: np.ndarray | None = None  # last output frame

    def _strengths(self, dim: int) -> np.ndarray:
        a = np.full(dim, self.dynamics)
        a[:POSE_DIM] = self.pose
        return a

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Frames (n, D) -> smoothed frames (n, D); the first frame ever passes through unchanged."""
        frames = _check(frames) if len(frames) else np.zeros((0, np.shape(frames)[-1]))
        a = self._strengths(frames.shape[1])
        out = np.empty_like(frames)
        state = self._state
        for i, x in enumerate(frames):
            state = x if state is None else a * state + (1 - a) * x
            out[i] = state
        self._state = state
        return out


def smooth_zero_phase(frames: np.ndarray, pose: float = 0.5, dynamics: float = 0.0) -> np.ndarray:
    """Offline only: the `Smoother` forwards then backwards, which cancels its lag."""
    forward = Smoother(pose, dynamics).push(frames)
    return Smoother(pose, dynamics).push(forward[::-1])[::-1].copy()
