"""Training and held-out loss curves of one or more runs, as a PNG.

    python scripts/plot_training.py runs/motion/metrics.jsonl [more metrics.jsonl ...] \
        [--labels NAME ...] --out docs/img/motion_training.png

Each run's `metrics.jsonl` (written by every `vasa train` command) gives a thin line for the training
loss and dots joined by a thick line for the held-out loss, in the same colour.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def read_metrics(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, loss) and (step, held-out loss) pairs; a resumed run's repeated steps keep the last entry."""
    train, held = {}, {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("loss") is not None:
            train[row["step"]] = row["loss"]
        if row.get("val_loss") is not None:
            held[row["step"]] = row["val_loss"]
    return sorted(train.items()), sorted(held.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.jsonl files")
    parser.add_argument("--labels", nargs="+", help="one name per run (default: the run folder's name)")
    parser.add_argument("--title", default="motion model training")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    labels = args.labels or [m.parent.name for m in args.metrics]
    if len(labels) != len(args.metrics):
        parser.error(f"{len(args.metrics)} runs but {len(labels)} labels")
    missing = [str(m) for m in args.metrics if not m.is_file()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (path, label) in enumerate(zip(args.metrics, labels)):
        train, held = read_metrics(path)
        colour = f"C{i}"
        if train:
            ax.plot(*zip(*train), color=colour, alpha=0.35, linewidth=1, label=f"{label}: training")
        if held:
            ax.plot(*zip(*held), "o-", color=colour, linewidth=2, label=f"{label}: held out")
    ax.set_xlabel("step")
    ax.set_ylabel("diffusion loss")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
