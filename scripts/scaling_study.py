"""Held-out-speaker lip sync against training data and model size: which motion model to ship.

    python scripts/scaling_study.py DATA --split data/corpus_split.json --clips ../shared/media/train \
        --out runs/scaling [--fractions 0.25 0.5 1] [--presets small default] [--steps 4000]

For each fraction, whole training speakers are taken (in a seeded order) until that share of the
training seconds is reached; the held-out speakers are always all of them. Each (fraction, preset) arm
is trained with `vasa train motion` (same recipe as the shipped models, `--split` for the validation
loss) and scored by scripts/eval_speakers.py in motion space, with the 1 s shifted-audio control.
Arms already trained or scored are skipped, so a stopped study resumes. The table goes to stdout and
OUT/scaling.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from vasa.data.records import read_meta, record_files, speaker_of
from vasa.data.splits import load_split

SCRIPTS = Path(__file__).resolve().parent


def subset(data: Path, split_path: Path, fraction: float, out: Path, seed: int = 0) -> tuple[int, float]:
    """OUT/records: links to the held-out records and to whole training speakers' records up to
    `fraction` of the training seconds. Returns (training speakers, training seconds)."""
    split = load_split(split_path)
    by_speaker: dict[str, list[tuple[Path, float]]] = {}
    held = []
    for path in record_files(data):
        meta = read_meta(path)
        speaker = speaker_of(meta)
        if split.holds_out(speaker):
            held.append(path)
        elif meta["frames"]:
            by_speaker.setdefault(speaker, []).append((path, meta["frames"] / meta["fps"]))
    order = sorted(by_speaker, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    total = sum(seconds for rows in by_speaker.values() for _, seconds in rows)
    chosen, seconds = [], 0.0
    for speaker in order:
        if seconds >= fraction * total - 1e-6:
            break
        chosen.append(speaker)
        seconds += sum(s for _, s in by_speaker[speaker])
    records = out / "records"
    records.mkdir(parents=True, exist_ok=True)
    for path in held + [p for s in chosen for p, _ in by_speaker[s]]:
        link = records / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return len(chosen), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--clips", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    parser.add_argument("--presets", nargs="+", default=["small", "default"])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    vasa = [sys.executable, "-m", "vasa.cli"]
    table = {}
    for preset in args.presets:
        for fraction in args.fractions:
            arm = args.out / f"{preset}-{fraction:g}"
            speakers, seconds = subset(args.data, args.split, fraction, arm / "data")
            model = arm / "train" / "model.safetensors"
            if not model.exists():
                subprocess.run(vasa + ["train", "motion", "--data", str(arm / "data"), "--out", str(arm / "train"),
                                       "--preset", preset, "--steps", str(args.steps), "--batch-size",
                                       str(args.batch_size), "--lr", str(args.lr), "--split", str(args.split),
                                       "--val-every", "1000", "--save-every", "1000", "--seed", "0",
                                       "--threads", str(args.threads)], check=True)
            scores = arm / "eval.json"
            if not scores.exists():
                subprocess.run([sys.executable, str(SCRIPTS / "eval_speakers.py"), str(args.data), str(model),
                                "--split", str(args.split), "--clips", str(args.clips), "--json", str(scores)],
                               check=True)
            summary = json.loads(scores.read_text())[str(model)]["summary"]
            table[arm.name] = {"preset": preset, "fraction": fraction, "speakers": speakers,
                               "minutes": seconds / 60, "motion_r": summary["motion_r_paired"],
                               "shifted_r": summary["motion_r_shifted"]}
            (args.out / "scaling.json").write_text(json.dumps(table, indent=2) + "\n")
    print("| preset | data | speakers | minutes | held-out mouth r (mean, median, q25-q75) | 1 s shifted |")
    print("|---|---|---|---|---|---|")
    for row in table.values():
        m, s = row["motion_r"], row["shifted_r"]
        print(f"| {row['preset']} | {row['fraction']:g} | {row['speakers']} | {row['minutes']:.1f} | "
              f"{m['mean']:.3f}, {m['median']:.3f}, {m['q25']:.3f}-{m['q75']:.3f} | {s['mean']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
