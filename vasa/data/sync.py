"""Audio-visual sync of training videos: find, and correct, a constant offset between a video's sound and
its mouth.

Real talking videos are not always in sync (a re-encode, a dropped edit list, a dub). A clip whose mouth
runs 200 ms ahead of its voice teaches a motion model to open the mouth at the wrong time and blurs
what it learns from the clips that are in sync; dataset pipelines of lip-reading corpora (LRS, VoxCeleb)
find each clip's offset with a sync model and correct or drop it. Here the sync model is a **probe**: a
linear read-out from the speech features of frames t-4, t-2, ..., t+4 to the mouth opening at t (each
clip's opening standardised), fit by ridge regression. A video's offset is the lag, within
±`MAX_OFFSET_FRAMES`, at which the probe's prediction and the tracked mouth opening correlate best
(Pearson r), refined to a fraction of a frame by a parabola through the peak.

    offset > 0: the mouth comes after the sound that goes with it (the picture is late)
    offset < 0: the mouth comes before it (the sound is late)

With `--av-sync correct` (`PrepareConfig.av_sync`), a video is corrected when the peak is clear (r >=
`MIN_PEAK_R`, and inside the search rather than at its edge) and the offset is at least
`CORRECT_FROM_FRAMES`: its waveform is shifted by the offset and its speech features are computed again,
so that frame t's features are the sound that goes with frame t's mouth. Smaller offsets are left alone:
the development clips that needed no correction lie within 2 frames of each other (speakers differ in
how far their lips lead their voice), and a probe fit on few speakers does not place its peak more
precisely than that.

The shipped probe (`vasa/assets/sync_probe.safetensors`, `scripts/make_sync_probe.py`) reads Whisper
tiny.en features; its file says which clips it was fit on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vasa.errors import VasaError
from vasa.latents import FPS
from vasa.metrics.landmarks import lagged_correlation

CONTEXT_FRAMES = 4  # the probe reads frames t-4, t-2, ..., t+4
CONTEXT_STEP = 2
RIDGE = 1.0  # ridge strength per frame, on standardised features (as scripts/data_facts.py's yardstick)
PROBE_COMPONENTS = 64  # principal directions of the features the probe reads (fewer weights to fit on few speakers)
MAX_OFFSET_FRAMES = 10  # search +-400 ms at 25 fps
CORRECT_FROM_FRAMES = 2.5  # 100 ms at 25 fps
MIN_PEAK_R = 0.3  # a peak below this is no evidence of sync (a dub, a silent listener, a failed track)
PROBE_PATH = Path(__file__).resolve().parents[1] / "assets" / "sync_probe.safetensors"
PROBE_KEY = "vasa.sync_probe"


def with_context(features: np.ndarray) -> np.ndarray:
    """(T, D) -> (T, D * 5): the features of frames t-4, t-2, ..., t+4 side by side (edges repeated)."""
    padded = np.pad(features, ((CONTEXT_FRAMES, CONTEXT_FRAMES), (0, 0)), mode="edge")
    steps = range(0, 2 * CONTEXT_FRAMES + 1, CONTEXT_STEP)
    return np.concatenate([padded[k:k + len(features)] for k in steps], axis=1)


def shift_pairs(features: np.ndarray, mouth: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair the features of frame t with the mouth of frame t + lag (the overlap only)."""
    if lag > 0:
        return features[:len(features) - lag], mouth[lag:]
    if lag < 0:
        return features[-lag:], mouth[:len(mouth) + lag]
    return features, mouth


@dataclass(frozen=True)
class SyncProbe:
    """Speech features (T, D) -> predicted mouth opening (T,) (in standard units, up to an offset)."""

    weights: np.ndarray  # (D * 5,) over `with_context(features)`
    bias: float
    audio_encoder: str  # the encoder spec of the features it reads, e.g. "whisper"
    fps: float = FPS
    trained_on: tuple[str, ...] = ()

    @property
    def feature_dim(self) -> int:
        return len(self.weights) // len(range(0, 2 * CONTEXT_FRAMES + 1, CONTEXT_STEP))

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise VasaError(f"the sync probe reads {self.feature_dim}-d features, got shape {features.shape}")
        return with_context(features) @ self.weights + self.bias

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file (complete or not at all) whose metadata says what the probe reads."""
        from safetensors.numpy import save_file

        from vasa.outputs import move_into_place

        path = Path(path)
        meta = {"audio_encoder": self.audio_encoder, "fps": self.fps, "trained_on": list(self.trained_on),
                "context_frames": CONTEXT_FRAMES, "context_step": CONTEXT_STEP, "bias": self.bias}
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            save_file({"weights": self.weights.astype(np.float32)}, str(temporary),
                      metadata={PROBE_KEY: json.dumps(meta)})
            move_into_place(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    @staticmethod
    def load(path: str | os.PathLike = PROBE_PATH) -> "SyncProbe":
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise VasaError(f"no sync probe at {path}")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {})[PROBE_KEY])
                weights = f.get_tensor("weights").astype(np.float64)
        except (SafetensorError, OSError, KeyError, ValueError) as error:
            raise VasaError(f"cannot read sync probe {path}: {error}") from None
        if (meta["context_frames"], meta["context_step"]) != (CONTEXT_FRAMES, CONTEXT_STEP):
            raise VasaError(f"{path} reads another feature context than this vasa ({meta})")
        return SyncProbe(weights, float(meta["bias"]), meta["audio_encoder"], float(meta["fps"]),
                         tuple(meta["trained_on"]))


def fit_probe(clips: list[tuple[np.ndarray, np.ndarray]], audio_encoder: str, fps: float = FPS,
              lags: list[int] | None = None, names: tuple[str, ...] = (), components: int = PROBE_COMPONENTS,
              ridge: float = RIDGE) -> SyncProbe:
    """Fit on clips of (features (T, D), mouth opening (T,)). The features are first reduced to their
    `components` principal directions (over all frames), the context is standardised and a ridge
    regression fit to each clip's standardised mouth; `lags[i]` pairs clip i's features of frame t with its
    mouth of frame t + lag (a known offset taken out). The whole chain is linear, so the probe stores
    one weight vector over `with_context(features)`. Memory does not grow with the number of frames
    (moments are summed clip by clip)."""
    usable = [k for k, (_, m) in enumerate(clips) if len(m) >= 3 and np.std(m) > 1e-9]
    if not usable:
        raise VasaError("no clip with a moving mouth to fit the sync probe on")
    dim = np.asarray(clips[usable[0]][0]).shape[1]
    total, first, second = 0, np.zeros(dim), np.zeros((dim, dim))
    for k in usable:
        features = np.asarray(clips[k][0], np.float64)
        total, first, second = total + len(features), first + features.sum(axis=0), second + features.T @ features
    centre = first / total
    covariance = second / total - np.outer(centre, centre)
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    projection = vectors[:, ::-1][:, :components]  # (D, K): the principal directions
    width = projection.shape[1] * len(range(0, 2 * CONTEXT_FRAMES + 1, CONTEXT_STEP))
    count, x_sum, xx, xy, y_sum = 0, np.zeros(width), np.zeros((width, width)), np.zeros(width), 0.0
    for k in usable:
        features, mouth = np.asarray(clips[k][0], np.float64), np.asarray(clips[k][1], np.float64)
        x, y = shift_pairs(with_context((features - centre) @ projection), (mouth - mouth.mean()) / mouth.std(),
                           lags[k] if lags else 0)  # (T, 5K), (T,)
        count, x_sum, xx, xy, y_sum = count + len(y), x_sum + x.sum(axis=0), xx + x.T @ x, xy + x.T @ y, y_sum + y.sum()
    mean = x_sum / count
    std = np.sqrt(np.maximum(np.diag(xx) / count - mean ** 2, 0.0)) + 1e-6
    gram = (xx - count * np.outer(mean, mean)) / np.outer(std, std)  # of the standardised context
    target = (xy - mean * y_sum) / std
    solved = np.linalg.solve(gram + ridge * count * np.eye(width), target) / std  # (5K,) on the raw context
    blocks = solved.reshape(-1, projection.shape[1])  # (5, K): one per context frame
    weights = (blocks @ projection.T).reshape(-1)  # (5 * D,) in the order of with_context
    bias = -float(np.tile(centre, len(blocks)) @ weights + mean @ solved)
    return SyncProbe(weights, bias, audio_encoder, fps, tuple(names))


@dataclass(frozen=True)
class SyncEstimate:
    """A video's sync, as `vasa prepare` writes it into the record."""

    offset_frames: float  # > 0: the mouth comes after its sound; < 0: before it
    offset_ms: float
    peak_r: float  # probe-to-mouth correlation at the offset
    zero_r: float  # ... at no offset
    frames: int  # frames the estimate rests on
    clear: bool  # the mouth follows the probe's prediction at some lag (peak r >= MIN_PEAK_R)
    corrected: bool = False  # the record's audio was shifted by the offset

    @property
    def needs_correction(self) -> bool:
        return self.clear and abs(self.offset_frames) >= CORRECT_FROM_FRAMES

    def as_dict(self) -> dict:
        values = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return {**values, "needs_correction": self.needs_correction}


def estimate_offset(probe: SyncProbe, parts: list[tuple[np.ndarray, np.ndarray]], fps: float,
                    max_lag: int = MAX_OFFSET_FRAMES) -> SyncEstimate | None:
    """One offset for a video from its segments' (features (T, D), mouth opening (T,)): the lag curves of
    the segments averaged with their lengths as weights. None when no segment has a moving mouth."""
    curves, weights = [], []
    for features, mouth in parts:
        mouth = np.asarray(mouth, dtype=np.float64)
        if len(mouth) <= 2 * max_lag + 3 or mouth.std() < 1e-9:
            continue
        curve = lagged_correlation(probe.predict(features), mouth, max_lag)
        if np.isfinite(curve).all():
            curves.append(curve)
            weights.append(len(mouth))
    if not curves:
        return None
    curve = np.average(np.stack(curves), axis=0, weights=weights)
    best = int(np.argmax(curve))
    refined = float(best)
    if 0 < best < len(curve) - 1:  # parabola through the peak and its neighbours
        left, middle, right = curve[best - 1:best + 2]
        bend = left - 2 * middle + right
        refined += 0.5 * (left - right) / bend if bend < 0 else 0.0
    offset = float(refined - max_lag)
    peak, zero = float(curve[best]), float(curve[max_lag])
    inside = 0 < best < len(curve) - 1  # a maximum at the search's edge is no peak: the curve may rise beyond it
    return SyncEstimate(offset, 1000.0 * offset / fps, peak, zero, int(sum(weights)),
                        bool(peak >= MIN_PEAK_R and inside))


def shift_waveform(waveform: np.ndarray, offset_frames: float, fps: float, sample_rate: int) -> np.ndarray:
    """The waveform delayed by `offset_frames` video frames (advanced when negative), so that a mouth that
    came `offset_frames` after its sound meets it; the gap is silence and the length stays."""
    samples = int(round(offset_frames * sample_rate / fps))
    out = np.zeros_like(waveform)
    if samples > 0:
        out[samples:] = waveform[:len(waveform) - samples]
    elif samples < 0:
        out[:len(waveform) + samples] = waveform[-samples:]
    else:
        out[:] = waveform
    return out
