"""Measures read from re-extracted face landmarks: usable on any method's video.

Every figure here starts from the same tracker (`vasa.face.landmarks`, MediaPipe's 478-point mesh) and the
same canonical frame (`FaceModel.canonicalize`: head pose removed, outer eye corners 1 apart), so a real
clip and a generated one are measured alike:

    mouth opening        inner-lip gap at the middle of the mouth, per frame
    lip distance         mean 2D distance of the 40 lip landmarks to a real clip's, per frame
    delta P (ΔP)         VASA-1's pose variation intensity: mean |frame-to-frame change| of the head angles
    blink rate           short dips of the eye opening, per minute
    gaze error           |re-extracted eye-in-head gaze - requested gaze|, degrees
    distance error       |re-extracted head distance / the portrait's - requested distance|
    jitter               mean |second difference| of the landmarks (frame-to-frame acceleration)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vasa.errors import VasaError
from vasa.face.landmarker import LandmarkDetector
from vasa.face.landmarks import track_video
from vasa.face.mesh.model import INNER_LIPS_LOWER, INNER_LIPS_UPPER, OUTER_LIPS, FaceModel
from vasa.latents import FPS

LIPS = np.array(sorted(set(OUTER_LIPS + INNER_LIPS_UPPER + INNER_LIPS_LOWER)))  # (40,)
BLINK_FRACTION = 0.5  # a blink: mean eye opening below this fraction of the clip's median ...
BLINK_FRAMES = (1, 10)  # ... for this many frames (at 25 fps: 40-400 ms)
OPEN_EYES_FRACTION = 0.8  # gaze is read only on frames whose eyes are at least this open
MOUTH_LAG_FRAMES = 4  # compare() also finds the best timing of the mouth within +-4 frames (160 ms)


@dataclass
class Track:
    """What the tracker sees in a sequence of frames, in the canonical frame (eye corners 1 apart)."""

    canonical: np.ndarray  # (T, 478, 3)
    pose: np.ndarray  # (T, 6): yaw, pitch, roll degrees, tx, ty, scale
    found: np.ndarray  # (T,) bool; rows without a face repeat the last found

    def __len__(self) -> int:
        return len(self.found)

    def __getitem__(self, index) -> "Track":
        return Track(self.canonical[index], self.pose[index], self.found[index])

    def mouth(self) -> np.ndarray:
        return FaceModel.mouth_opening(self.canonical)  # (T,)

    def eyes(self) -> np.ndarray:
        return FaceModel.eye_opening(self.canonical).mean(axis=-1)  # (T,)


def canonical_track(model: FaceModel, points: np.ndarray, found: np.ndarray) -> Track:
    """Crop-unit landmarks (T, 478, 3) -> canonical shapes and poses."""
    shapes, poses = zip(*[model.canonicalize(p)[:2] for p in points])
    return Track(np.stack(shapes), np.stack(poses), np.asarray(found, bool))


def measure_video(model: FaceModel, frames, size: int) -> Track:
    """Landmarks through `track_video` (one crop framed on the first frame), canonicalised."""
    tracked = track_video(frames, size)
    return canonical_track(model, tracked.landmarks, tracked.found)


def measure_crops(model: FaceModel, frames) -> Track:
    """Landmarks of frames that already are the face crop, without re-framing them (a re-framed crop
    would hide a requested head distance). Frames without a face repeat the nearest found."""
    points, found = [], []
    with LandmarkDetector() as detector:
        for frame in frames:
            p = detector.landmarks(frame)
            found.append(p is not None)
            points.append(p)
    if not any(found):
        raise VasaError("no face found in any frame")
    last = next(p for p in points if p is not None)
    filled = []
    for p in points:
        last = p if p is not None else last
        filled.append(last)
    return canonical_track(model, np.stack(filled), np.array(found))


# --- figures ------------------------------------------------------------------------------------------
def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; nan when either side is constant or shorter than 3."""
    if len(a) < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Pearson r of a[t] with b[t + lag] for lag = -max_lag ... max_lag: (2 * max_lag + 1,), over the t
    where both frames are `valid` (default all); nan where that leaves fewer than 3 pairs or a constant side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    valid = np.ones(len(a), bool) if valid is None else np.asarray(valid, bool)
    out = np.full(2 * max_lag + 1, np.nan)
    for k, lag in enumerate(range(-max_lag, max_lag + 1)):
        t = np.arange(max(0, -lag), min(len(a), len(b) - lag))
        t = t[valid[t] & valid[t + lag]]
        out[k] = pearson(a[t], b[t + lag])
    return out


def lip_distance(generated: np.ndarray, real: np.ndarray, centred: bool) -> float:
    """Mean 2D distance (canonical x, y; eye corners 1 apart) of the lip landmarks, frames (T, 478, 3).
    `centred`: each sequence's own mean lip shape removed first (identity and neutral offsets don't count)."""
    g, r = generated[:, LIPS, :2], real[:, LIPS, :2]
    if centred:
        g, r = g - g.mean(axis=0), r - r.mean(axis=0)
    return float(np.linalg.norm(g - r, axis=-1).mean())


def pose_variation(pose: np.ndarray, found: np.ndarray | None = None) -> float:
    """ΔP (VASA-1 Sec. 4.1): mean |frame-to-frame change| of yaw, pitch and roll (degrees), averaged
    over the three angles; pose (T, >=3), steps between two frames with a face only."""
    found = np.ones(len(pose), bool) if found is None else np.asarray(found, bool)
    both = found[1:] & found[:-1]
    if not both.any():
        return float("nan")
    return float(np.abs(np.diff(pose[:, :3], axis=0))[both].mean())


def blink_spans(opening: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) frames of the runs of BLINK_FRAMES[0]..BLINK_FRAMES[1] frames with the eye opening
    below BLINK_FRACTION x its median: the blinks."""
    low = np.concatenate([[False], opening < BLINK_FRACTION * np.median(opening), [False]])
    edges = np.flatnonzero(np.diff(low.astype(int)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if BLINK_FRAMES[0] <= b - a <= BLINK_FRAMES[1]]


def count_blinks(opening: np.ndarray) -> int:
    """How many blinks (`blink_spans`) the eye opening (T,) shows."""
    return len(blink_spans(opening))


def blink_rate(track: Track, fps: float = FPS) -> float:
    """Blinks per minute (frames without a face are left out)."""
    opening = track.eyes()[track.found]
    return count_blinks(opening) / (len(opening) / fps / 60.0) if len(opening) else float("nan")


def jitter(canonical: np.ndarray, found: np.ndarray | None = None) -> float:
    """Mean |second difference| of the landmarks (T, N, 3) in the canonical x, y plane: frame-to-frame
    acceleration, canonical units per frame²; only where three consecutive frames have a face."""
    found = np.ones(len(canonical), bool) if found is None else np.asarray(found, bool)
    if len(canonical) < 3:
        return float("nan")
    acceleration = canonical[2:, :, :2] - 2 * canonical[1:-1, :, :2] + canonical[:-2, :, :2]  # (T-2, N, 2)
    keep = found[2:] & found[1:-1] & found[:-2]
    return float(np.linalg.norm(acceleration[keep], axis=-1).mean()) if keep.any() else float("nan")


def open_eyes(track: Track) -> np.ndarray:
    """(T,) frames with a face whose eyes are at least OPEN_EYES_FRACTION of their median opening."""
    eyes = track.eyes()
    return track.found & (eyes >= OPEN_EYES_FRACTION * np.median(eyes[track.found]))


def gaze_error(model: FaceModel, track: Track, requested: tuple[float, float]) -> tuple[float, np.ndarray]:
    """(|mean re-extracted eye-in-head gaze - request| in degrees (Euclidean over θ, φ), the mean gaze (2,)),
    on frames with open eyes."""
    keep = open_eyes(track)
    if not keep.any():
        return float("nan"), np.full(2, np.nan)
    measured = model.eye_gaze(track.canonical[keep]).mean(axis=0)
    return float(np.linalg.norm(measured - np.asarray(requested, float))), measured


def distance_error(track: Track, portrait_pose: np.ndarray, requested: float) -> tuple[float, float]:
    """(|measured - requested|, measured) head distance relative to the portrait: head distance is inverse
    to the landmark scale, so measured = portrait scale / frame scale, averaged over frames with a face.
    Landmarks must be read on the generated crop itself (`measure_crops`), not a re-framed one."""
    measured = float(np.mean(portrait_pose[5] / track.pose[track.found, 5]))
    return abs(measured - requested), measured


def compare(generated: Track, real: Track, fps: float = FPS) -> dict:
    """Per-frame comparison of a generated clip with the real one (over their common length)."""
    n = min(len(generated), len(real))
    g, r = generated[:n], real[:n]
    both = g.found & r.found
    timing = lagged_correlation(g.mouth(), r.mouth(), MOUTH_LAG_FRAMES, both)
    best = int(np.nanargmax(timing)) if np.isfinite(timing).any() else MOUTH_LAG_FRAMES
    return {
        "mouth_correlation": pearson(g.mouth()[both], r.mouth()[both]),
        # timing: the real mouth's shift behind the generated one (> 0: generated early) that fits best, and r there
        "mouth_lag_frames": best - MOUTH_LAG_FRAMES,
        "mouth_correlation_best_lag": float(timing[best]),
        "lip_distance_centred": lip_distance(g.canonical[both], r.canonical[both], centred=True),
        "lip_distance_raw": lip_distance(g.canonical[both], r.canonical[both], centred=False),
        "head_motion_deg": pose_variation(g.pose, g.found),
        "blinks_per_min": blink_rate(g, fps),
        "mouth_opening_std": float(np.std(g.mouth()[g.found])),
        "frames_compared": int(both.sum()),
    }
