"""Post-controls in motion space: applied to generated [pose, dynamics] frames before decoding.

    frames = scale_head_motion(frames, 0.5, center=portrait_pose)   # calmer head
    frames = scale_expression(frames, 1.3)                          # livelier face around the rest face
    frames = still_head(frames, portrait_pose)
    smoother = Smoother(pose=0.6, dynamics=0.0); frames = smoother.push(frames)   # streaming-safe

`vasa.pipeline.MotionStage` applies them in this order to every chunk of generated motion.

Frames are (T, motion_dim) arrays: pose = frames[:, :6] (yaw, pitch, roll in degrees, tx, ty, scale),
dynamics = the rest. Each function returns a new array.

Centres. Offline, the head-motion centre defaults to the clip's mean pose; a stream does not know its
clip's mean yet, so streaming callers pass a centre (the portrait's own pose is the natural one). The
expression centre is the neutral dynamics: the portrait's own dynamics, or zeros (the basis's mean face).

Smoothing. `Smoother` is a causal one-pole low-pass (exponential moving average) per channel:
y_n = a y_{n-1} + (1 - a) x_n with a = strength in [0, 1). It keeps one frame of state, so it runs on a
stream chunk by chunk and gives the same output as on the whole clip, with no added latency in frames;
the price is phase lag (group delay a / (1 - a) frames at low frequencies: 1 frame = 40 ms at a = 0.5).
Keep dynamics strength low: smoothing the mouth costs lip sync.
"""

from __future__ import annotations

import numpy as np

from vasa.latents import FPS, POSE_DIM


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
    if neutral is None:
        frames[:, POSE_DIM:] *= scale
    else:
        neutral = np.asarray(neutral, dtype=np.float64)
        frames[:, POSE_DIM:] = neutral + scale * (frames[:, POSE_DIM:] - neutral)
    return frames


def still_head(frames: np.ndarray, pose: np.ndarray | None = None) -> np.ndarray:
    """Still-head mode: every frame's rotation and position become `pose`'s (default: the clip's first
    frame's); the scale (head distance) and the dynamics are left as they are."""
    frames = _check(frames).copy()
    held = frames[0, :POSE_DIM] if pose is None else np.asarray(pose, dtype=np.float64)
    frames[:, :STILL_FIELDS] = held[:STILL_FIELDS]
    return frames


STILL_FIELDS = 5  # yaw, pitch, roll, tx, ty: the scale is left to the distance control


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


# A blink's lid closure per 25 fps frame (1 = lids meet): about 80 ms closing, 40 ms shut and 160 ms
# opening, the shape of a spontaneous blink (fast down, slower up).
BLINK_PROFILE = np.array([0.4, 0.85, 1.0, 0.8, 0.5, 0.25, 0.1])
BLINK_FREE_FRAMES = 4  # the least number of open frames between two blinks
MAX_BLINKS_PER_MINUTE = 60.0


class Blinks:
    """Blink-rate control: the generated motion's own blinks out, blinks at `per_minute` in.

    Works on the eye opening (lid gap) of each eye, linear in the dynamics: opening = rest +
    `jacobian` @ dynamics with `jacobian` (2, K) and `rest` (2,) the opening of dynamics 0. The
    generated blinks (dips narrower than 2 * `half_width` + 1 frames) are taken out by a
    morphological closing in time (the running max, then the running min, over +-`half_width`
    frames), which keeps slower lid motion (squints, lids following a downward look). Blinks then
    start at intervals of `BLINK_FREE_FRAMES` plus a gamma(2) draw with the right mean, seeded, and
    close the lids by `BLINK_PROFILE`. Each eye's change is made along its lid direction
    (`directions` (2, K)), as `vasa.face.mesh.edits.blink` does.

    Streams: `push(frames)` returns the frames whose `2 * half_width` frames of lookahead have
    arrived, `flush()` the rest; any chunking gives the same frames.
    """

    def __init__(self, per_minute: float, jacobian: np.ndarray, directions: np.ndarray, rest: np.ndarray,
                 seed: int = 0, fps: float = FPS, half_width: int = 2):
        if not 0.0 <= per_minute <= MAX_BLINKS_PER_MINUTE:
            raise ValueError(f"blinks per minute must be in [0, {MAX_BLINKS_PER_MINUTE:g}], got {per_minute}")
        self.jacobian = np.asarray(jacobian, dtype=np.float64)
        self.rest = np.asarray(rest, dtype=np.float64)
        directions = np.asarray(directions, dtype=np.float64)
        # dynamics change per unit change of each eye's opening, along the lid directions: (K, 2)
        self.to_dynamics = directions.T @ np.linalg.inv(self.jacobian @ directions.T)
        self.half_width = half_width
        self.lookahead_frames = 2 * half_width  # frames a stream holds back for the closing
        self.mean_interval = np.inf if per_minute == 0 else 60.0 * fps / per_minute  # frames
        self.rng = np.random.default_rng([seed, 0xB1])  # its own stream: other controls draw nothing from it
        self._frames = np.zeros((0, POSE_DIM + self.jacobian.shape[1]))  # frames from `_released` on
        self._openings = np.zeros((0, 2))  # eye openings of the frames from `_base` on
        self._base = self._released = 0
        self._onsets: list[int] = []  # blink onsets whose closure may reach frames not yet released
        self._next_onset = self._interval()

    def _interval(self) -> float:
        if np.isinf(self.mean_interval):
            return np.inf
        gap = len(BLINK_PROFILE) + BLINK_FREE_FRAMES
        return gap + self.rng.gamma(2.0, max(self.mean_interval - gap, 0.0) / 2.0)

    def push(self, frames: np.ndarray) -> np.ndarray:
        return self._release(frames, final=False)

    def flush(self) -> np.ndarray:
        return self._release(self._frames[:0], final=True)

    def _release(self, frames: np.ndarray, final: bool) -> np.ndarray:
        frames = np.asarray(frames, dtype=np.float64).reshape(-1, self._frames.shape[1])
        self._frames = np.concatenate([self._frames, frames])
        self._openings = np.concatenate([self._openings, self.rest + frames[:, POSE_DIM:] @ self.jacobian.T])
        w, first = self.half_width, self._released
        total = self._base + len(self._openings)  # frames received
        last = total if final else total - self.lookahead_frames  # frames [first, last) leave now
        if last <= first:
            return self._frames[:0]
        # the closing needs openings [first - 2w, last + 2w): edges repeat the first / last frame
        lo = first - 2 * w
        window = self._openings[max(lo, self._base) - self._base:]
        window = np.concatenate([np.repeat(window[:1], max(self._base - lo, 0), axis=0), window,
                                 np.repeat(window[-1:], last + 2 * w - total, axis=0)])
        dilated = np.lib.stride_tricks.sliding_window_view(window, 2 * w + 1, axis=0).max(-1)
        closed = np.lib.stride_tricks.sliding_window_view(dilated, 2 * w + 1, axis=0).min(-1)  # (last - first, 2)
        while self._next_onset < last:
            self._onsets.append(int(round(self._next_onset)))
            self._next_onset += self._interval()
        closure = np.zeros(last - first)
        for onset in self._onsets:
            for k, value in enumerate(BLINK_PROFILE):
                if first <= onset + k < last:
                    closure[onset + k - first] = max(closure[onset + k - first], value)
        self._onsets = [o for o in self._onsets if o + len(BLINK_PROFILE) > last]
        out, self._frames = self._frames[:last - first].copy(), self._frames[last - first:]
        target = closed * (1.0 - closure[:, None])
        current = self.rest + out[:, POSE_DIM:] @ self.jacobian.T
        out[:, POSE_DIM:] += (target - current) @ self.to_dynamics.T
        self._released = last
        keep_from = max(last - 2 * w, 0)  # older openings are never needed again
        self._openings, self._base = self._openings[keep_from - self._base:], keep_from
        return out
