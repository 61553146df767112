"""How far speech features predict the mouth: a ridge regression yardstick without any motion model.

Speech features of frames t-4, t-2, ..., t+4 (`vasa.data.sync.with_context`) -> the mouth opening of frame t,
fitted on training segments, Pearson r on held-out ones (scripts/data_facts.py fact 3,
scripts/lipsync_ceiling.py). It bounds what a motion model trained on the same few speakers can reach on
the held-out mouth-opening correlation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vasa.data.sync import with_context

RIDGE = 1.0  # ridge strength per frame, on standardised features


@dataclass
class Part:
    """One record segment: its clip, speech features (T, D) and real mouth opening (T,)."""

    clip: str
    features: np.ndarray
    mouth: np.ndarray
    source: Path | None = None  # the video, for re-encoding
    start_frame: int = 0


def fit_ridge(parts: list[Part], strength: float = RIDGE, standardise_segments: bool = False):
    """Ridge from `with_context` features to each segment's standardised mouth opening -> predict(features)."""
    def inputs(features: np.ndarray) -> np.ndarray:
        if standardise_segments:
            features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-3)
        return with_context(features)

    x = np.concatenate([inputs(p.features) for p in parts])
    y = np.concatenate([(p.mouth - p.mouth.mean()) / p.mouth.std() for p in parts])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    x = (x - mean) / std
    weights = np.linalg.solve(x.T @ x + strength * len(x) * np.eye(x.shape[1]), x.T @ y)
    return lambda features: ((inputs(features) - mean) / std) @ weights


def held_out_r(train: list[Part], held: list[Part], **options) -> dict[str, float]:
    """Mean r per held-out clip of the ridge fitted on `train`."""
    predict = fit_ridge(train, **options)
    scores: dict[str, list[float]] = {}
    for p in held:
        scores.setdefault(p.clip, []).append(float(np.corrcoef(predict(p.features), p.mouth)[0, 1]))
    return {clip: float(np.mean(r)) for clip, r in scores.items()}


def left_out_r(train: list[Part], **options) -> float:
    """Mean r over the training clips of the ridge fitted on the other training clips."""
    clips = sorted({p.clip for p in train})
    scores = [held_out_r([p for p in train if p.clip != clip], [p for p in train if p.clip == clip], **options)[clip]
              for clip in clips]
    return float(np.mean(scores))
