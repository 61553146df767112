#!/usr/bin/env bash
# The CPU run of the neural face model in docs/face_neural.md, and its figures.
#   scripts/train_face_neural.sh [MEDIA_CLIPS_DIR] [WORK_DIR]
# Needs the clips in ../shared/media/clips (third-party, not part of this repository). Two clips are held
# out. A bounded CPU run (about 25 minutes on one thread of the 2-core machine): the `small` preset
# (128 px), 2,200 cheap reconstruction-only steps, then 200 steps with every loss. A real run wants a
# GPU, the default preset and --steps in the hundreds of thousands.
set -euo pipefail
cd "$(dirname "$0")/.."
clips="${1:-../shared/media/clips}"
work="${2:-/tmp/face_neural}"
vasa="python -m vasa.cli"
$vasa prepare "$clips" "$work/prepared" --frames 256 --audio-encoder mel
$vasa train face --data "$work/prepared" --out "$work/train" --preset small --steps 2400 \
  --reconstruction-warmup-steps 2200 --batch-size 4 --lr 1e-3 --disc-lr 1e-3 --warmup-steps 50 \
  --ema-decay 0.995 --log-every 20 --val-every 300 --save-every 300 \
  --holdout retalking_2 sadtalker_WDA_AOC_000 --device cpu --threads 1
python scripts/eval_face_neural.py --model "$work/train/model.safetensors" --data "$work/prepared" \
  --holdout sadtalker_WDA_AOC_000 retalking_2 --metrics "$work/train/metrics.jsonl" --out docs/img
python scripts/bench_face_neural.py --preset base --batch 1 4
