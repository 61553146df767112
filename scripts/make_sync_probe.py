"""Fit the audio-visual sync probe that `vasa prepare` uses (`vasa/assets/sync_probe.safetensors`).

    vasa prepare ../shared/media/clips /tmp/prep_raw --av-sync off
    python scripts/make_sync_probe.py /tmp/prep_raw [--holdout retalking_2 sadtalker_WDA_AOC_000] \
        [--out vasa/assets/sync_probe.safetensors]

The probe (`vasa.data.sync`) is fit on the training records only (the held-out clips are not seen), with
the clips' own offsets found on the way: fit on the clips as recorded, find each clip's offset with that
probe, refit with the offsets of `CORRECT_FROM_FRAMES` or more taken out, and repeat until no clip's
correction changes (a few rounds). Its zero is then the timing of the clips that needed no correction.
Prints every round's offsets and, for information only, the held-out clips' offsets and their
probe-to-mouth correlation at zero lag (a lip-sync yardstick, like scripts/data_facts.py's ridge).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vasa.data.records import read_record, record_files
from vasa.data.sync import CORRECT_FROM_FRAMES, PROBE_PATH, estimate_offset, fit_probe
from vasa.face.mesh.model import FaceModel

MAX_ROUNDS = 5


def clips_of(prepared: Path) -> tuple[dict[str, list[tuple[np.ndarray, np.ndarray]]], str]:
    """({clip name: [(speech features (T, D), mouth opening (T,)) per segment]}, their audio encoder spec)
    of a prepared folder."""
    model = FaceModel.load()
    clips: dict[str, list] = {}
    encoders = set()
    for path in record_files(prepared):
        record = read_record(path)
        if record.face_backend != "mesh":
            raise SystemExit(f"{path.name}: the probe is fit on mesh-backend records (the mouth is read off them)")
        if record.sync is not None and record.sync.get("corrected"):
            raise SystemExit(f"{path.name} was sync-corrected; prepare with --av-sync off for the probe")
        encoders.add(record.audio_encoder)
        name = path.stem.rsplit("-", 1)[0]
        for segment in record.segments:
            mouth = model.mouth_opening(model.mean_shape + model.decode_dynamics(segment.dynamics))
            clips.setdefault(name, []).append((segment.audio, mouth))
    if len(encoders) != 1:
        raise SystemExit(f"records of several audio encoders: {sorted(encoders)}")
    return clips, encoders.pop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prepared", type=Path, help="folder written by `vasa prepare --av-sync off`")
    parser.add_argument("--holdout", nargs="*", default=["retalking_2", "sadtalker_WDA_AOC_000"])
    parser.add_argument("--out", type=Path, default=PROBE_PATH)
    args = parser.parse_args(argv)
    clips, encoder = clips_of(args.prepared)
    train = sorted(n for n in clips if n not in args.holdout)
    held = sorted(n for n in clips if n in args.holdout)
    if not train:
        raise SystemExit("no training clips left after --holdout")
    lags = {n: 0 for n in train}
    for round_ in range(MAX_ROUNDS):
        segments = [(name, part) for name in train for part in clips[name]]
        probe = fit_probe([part for _, part in segments], encoder, lags=[lags[name] for name, _ in segments],
                          names=tuple(train))
        estimates = {n: estimate_offset(probe, clips[n], probe.fps) for n in train + held}
        print(f"round {round_}: corrections (frames) {lags}")
        for name, e in estimates.items():
            role = "held out" if name in held else "training"
            if e is None:
                print(f"  {name:26s} {role:9s} no segment long enough, or no moving mouth: no offset")
                continue
            print(f"  {name:26s} {role:9s} offset {e.offset_frames:+.2f} frames ({e.offset_ms:+.0f} ms), "
                  f"peak r {e.peak_r:.2f}, r at zero {e.zero_r:.2f}")
        wanted = {n: int(round(e.offset_frames)) if e is not None and e.needs_correction else 0
                  for n, e in ((n, estimates[n]) for n in train)}
        if wanted == lags:
            break
        lags = wanted
    else:
        print(f"no fixed point in {MAX_ROUNDS} rounds; keeping the last fit", file=sys.stderr)
    probe.save(args.out)
    print(f"wrote {args.out} (fit on {', '.join(train)}; corrections {lags})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
