"""The mouth read-out: a ridge regression from speech features to the mouth coefficients of x.

    readout = fit_mouth_readout(parts, columns)     # parts: (audio features (T, A), x (T, M)) per segment
    stream = ReadoutStream(readout)
    mouth = np.concatenate([stream.push(features), stream.flush()])   # (T, C), x's `columns`

Why it exists: on speakers it never saw, the diffusion generator's mouth follows the real one less
closely than a plain linear read-out of the same speech features does (docs/benchmarks.md, "Lip sync on
unseen speakers": the generator learns its training speakers' mouths, a ridge with ~2.6k weights per
coefficient cannot). The pipeline mixes the read-out into the generated mouth coefficients
(`MotionStage`, weight `blend`): the generator keeps the rest of the face, the head and the liveliness,
the read-out brings the speaker-independent timing and shape of the lips.

Inputs are the features of frames t + k for k in the read-out's `context` (by default t-4 ... t+4;
edges repeated), standardised with the training mean and spread, so a frame's read-out needs
`lookahead_frames` (max k) frames of audio after it; a live model's read-out looks less far ahead. The fit is one
pass over the training segments (sums of X^T X), so it takes seconds on a corpus of hours.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

# Frames of speech features read around frame t (unless a read-out names others) and the ridge strength per
# frame on standardised inputs: chosen by 5-fold cross-validation over the corpus' training speakers
# (whole speakers per fold; mean held-out mouth r 0.599 against 0.585 for the yardstick's t-4, t-2, ..., t+4
# at strength 1, docs/benchmarks.md)
CONTEXT = (-4, -3, -2, -1, 0, 1, 2, 3, 4)
RIDGE = 3.0
DEFAULT_BLEND = 0.75  # share of the read-out in the mouth coefficients where a model file names none
CONFIG_KEY = "vasa.motion.mouth_readout"
PREFIX = "mouth_readout."  # its tensors' names in a motion model file


class MouthReadout(nn.Module):
    """Speech features (T, A) -> the mouth columns of x (T, C); tensors are buffers (fitted, not trained)."""

    def __init__(self, audio_dim: int, columns: Iterable[int], blend: float = DEFAULT_BLEND,
                 context: Iterable[int] = CONTEXT):
        super().__init__()
        self.columns = tuple(int(c) for c in columns)
        self.context = tuple(int(k) for k in context)
        if not self.context or list(self.context) != sorted(set(self.context)) or self.context[0] > 0 \
                or self.context[-1] < 0:
            raise ValueError(f"read-out context {self.context} must be increasing frame offsets around 0")
        self.blend = float(blend)
        if not 0.0 <= self.blend <= 1.0:  # NaN fails too
            raise ValueError(f"read-out share {blend!r} must be between 0 and 1")
        inputs = audio_dim * len(self.context)
        self.register_buffer("mean", torch.zeros(inputs, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(inputs, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(inputs, len(self.columns), dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(len(self.columns), dtype=torch.float64))

    @property
    def audio_dim(self) -> int:
        return self.mean.shape[0] // len(self.context)

    @property
    def lookahead_frames(self) -> int:
        """Frames of features after a frame that its read-out reads."""
        return self.context[-1]

    def config(self) -> dict:
        return {"audio_dim": self.audio_dim, "columns": list(self.columns), "blend": self.blend,
                "context": list(self.context)}

    @classmethod
    def from_config(cls, config: dict) -> "MouthReadout":
        return cls(int(config["audio_dim"]), config["columns"], float(config.get("blend", DEFAULT_BLEND)),
                   config.get("context", CONTEXT))

    def predict_stacked(self, stacked: np.ndarray) -> np.ndarray:
        """Context-stacked features (T, A * len(context)) -> mouth columns (T, C)."""
        inputs = (np.asarray(stacked, np.float64) - self.mean.numpy()) / self.scale.numpy()
        return inputs @ self.weight.numpy() + self.bias.numpy()

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The whole sequence's features (T, A) -> (T, C), edges repeated."""
        return self.predict_stacked(stack_context(features, self.context))


def context_for_window(window_frames: int) -> tuple[int, ...]:
    """`CONTEXT` with no offset past the window's own lookahead (window_frames - 1): a live model's
    read-out makes its frames wait no longer than its 4-frame windows and mouth gate already do."""
    return tuple(sorted({min(k, window_frames - 1) for k in CONTEXT}))


def stack_context(features: np.ndarray, context: Iterable[int] = CONTEXT) -> np.ndarray:
    """(T, A) -> (T, A * len(context)): the features of frames t + k, k in context, side by side, edges repeated."""
    features, context = np.asarray(features), tuple(context)
    before, after = max(-context[0], 0), max(context[-1], 0)
    padded = np.pad(features, ((before, after), (0, 0)), mode="edge")
    return np.concatenate([padded[before + k: before + k + len(features)] for k in context], axis=1)


def fit_mouth_readout(parts: Iterable[tuple[np.ndarray, np.ndarray]], columns: Iterable[int],
                      blend: float = DEFAULT_BLEND, strength: float = RIDGE,
                      context: Iterable[int] = CONTEXT) -> MouthReadout:
    """Ridge from stacked, standardised features to x[:, columns], over (features (T, A), x (T, M)) pairs."""
    columns, context = list(columns), tuple(context)
    sums = None
    for features, x in parts:
        inputs = stack_context(np.asarray(features, np.float64), context)
        targets = np.asarray(x, np.float64)[:, columns]
        if sums is None:
            sums = {"n": 0, "x": 0.0, "y": 0.0, "xx": 0.0, "xy": 0.0}
        sums["n"] += len(inputs)
        sums["x"] = sums["x"] + inputs.sum(axis=0)
        sums["y"] = sums["y"] + targets.sum(axis=0)
        sums["xx"] = sums["xx"] + inputs.T @ inputs
        sums["xy"] = sums["xy"] + inputs.T @ targets
    if sums is None or sums["n"] < 2:
        raise ValueError("the mouth read-out needs at least two frames of training data")
    n = sums["n"]
    mean, target_mean = sums["x"] / n, sums["y"] / n
    covariance = sums["xx"] / n - np.outer(mean, mean)
    scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None)) + 1e-6
    standardised = covariance / np.outer(scale, scale)  # (X_s^T X_s) / n
    cross = (sums["xy"] / n - np.outer(mean, target_mean)) / scale[:, None]  # X_s^T (Y - mean) / n
    weight = np.linalg.solve(standardised + strength * np.eye(len(mean)), cross)
    readout = MouthReadout(len(mean) // len(context), columns, blend, context)
    for name, value in (("mean", mean), ("scale", scale), ("weight", weight), ("bias", target_mean)):
        getattr(readout, name).copy_(torch.from_numpy(np.asarray(value, np.float64)))
    return readout


class ReadoutStream:
    """`MouthReadout` on features that arrive in chunks: a frame's read-out leaves once the features
    `lookahead_frames` after it are known (at `flush`, the last ones repeated), so any chunking gives
    the same values as `MouthReadout.predict` on the whole sequence."""

    def __init__(self, readout: MouthReadout):
        self.readout = readout
        self.context = readout.context
        self._features: np.ndarray | None = None  # the frames still needed, from index self._first on
        self._first = 0  # index of self._features[0]
        self._done = 0  # frames read out so far

    def push(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, np.float64)
        if self._features is None:
            if not len(features):
                return np.zeros((0, len(self.readout.columns)))
            # frames before the first repeat it: keep -context[0] copies in front
            self._features = np.concatenate([np.repeat(features[:1], -self.context[0], axis=0), features])
            self._first = self.context[0]
        else:
            self._features = np.concatenate([self._features, features])
        known = self._first + len(self._features)  # frames with features: [0, known)
        return self._emit(known - self.context[-1])

    def flush(self) -> np.ndarray:
        if self._features is None:
            return np.zeros((0, len(self.readout.columns)))
        known = self._first + len(self._features)
        self._features = np.concatenate([self._features, np.repeat(self._features[-1:], self.context[-1], axis=0)])
        return self._emit(known)

    def _emit(self, until: int) -> np.ndarray:
        frames = np.arange(self._done, max(until, self._done))
        if not len(frames):
            return np.zeros((0, len(self.readout.columns)))
        stacked = np.concatenate([self._features[frames + k - self._first] for k in self.context], axis=1)
        self._done = int(frames[-1]) + 1
        drop = self._done + self.context[0] - self._first  # frames no later read-out needs
        if drop > 0:
            self._features, self._first = self._features[drop:], self._first + drop
        return self.readout.predict_stacked(stacked)


def readout_metadata(readout: MouthReadout) -> dict[str, str]:
    return {CONFIG_KEY: json.dumps(readout.config())}
