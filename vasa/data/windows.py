"""Training windows for the motion generator: records -> batches of (context, window) pairs.

    data = MotionData([read_record(p) for p in files])              # space: the records' face backend
    mean, std = data.stats()                                         # (46,), (46,) for the model's buffers
    batch = sample_batch(data, config, 64, np.random.default_rng(0), Augment())
    val = validation_batches(held_out, config, 64)                  # fixed, so val loss compares across steps

Every segment becomes x = relative motion (T, 46) (`vasa.latents.LatentSpace`), its audio features (T, D)
and its clip-level conditions: main gaze (degrees), mean emotion, and distance 1 (distance is relative:
1 = the segment's own mean head distance; the distance augmentation changes it).

A training window starts at s, uniform over the segment's valid starts, in a segment drawn with
probability proportional to its length (so every frame is equally likely). Its context (X_pre, A_pre) is
the K frames before s when s >= K; otherwise the row has none (zeros, `has_context` False) and the trainer
drops the context condition for it. A segment shorter than W frames gives one window padded to W: the
motion repeats its last frame and the padded audio frames are marked invalid (`audio_valid`).

Augmentations (`Augment`) keep audio and motion aligned: speed resamples motion *and* audio at the same
fractional times before the window is cut; gaze and distance change only motion and its condition, the
same way for the window and its context.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from vasa.data.records import Record
from vasa.errors import VasaError
from vasa.face.backends import space_for
from vasa.latents import LatentSpace
from vasa.motion.config import MotionConfig

STD_FLOOR = 1e-3  # a channel that never moves (e.g. in a tiny dataset) must not blow up normalisation


@dataclass(frozen=True)
class Augment:
    """Training augmentations: each applied to a window with its probability p (0 turns it off).

    gaze: the eyes turn by (theta, phi) uniform in +-(gaze_theta_deg, gaze_phi_deg), and the gaze condition
    with them (the data has few gaze directions). distance: the head moves `factor` times farther,
    log-uniform in distance_range; the distance condition becomes `factor`. speed: motion and audio play
    `factor` times faster, uniform in speed_range (resampling audio *features* in time approximates faster
    speech only for small factors, hence the narrow range). audio noise: Gaussian noise of `audio_noise`
    times each feature's standard deviation is added to the window's and the context's audio features, so
    that a model trained on a few minutes of speech cannot tie motion (blinks, head turns) to the exact
    feature values of its training clips.
    """

    gaze_p: float = 0.5
    gaze_theta_deg: float = 20.0
    gaze_phi_deg: float = 12.0
    distance_p: float = 0.5
    distance_range: tuple[float, float] = (0.8, 1.25)
    speed_p: float = 0.3
    speed_range: tuple[float, float] = (0.9, 1.1)
    audio_noise_p: float = 0.5
    audio_noise: float = 0.3  # Gaussian noise on the audio features, in units of each feature's spread

    @classmethod
    def none(cls) -> "Augment":
        return cls(gaze_p=0.0, distance_p=0.0, speed_p=0.0, audio_noise_p=0.0)


@dataclass(frozen=True)
class Batch:
    """A batch of training windows (motion not yet normalised: the trainer applies model.normalize)."""

    x0: Tensor  # (B, W, 46) relative motion of the window
    audio: Tensor  # (B, W, D)
    audio_valid: Tensor  # (B, W) bool: False past the segment's end
    context_motion: Tensor  # (B, K, 46) the K frames before the window (zeros without context)
    context_audio: Tensor  # (B, K, D)
    has_context: Tensor  # (B,) bool
    gaze: Tensor  # (B, 2) radians
    distance: Tensor  # (B,) relative head distance
    emotion: Tensor  # (B, 7)

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.x0.shape[0]


class MotionData:
    """Every segment of `records` as relative motion x (T, 46), audio (T, D) and its conditions."""

    def __init__(self, records: list[Record], space: LatentSpace | None = None):
        """`space`: the relative-motion space; None = the one of the records' face backend (`space_for`)."""
        if not records:
            raise VasaError("no training records to build windows from")
        first = records[0]
        if space is None:
            dims = [s.dynamics.shape[1] for r in records for s in r.segments if len(s)]
            space = space_for(first.face_backend, dims[0] if dims else 0)
        self.space = space
        self.audio_dim: int | None = None
        self.fps, self.face_backend, self.audio_encoder = first.fps, first.face_backend, first.audio_encoder
        self.motion: list[np.ndarray] = []  # (T, 46) float32 per segment
        self.audio: list[np.ndarray] = []  # (T, D) float16 per segment (as stored on disk: halves memory)
        self.main_gaze: list[np.ndarray] = []  # (2,) degrees
        self.emotion: list[np.ndarray] = []  # (7,)
        for record in records:
            for name in ("fps", "face_backend", "audio_encoder"):
                if getattr(record, name) != getattr(first, name):
                    raise VasaError(f"record {record.source} has {name} {getattr(record, name)!r}, "
                                    f"{first.source} has {getattr(first, name)!r}: prepare all videos the same way")
            for segment in record.segments:
                if len(segment) == 0:
                    continue
                self._add(record, segment)
        if not self.motion:
            raise VasaError("the training records hold no segments")

    def _add(self, record: Record, segment) -> None:
        audio_dim = segment.audio.shape[1]
        if self.audio_dim is None:
            self.audio_dim = audio_dim
        elif audio_dim != self.audio_dim:
            raise VasaError(f"record {record.source} has audio features of dim {audio_dim}, others {self.audio_dim}: "
                            "prepare all videos with the same audio encoder")
        if segment.pose.shape[1] + segment.dynamics.shape[1] != self.space.dim:
            raise VasaError(f"record {record.source} has {segment.dynamics.shape[1]} dynamics coefficients, "
                            f"the face latent has {self.space.dim - 6}: prepared with another face model")
        reference = self.space.segment_reference(segment.pose, segment.dynamics, segment.gaze)
        self.motion.append(self.space.to_relative(segment.pose, segment.dynamics, reference).astype(np.float32))
        self.audio.append(np.asarray(segment.audio, dtype=np.float16))
        self.main_gaze.append(np.asarray(segment.main_gaze, dtype=np.float64))
        self.emotion.append(np.asarray(segment.mean_emotion, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.motion)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(m) for m in self.motion])

    @property
    def audio_std(self) -> np.ndarray:
        """Per-feature standard deviation of the audio features over all frames, (D,)."""
        if getattr(self, "_audio_std", None) is None:
            stacked = np.concatenate(self.audio).astype(np.float64)
            self._audio_std = stacked.std(axis=0).astype(np.float32)
        return self._audio_std

    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(frames, sum of x (46,), sum of x^2 (46,)) in float64: summable across data shards."""
        total = sum(m.astype(np.float64).sum(axis=0) for m in self.motion)
        squares = sum((m.astype(np.float64) ** 2).sum(axis=0) for m in self.motion)
        return int(self.lengths.sum()), total, squares

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (46,) of x over all frames, std floored at STD_FLOOR."""
        return motion_stats(*self.moments())

    def augmented_moments(self, config: MotionConfig, augment: "Augment", windows: int = 2048,
                          seed: int = 0) -> tuple[int, np.ndarray, np.ndarray]:
        """`moments` of the windows training will see, augmentations included (a fixed sample of `windows`).

        The augmentations move some channels far beyond their natural spread (a 20-degree gaze shift is
        several standard deviations of the recorded iris motion; a 25 % distance change is tens of the
        recorded scale jitter). Normalising by the un-augmented spread would make those channels dominate
        the loss, so the model's statistics come from what it is trained on."""
        rng = np.random.default_rng(seed)
        frames, total, squares = 0, np.zeros(self.space.dim), np.zeros(self.space.dim)
        for start in range(0, windows, 256):
            x0 = sample_batch(self, config, min(256, windows - start), rng, augment).x0.double().numpy()
            x0 = x0.reshape(-1, x0.shape[-1])
            frames, total, squares = frames + len(x0), total + x0.sum(axis=0), squares + (x0 ** 2).sum(axis=0)
        return frames, total, squares


def motion_stats(frames: int, total: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (float32) from summed moments (`MotionData.moments`, possibly summed over shards)."""
    mean = total / frames
    variance = np.maximum(squares / frames - mean**2, 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(variance), STD_FLOOR).astype(np.float32)


def interpolate(frames: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Linear interpolation of frames (T, C) at fractional frame times (n,) in [0, T - 1] -> (n, C) float32."""
    lo = np.floor(times).astype(np.int64)
    hi = np.minimum(lo + 1, len(frames) - 1)
    a = (times - lo).astype(np.float32)[:, None]
    return (1 - a) * frames[lo].astype(np.float32) + a * frames[hi].astype(np.float32)


@dataclass(frozen=True)
class _Window:
    """One window before batching: context (k in {0, K} frames) followed by up to W window frames."""

    motion: np.ndarray  # (k + n, 46)
    audio: np.ndarray  # (k + n, D)
    context_frames: int  # k
    gaze_deg: np.ndarray  # (2,)
    distance: float
    emotion: np.ndarray  # (7,)


def _cut(data: MotionData, segment: int, start: int, config: MotionConfig, speed: float = 1.0) -> _Window:
    """The window starting at resampled frame `start` of `segment` played `speed` times faster, with its
    context when there are K frames before it. Motion and audio are read at the same times."""
    W, K = config.window_frames, config.context_frames
    length = (len(data.motion[segment]) - 1) / speed + 1  # frames after resampling (fractional end)
    k = K if start >= K else 0
    frames = np.arange(start - k, min(start + W, int(np.floor(length))))  # resampled frame indices
    times = np.minimum(frames * speed, len(data.motion[segment]) - 1)  # guard float rounding at the end
    return _Window(interpolate(data.motion[segment], times), interpolate(data.audio[segment], times), k,
                   data.main_gaze[segment], 1.0, data.emotion[segment])


def _augment(window: _Window, data: MotionData, augment: Augment, generator: np.random.Generator) -> _Window:
    """Gaze and distance augmentations: motion and its condition change together, context included."""
    motion, gaze, distance = window.motion, window.gaze_deg, window.distance
    if generator.random() < augment.gaze_p and data.space.can_shift_gaze:  # a learned latent: no known iris
        delta = generator.uniform(-1, 1, 2) * (augment.gaze_theta_deg, augment.gaze_phi_deg)  # degrees
        motion = data.space.shift_gaze(motion, window.gaze_deg, delta)
        gaze = window.gaze_deg + delta
    if generator.random() < augment.distance_p:
        low, high = np.log(augment.distance_range)
        distance = float(np.exp(generator.uniform(low, high)))
        motion = data.space.scale_distance(motion, distance)
    audio = window.audio
    if generator.random() < augment.audio_noise_p:
        noise = generator.standard_normal(audio.shape).astype(np.float32)
        audio = audio + augment.audio_noise * data.audio_std * noise
    return _Window(motion.astype(np.float32), audio, window.context_frames, gaze, distance, window.emotion)


def _collate(windows: list[_Window], config: MotionConfig, audio_dim: int) -> Batch:
    B, W, K, M = len(windows), config.window_frames, config.context_frames, config.motion_dim
    x0, audio = np.zeros((B, W, M), np.float32), np.zeros((B, W, audio_dim), np.float32)
    valid = np.zeros((B, W), bool)
    context_motion, context_audio = np.zeros((B, K, M), np.float32), np.zeros((B, K, audio_dim), np.float32)
    for i, w in enumerate(windows):
        k = w.context_frames
        n = len(w.motion) - k
        x0[i, :n], x0[i, n:] = w.motion[k:], w.motion[-1]  # pad by repeating the last frame
        audio[i, :n], valid[i, :n] = w.audio[k:], True
        context_motion[i, :k], context_audio[i, :k] = w.motion[:k], w.audio[:k]
    return Batch(
        x0=torch.from_numpy(x0), audio=torch.from_numpy(audio), audio_valid=torch.from_numpy(valid),
        context_motion=torch.from_numpy(context_motion), context_audio=torch.from_numpy(context_audio),
        has_context=torch.tensor([w.context_frames > 0 for w in windows]),
        gaze=torch.from_numpy(np.radians(np.stack([w.gaze_deg for w in windows])).astype(np.float32)),
        distance=torch.tensor([w.distance for w in windows], dtype=torch.float32),
        emotion=torch.from_numpy(np.stack([w.emotion for w in windows]).astype(np.float32)),
    )


def sample_batch(data: MotionData, config: MotionConfig, batch_size: int, generator: np.random.Generator,
                 augment: Augment = Augment()) -> Batch:
    """`batch_size` random windows: segment ~ length, start uniform over its valid starts, augmented."""
    if config.motion_dim != data.space.dim:
        raise VasaError(f"the model's motion_dim is {config.motion_dim}, the data's is {data.space.dim}")
    lengths = data.lengths
    segments = generator.choice(len(lengths), size=batch_size, p=lengths / lengths.sum())
    windows = []
    for segment in segments:
        speed = 1.0
        if generator.random() < augment.speed_p:
            speed = float(generator.uniform(*augment.speed_range))
        resampled = int(np.floor((lengths[segment] - 1) / speed)) + 1
        start = int(generator.integers(0, max(resampled - config.window_frames, 0) + 1))
        windows.append(_augment(_cut(data, segment, start, config, speed), data, augment, generator))
    return _collate(windows, config, data.audio_dim)


def validation_batches(data: MotionData, config: MotionConfig, batch_size: int, seed: int = 0,
                       max_windows: int | None = None) -> list[Batch]:
    """Fixed, non-augmented batches: windows tiling every segment (starts 0, W, 2W, ...; the last one short),
    each with its K frames of context when it has them. With `max_windows`, a subset fixed by `seed`."""
    tiles = [(segment, start) for segment, length in enumerate(data.lengths)
             for start in range(0, length, config.window_frames)]
    if max_windows is not None and len(tiles) > max_windows:
        keep = np.sort(np.random.default_rng(seed).choice(len(tiles), size=max_windows, replace=False))
        tiles = [tiles[i] for i in keep]
    windows = [_cut(data, segment, start, config) for segment, start in tiles]
    return [_collate(windows[i:i + batch_size], config, data.audio_dim) for i in range(0, len(windows), batch_size)]
