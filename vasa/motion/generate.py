"""Sliding-window motion generation (VASA-1 Sec. 3.2): one window loop for offline and streaming.

    stream = MotionStream(model, gaze=(0.0, 0.0), seed=0)
    for features in audio_chunks:            # (n, 384) audio features at 25 fps, any n
        frames = stream.push(features)       # (m, 46) motion frames whose window is done
    frames = stream.flush()                  # the short last window
    motion = generate_motion(model, features, gaze=(0.0, 0.0), seed=0)   # offline = one chunk

Windows. Each window makes W = config.window_frames new motion frames from the W audio frames under it,
conditioned on the last K = config.context_frames motion and audio frames of the previous window
(X_pre, A_pre). The default W = 50 frames is 2 s at 25 fps: long enough to hold a few words' worth of
prosody and a head movement (which spans about a second or more), short enough that attention over
K + W = 60 tokens stays cheap and the streaming lookahead stays at 2 s. K = 10 frames (0.4 s) carries the
pose, velocity and the mouth's state across the seam. The first window has no context (the context
condition is dropped, which training does with p = 0.5). The last window may be short: its audio ends
early (the missing frames get the null audio embedding, as in training's truncation) and only the frames
with audio are kept, so there is exactly one motion frame per audio frame.

Lookahead. Every frame of a window sees all of that window's audio and nothing after it: a motion frame
depends on audio up to the end of its window, at most W - 1 frames ahead (1.96 s at the default W),
never beyond. The stream runs a window as soon as its W audio frames have arrived.

Shorter windows for lower latency (`step_frames` = S, K <= S <= W): each window then makes only S new
frames from S audio frames, run exactly like the short last window (the other W - S positions get the
null audio embedding, as in training's truncation). The lookahead drops to S - 1 frames at the price
of W / S times the compute per frame and less audio context per window. Offline with the same S gives
the same motion (the window loop is the same).

Randomness. The stream owns a torch.Generator; every window draws the same amount of noise whatever the
chunking, so streaming equals offline for any chunk sizes and a seed reproduces a clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from vasa.motion.diffusion import Guidance, Schedule, cosine_schedule, guided_denoiser, sample_ancestral, sample_ddim
from vasa.motion.dit import Conditions, Dropped, MotionDiT


@dataclass(frozen=True)
class Sampler:
    """How each window is denoised: `ancestral` walks all the schedule's steps (50 by default);
    `ddim` takes `steps` deterministic steps. Guidance gives Eq. 2's scales (0 turns a pass off)."""

    method: Literal["ancestral", "ddim"] = "ddim"
    steps: int = 10
    guidance: Guidance = Guidance()


class MotionStream:
    """Audio features in, motion frames out, window by window. `push` as features arrive; `flush` at the end.

    gaze (theta, phi) radians, distance (head scale), emotion (7 class weights): the clip's global
    conditions; None drops that condition (its null embedding). Motion frames are [pose, dynamics] in
    the face backend's units (`vasa.latents.Motion.from_array` wraps them).
    """

    def __init__(self, model: MotionDiT, *, gaze: Sequence[float] | None = None, distance: float | None = None,
                 emotion: Sequence[float] | None = None, sampler: Sampler = Sampler(), seed: int = 0,
                 schedule: Schedule | None = None, step_frames: int | None = None):
        config = model.config
        self.step_frames = config.window_frames if step_frames is None else int(step_frames)
        if not config.context_frames <= self.step_frames <= config.window_frames:
            raise ValueError(f"step_frames must be in [context_frames={config.context_frames}, "
                             f"window_frames={config.window_frames}], got {step_frames}")
        self.model = model
        self.config = config
        self.sampler = sampler
        self.schedule = schedule or cosine_schedule(config.diffusion_steps)
        if self.schedule.steps != config.diffusion_steps:
            raise ValueError(
                f"schedule has {self.schedule.steps} steps, the model was built for {config.diffusion_steps}"
            )
        self.generator = torch.Generator().manual_seed(seed)
        self._globals = (
            _vector(gaze, 2, "gaze"), _vector(None if distance is None else [distance], 1, "distance"),
            _vector(emotion, config.emotions, "emotion"),
        )
        self._pending = torch.zeros(0, config.audio_dim)  # audio frames waiting for their window
        self._context: tuple[Tensor, Tensor] | None = None  # (K, motion_dim) normalised, (K, audio_dim)
        self._finished = False
        self.frames_out = 0

    @property
    def lookahead_frames(self) -> int:
        """How far ahead of a motion frame its audio reaches, at most (the rest of its window)."""
        return self.step_frames - 1

    def push(self, features: np.ndarray | Tensor) -> np.ndarray:
        """Audio features (n, audio_dim) -> motion frames (m, motion_dim) of every window now complete."""
        if self._finished:
            raise RuntimeError("this MotionStream was flushed; start a new one for the next clip")
        features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if features.dim() != 2 or features.shape[1] != self.config.audio_dim:
            raise ValueError(f"audio features must be (n, {self.config.audio_dim}), got {tuple(features.shape)}")
        self._pending = torch.cat([self._pending, features])
        W = self.step_frames
        out = []
        while self._pending.shape[0] >= W:
            out.append(self._window(self._pending[:W]))
            self._pending = self._pending[W:]
        return self._frames(out)

    def flush(self) -> np.ndarray:
        """Motion frames of the last, short window (no frames if the audio filled whole windows)."""
        if self._finished:
            raise RuntimeError("this MotionStream was already flushed")
        self._finished = True
        out = [self._window(self._pending)] if self._pending.shape[0] else []
        self._pending = self._pending[:0]
        return self._frames(out)

    def _frames(self, windows: list[np.ndarray]) -> np.ndarray:
        frames = np.concatenate(windows) if windows else np.zeros((0, self.config.motion_dim), np.float32)
        self.frames_out += len(frames)
        return frames

    @torch.no_grad()
    def _window(self, audio: Tensor) -> np.ndarray:
        """One window: audio (n <= W, audio_dim) -> motion (n, motion_dim); updates the context."""
        config, n = self.config, audio.shape[0]
        W, K = config.window_frames, config.context_frames
        padded = torch.cat([audio, audio.new_zeros(W - n, config.audio_dim)])  # (W, A)
        if self._context is None:
            context_motion, context_audio = torch.zeros(K, config.motion_dim), torch.zeros(K, config.audio_dim)
        else:
            context_motion, context_audio = self._context
        gaze, distance, emotion = self._globals
        cond = Conditions(
            audio=padded[None], context_motion=context_motion[None], context_audio=context_audio[None],
            gaze=_value(gaze, 2), distance=_value(distance, 1)[:, 0], emotion=_value(emotion, config.emotions),
            audio_valid=(torch.arange(W) < n)[None],
        )
        dropped = Dropped(context=_flag(self._context is None), gaze=_flag(gaze is None),
                          distance=_flag(distance is None), emotion=_flag(emotion is None))
        denoise = guided_denoiser(self.model, cond, dropped, self.sampler.guidance)
        noise = torch.randn((1, W, config.motion_dim), generator=self.generator)
        if self.sampler.method == "ancestral":
            x0 = sample_ancestral(denoise, self.schedule, noise, self.generator)
        elif self.sampler.method == "ddim":
            x0 = sample_ddim(denoise, self.schedule, noise, self.sampler.steps)
        else:
            raise ValueError(f"unknown sampler {self.sampler.method!r}: use 'ancestral' or 'ddim'")
        x0 = x0[0, :n]  # (n, M) normalised
        if n >= K:
            self._context = (x0[n - K:], audio[n - K:])
        return self.model.denormalize(x0).numpy()


def generate_motion(model: MotionDiT, features: np.ndarray | Tensor, **stream_options) -> np.ndarray:
    """Offline generation: audio features (T, audio_dim) -> motion (T, motion_dim); the stream with one chunk."""
    stream = MotionStream(model, **stream_options)
    return np.concatenate([stream.push(features), stream.flush()])


def _vector(value, size: int, name: str) -> Tensor | None:
    if value is None:
        return None
    vector = torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(-1)
    if vector.shape != (size,):
        raise ValueError(f"{name} must have {size} values, got {tuple(vector.shape)}")
    return vector


def _value(vector: Tensor | None, size: int) -> Tensor:
    return torch.zeros(1, size) if vector is None else vector[None]


def _flag(dropped: bool) -> Tensor:
    return torch.tensor([dropped])
