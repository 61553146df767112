"""Facts about prepared training records that constants and claims in vasa rest on.

    vasa prepare ../shared/media/clips /tmp/prep
    python scripts/data_facts.py /tmp/prep [--holdout retalking_2 sadtalker_WDA_AOC_000] [--clips ../shared/media/clips]

1. Lid-eye coupling (`vasa.face.mesh.model.UPPER_LID_PER_IRIS`, `LOWER_LID_PER_IRIS`): over frames with
   open eyes, the slope of the mid upper and lower lid height (relative to the eye corners) on the
   vertical iris offset, each segment centred on its own mean.
2. Blink rate of the recordings (the same counter as scripts/eval_generate.py, `vasa.metrics.landmarks`).
3. How far the audio features predict the mouth: a ridge regression from the speech features of
   +-4 frames (every other frame) to the mouth opening, fitted on the training records and scored
   (Pearson r) on the held-out ones. No motion model is involved: it is a yardstick for what a model
   trained on the same few speakers can reach on the held-out mouth-opening correlation
   (`vasa.evaluation.ridge`; scripts/lipsync_ceiling.py runs it on less data and on other features).
4. With --clips (the videos the records came from): per clip (mean over its segments), the correlation of the mouth opening
   with the frame loudness (RMS), the yardstick of scripts/eval_generate.py's robustness table.
5. How much of an eye's rotation the landmark tracker reads (`vasa.face.mesh.model.GAZE_READ_GAIN`): a speaker who
   keeps looking at the camera while the head turns counter-rotates the eyes by the head's angle, so the
   tracked eye-in-head gaze should follow the tracked head yaw and pitch with slope 1. Over open-eye frames,
   each segment centred on its own mean, the least-squares slope of eye-in-head yaw (pitch) on head yaw
   (pitch); glances that turn eyes and head together only pull the slope down.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vasa.audio import load_audio
from vasa.data.prepare_video import audio_source
from vasa.data.records import read_record, record_files
from vasa.evaluation.measure import FPS, frame_rms
from vasa.evaluation.ridge import Part, held_out_r
from vasa.face.mesh.model import LEFT_EYE_CORNERS, LEFT_EYE_LIDS, RIGHT_EYE_CORNERS, RIGHT_EYE_LIDS, FaceModel
from vasa.metrics.landmarks import count_blinks

OPEN_EYES = 0.8  # frames whose eye opening is at least this fraction of the segment median


def lid_heights(model: FaceModel, canonical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid upper and lower lid y relative to the eye-corner midpoints, both eyes averaged: (T,), (T,)."""
    def relative(lid: int, corners) -> np.ndarray:
        return canonical[:, lid, 1] - (canonical[:, corners[0], 1] + canonical[:, corners[1], 1]) / 2

    upper = (relative(RIGHT_EYE_LIDS[0], RIGHT_EYE_CORNERS) + relative(LEFT_EYE_LIDS[0], LEFT_EYE_CORNERS)) / 2
    lower = (relative(RIGHT_EYE_LIDS[1], RIGHT_EYE_CORNERS) + relative(LEFT_EYE_LIDS[1], LEFT_EYE_CORNERS)) / 2
    return upper, lower


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prepared", type=Path, help="folder written by `vasa prepare`")
    parser.add_argument("--holdout", nargs="+", default=["retalking_2", "sadtalker_WDA_AOC_000"])
    parser.add_argument("--clips", type=Path, help="the videos of the records, for fact 4")
    args = parser.parse_args(argv)
    model = FaceModel.load()
    iris, upper, lower, blinks, frames = [], [], [], 0, 0
    head_angles, eye_angles, gains = [], [], {}
    train, held, loudness = [], [], {}
    for path in record_files(args.prepared):
        record = read_record(path)
        name = path.stem.rsplit("-", 1)[0]
        for segment in record.segments:
            canonical = model.mean_shape + model.decode_dynamics(segment.dynamics)  # (T, 478, 3)
            eyes = model.eye_opening(canonical).mean(axis=-1)
            blinks, frames = blinks + count_blinks(eyes), frames + len(eyes)
            keep = eyes >= OPEN_EYES * np.median(eyes)
            up, low = lid_heights(model, canonical)
            for values, out in ((model.iris_offset(canonical)[:, 1], iris), (up, upper), (low, lower)):
                out.append(values[keep] - values[keep].mean())
            head, eye = segment.pose[keep, :2], segment.gaze[keep]
            head_angles.append(head - head.mean(axis=0))
            eye_angles.append(eye - eye.mean(axis=0))
            gains[name] = (head_angles[-1] * eye_angles[-1]).sum(axis=0) / (head_angles[-1] ** 2).sum(axis=0)
            mouth = model.mouth_opening(canonical)
            if args.clips is not None:
                waveform = load_audio(audio_source(args.clips / record.source))
                rms = frame_rms(waveform, segment.start_frame + len(mouth))[segment.start_frame:]
                loudness.setdefault(name, []).append(float(np.corrcoef(mouth, rms)[0, 1]))
            (held if name in args.holdout else train).append(Part(name, segment.audio, mouth))
    iris, upper, lower = map(np.concatenate, (iris, upper, lower))
    print(f"1. lid-eye coupling over {len(iris)} open-eye frames: upper lid {iris @ upper / (iris @ iris):.2f}, "
          f"lower lid {iris @ lower / (iris @ iris):.2f} per unit of vertical iris offset")
    print(f"2. blinks: {blinks} in {frames / FPS:.0f} s = {blinks / (frames / FPS / 60):.1f} per minute")
    if not train or not held:
        print("3. skipped: needs training and held-out records")
    else:
        print(f"3. ridge regression speech features -> mouth opening, trained on {sum(len(p.mouth) for p in train)} "
              "frames, held-out r: " + ", ".join(f"{name} {r:.3f}" for name, r in held_out_r(train, held).items()))
    if loudness:
        print("4. mouth opening vs frame loudness (r): " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in sorted(loudness.items())))
    head, eye = np.concatenate(head_angles), np.concatenate(eye_angles)
    pooled = (head * eye).sum(axis=0) / (head ** 2).sum(axis=0)
    print(f"5. tracked eye-in-head gaze per degree of head rotation (counter-rotation): yaw {pooled[0]:.2f}, "
          f"pitch {pooled[1]:.2f} over {len(head)} open-eye frames; per clip yaw / pitch: "
          + ", ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in sorted(gains.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
