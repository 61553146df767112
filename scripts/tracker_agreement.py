"""How far two face trackers' readings of the same videos are apart (landmarks, mouth, blinks, lag, jitter).

    python scripts/tracker_agreement.py dump VIDEOS... --out new.npz [--frames 250]
    python scripts/tracker_agreement.py compare old.npz new.npz

`dump` tracks each video with this install's tracker (`vasa.face.landmarks.track_video`, 256 px crop,
25 fps) and saves the landmarks in source pixels with the time per frame; run it once in each
environment (for the tracker of an earlier vasa: its checkout, in a venv of its own). `compare` prints,
per video: the mean landmark distance (all / lips / eyes with irises) over the inter-ocular distance
(outer eye corners), the correlation of the mouth opening read by each, the lag at which it peaks, the
blinks each counts and how many coincide (within 2 frames), the frame-to-frame jitter of each and the
tracking cost. The code here uses only what both trackers' vasa versions have.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vasa.face.mesh.model import (INNER_LIPS_LOWER, INNER_LIPS_UPPER, LEFT_EYE_CONTOUR, OUTER_LIPS, RIGHT_EYE_CONTOUR,
                             FaceModel)
from vasa.metrics.landmarks import blink_spans, jitter, lagged_correlation, pearson

LIPS = sorted(set(OUTER_LIPS + INNER_LIPS_UPPER + INNER_LIPS_LOWER))
EYES = sorted(set(RIGHT_EYE_CONTOUR + LEFT_EYE_CONTOUR)) + list(range(468, 478))
EYE_CORNERS = (33, 263)
MAX_LAG = 4


def dump(videos: list[Path], out: Path, frames: int, size: int = 256) -> None:
    from vasa.face.landmarks import to_source_pixels, track_video
    from vasa.media import iter_video_frames

    arrays = {}
    for video in videos:
        clip = list(iter_video_frames(video, 25.0))[:frames]
        start = time.perf_counter()
        tracked = track_video(clip, size)
        ms = 1000 * (time.perf_counter() - start) / len(clip)
        crop = tracked.crop
        pixels = np.stack([np.c_[to_source_pixels(p, crop), p[:, 2] * crop.side] for p in tracked.landmarks])
        arrays.update({f"{video.stem}/pixels": pixels, f"{video.stem}/found": tracked.found,
                       f"{video.stem}/ms": np.array(ms)})
        print(f"{video.stem}: {len(clip)} frames, {ms:.1f} ms/frame, face in {tracked.found.mean():.0%}")
    np.savez(out, **arrays)


def compare_clip(model: FaceModel, old: np.ndarray, new: np.ndarray) -> dict:
    """old, new: (T, 478, 3) source pixels of the same frames."""
    iod = np.linalg.norm(old[:, EYE_CORNERS[0], :2] - old[:, EYE_CORNERS[1], :2], axis=-1)  # (T,)
    distance = np.linalg.norm(old[:, :, :2] - new[:, :, :2], axis=-1) / iod[:, None]  # (T, 478)
    # canonicalise in a unit frame (pose and scale leave the canonical shape unchanged)
    scale = iod.mean() * 3
    shapes = [np.stack([model.canonicalize(p / scale)[0] for p in points]) for points in (old, new)]
    mouths = [model.mouth_opening(s) for s in shapes]
    lags = lagged_correlation(mouths[0], mouths[1], MAX_LAG)
    eyes = [model.eye_opening(s).mean(axis=-1) for s in shapes]
    blinks = [[(start + stop) // 2 for start, stop in blink_spans(e)] for e in eyes]  # middle frames
    shared = sum(any(abs(a - b) <= 2 for b in blinks[1]) for a in blinks[0])
    return {"all": distance.mean(), "lips": distance[:, LIPS].mean(), "eyes": distance[:, EYES].mean(),
            "mouth_r": pearson(*mouths), "best_lag": int(np.nanargmax(lags)) - MAX_LAG,
            "eye_r": pearson(*eyes), "blinks": (len(blinks[0]), len(blinks[1]), shared),
            "jitter": (jitter(shapes[0]), jitter(shapes[1]))}


def compare(old_path: Path, new_path: Path) -> None:
    old, new = np.load(old_path), np.load(new_path)
    model = FaceModel.load()
    names = sorted({k.split("/")[0] for k in old.files} & {k.split("/")[0] for k in new.files})
    print("| video | frames | all / IOD | lips / IOD | eyes / IOD | mouth r | peak lag | eye-opening r | "
          "blinks old / new / both | jitter old / new | ms/frame old / new |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        both = old[f"{name}/found"] & new[f"{name}/found"]
        row = compare_clip(model, old[f"{name}/pixels"][both], new[f"{name}/pixels"][both])
        row["ms"] = (float(old[f"{name}/ms"]), float(new[f"{name}/ms"]))
        rows.append(row)
        print(f"| {name} | {both.sum()} | {row['all']:.2%} | {row['lips']:.2%} | {row['eyes']:.2%} | "
              f"{row['mouth_r']:.3f} | {row['best_lag']} | {row['eye_r']:.3f} | {'/'.join(map(str, row['blinks']))} | "
              f"{row['jitter'][0]:.4f} / {row['jitter'][1]:.4f} | {row['ms'][0]:.1f} / {row['ms'][1]:.1f} |")
    mean = {k: np.mean([r[k] for r in rows], axis=0) for k in ("all", "lips", "eyes", "mouth_r", "eye_r", "ms")}
    blinks = np.sum([r["blinks"] for r in rows], axis=0)
    print(f"| **mean** | | {mean['all']:.2%} | {mean['lips']:.2%} | {mean['eyes']:.2%} | {mean['mouth_r']:.3f} | | "
          f"{mean['eye_r']:.3f} | {'/'.join(map(str, blinks))} | | {mean['ms'][0]:.1f} / {mean['ms'][1]:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("videos", nargs="+", type=Path)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--frames", type=int, default=250)
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.videos, args.out, args.frames)
    else:
        compare(args.old, args.new)


if __name__ == "__main__":
    main()
