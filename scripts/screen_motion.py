"""Held-out lip sync of motion models in motion space: a quick screen before rendering anything.

    python scripts/screen_motion.py PREPARED MODEL [MODEL ...] --clips ../shared/media/clips \
        [--holdout retalking_2 sadtalker_WDA_AOC_000] [--seeds 3] [--train-clips]

For each held-out record of PREPARED (written by `vasa prepare`), the clip's first frame is the portrait
and its own audio the speech; each model generates motion (`TalkingHead.motion`, default controls, one
run per seed) and the mouth opening of its facial dynamics is correlated with the record's real one,
frame by frame. No rendering and no re-tracking, so it takes seconds a model where
`scripts/eval_generate.py` takes a minute; the figures it prints are the "in motion space" ones of the
model cards. `--train-clips` scores the training records instead (how closely a model fits its own data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vasa.audio import load_audio
from vasa.data.prepare_video import audio_source
from vasa.data.records import read_record, record_files
from vasa.media import iter_video_frames
from vasa.pipeline import Controls, TalkingHead

FPS = 25.0


def mouth_of(head: TalkingHead, dynamics: np.ndarray) -> np.ndarray:
    model = head.face.model
    return model.mouth_opening(model.mean_shape + model.decode_dynamics(dynamics))  # (T,)


def screen(head: TalkingHead, record, video: Path, seeds: list[int]) -> list[float]:
    """Mouth-opening r of one record's segments, one per seed (segments' frames pooled)."""
    head.set_source(next(iter(iter_video_frames(video, FPS))))
    waveform = load_audio(audio_source(video))
    scores = []
    for seed in seeds:
        x = np.concatenate(list(head.motion(waveform, Controls(seed=seed))))  # (T, 46)
        _, dynamics = head.space.to_absolute(x, head.source.reference)
        generated = mouth_of(head, dynamics)
        real_parts, generated_parts = [], []
        for segment in record.segments:
            stop = min(segment.start_frame + len(segment.dynamics), len(generated))
            real_parts.append(mouth_of(head, segment.dynamics)[: stop - segment.start_frame])
            generated_parts.append(generated[segment.start_frame:stop])
        scores.append(float(np.corrcoef(np.concatenate(generated_parts), np.concatenate(real_parts))[0, 1]))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prepared", type=Path, help="folder written by `vasa prepare` (any audio encoder)")
    parser.add_argument("models", nargs="+", help="motion models: paths or shipped names (default, live)")
    parser.add_argument("--clips", type=Path, required=True, help="the videos the records were prepared from")
    parser.add_argument("--holdout", nargs="+", default=["retalking_2", "sadtalker_WDA_AOC_000"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-clips", action="store_true", help="score the records not held out instead")
    args = parser.parse_args(argv)
    records = [read_record(path) for path in record_files(args.prepared)]
    chosen = [r for r in records if (Path(r.source).stem in args.holdout) != args.train_clips]
    if not chosen:
        parser.error("no records to score (check --holdout and PREPARED)")
    print("| model | " + " | ".join(Path(r.source).stem for r in chosen) + " |")
    print("|---|" + "---|" * len(chosen))
    for name in args.models:
        head = TalkingHead.from_pretrained(name, size=256)
        cells = []
        for record in chosen:
            scores = screen(head, record, args.clips / record.source, list(range(args.seeds)))
            cells.append(f"{np.mean(scores):.3f} ± {np.std(scores):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
