"""Fit the audio-visual sync probe that `vasa prepare` uses (`vasa/assets/sync_probe.safetensors`).

    vasa prepare ../shared/media/clips /tmp/prep_raw --av-sync off
    python scripts/make_sync_probe.py /tmp/prep_raw [--holdout retalking_2 sadtalker_WDA_AOC_000] \
        [--split data/corpus_split.json] [--components 64] [--out vasa/assets/sync_probe.safetensors]

The probe (`vasa.data.sync`) is fit on the training records only (the held-out clips are not seen), with
the clips' own offsets found on the way: fit on the clips as recorded, find each clip's offset with that
probe, refit with the offsets of `CORRECT_FROM_FRAMES` or more taken out, and repeat until no clip's
correction changes (a few rounds). Its zero is then the timing of the clips that needed no correction.
Prints every round's offsets and, for information only, the held-out clips' offsets and their
probe-to-mouth correlation at zero lag (a lip-sync yardstick, like scripts/data_facts.py's ridge).
`--split` holds out the validation speakers of a split file as well.

At the end, how well the probe finds offsets on the held-out clips: each clip's speech moved against
its mouth by known amounts (`CHECK_SHIFTS` frames), the share of moves the probe finds to within a frame
(relative to its estimate of the clip as recorded, so the clip's own offset does not count), and the
share of held-out clips whose estimate is clear. `--check-only PROBE` scores a probe file without fitting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vasa.data.records import read_record, record_files
from vasa.data.splits import load_split
from vasa.data.sync import PROBE_COMPONENTS, PROBE_PATH, SyncProbe, estimate_offset, fit_probe, shift_pairs
from vasa.face.mesh.model import FaceModel

MAX_ROUNDS = 5
CHECK_SHIFTS = (-6, -3, 3, 6)  # frames the held-out clips' speech is moved by in the final check


def clips_of(prepared: Path, split: Path | None = None) -> tuple[dict[str, list[tuple[np.ndarray, np.ndarray]]], str,
                                                            set[str]]:
    """({clip name: [(speech features (T, D), mouth opening (T,)) per segment]}, their audio encoder spec,
    the names of the clips of `split`'s validation speakers) of a prepared folder."""
    model = FaceModel.load()
    clips: dict[str, list] = {}
    encoders = set()
    files = record_files(prepared)
    held = set()
    if split is not None:
        held = {path.stem.rsplit("-", 1)[0] for path in load_split(split).partition(files)[1]}
    for path in files:
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
    return clips, encoders.pop(), held


def check(probe: SyncProbe, clips: dict[str, list], names: list[str]) -> dict:
    """How well `probe` finds known moves of the speech against the mouth on the clips `names` (above)."""
    found, tried, clear = 0, 0, 0
    for name in names:
        base = estimate_offset(probe, clips[name], probe.fps)
        if base is None or not base.clear:
            continue
        clear += 1
        for shift in CHECK_SHIFTS:
            # features of frame t against the mouth of frame t + shift: `shift` frames of offset taken out
            moved = estimate_offset(probe, [shift_pairs(f, m, shift) for f, m in clips[name]], probe.fps)
            tried += 1
            found += moved is not None and moved.clear and abs(moved.offset_frames - base.offset_frames + shift) <= 1
    return {"clips": len(names), "clear": clear, "moves": tried, "found": found,
            "found_share": found / tried if tried else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prepared", type=Path, help="folder written by `vasa prepare --av-sync off`")
    parser.add_argument("--holdout", nargs="*", default=["retalking_2", "sadtalker_WDA_AOC_000"])
    parser.add_argument("--split", type=Path, help="also hold out the validation speakers of this split file")
    parser.add_argument("--components", type=int, default=PROBE_COMPONENTS,
                        help="principal directions of the features the probe reads")
    parser.add_argument("--check-only", type=Path, metavar="PROBE", help="only score this probe on the held-out clips")
    parser.add_argument("--out", type=Path, default=PROBE_PATH)
    args = parser.parse_args(argv)
    clips, encoder, by_speaker = clips_of(args.prepared, args.split)
    train = sorted(n for n in clips if n not in args.holdout and n not in by_speaker)
    held = sorted(n for n in clips if n in args.holdout or n in by_speaker)
    if args.check_only:
        probe = SyncProbe.load(args.check_only)
        if probe.audio_encoder != encoder:
            raise SystemExit(f"{args.check_only} reads {probe.audio_encoder} features, the records hold {encoder}")
        print(f"{args.check_only} on {len(held)} held-out clips: {check(probe, clips, held)}")
        return 0
    if not train:
        raise SystemExit("no training clips left after --holdout")
    lags = {n: 0 for n in train}
    for round_ in range(MAX_ROUNDS):
        segments = [(name, part) for name in train for part in clips[name]]
        probe = fit_probe([part for _, part in segments], encoder, lags=[lags[name] for name, _ in segments],
                          names=tuple(train), components=args.components)
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
    if held:
        print(f"held-out check on {len(held)} clips: {check(probe, clips, held)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
