#!/usr/bin/env bash
# The CPU run of the neural face model in docs/face_neural.md, and its figures.
#   scripts/train_face_neural.sh [MEDIA_CLIPS_DIR] [WORK_DIR]
# Needs the clips in ../shared/media/clips (third-party, not part of this repository). Two clips are held
# out. On the shared 2-core CPU the run in docs/face_neural.md was stopped at step 100 of these 125 (27
# minutes; the figures are of step 100). A real run wants a GPU, the default preset and --steps in the
# hundreds of thousands.
set -euo pipefail
cd "$(dirname "$0")/.."
clips="${1:-../shared/media/clips}"
work="${2:-/tmp/face_neural}"
vasa="python -m vasa.cli"
$vasa prepare "$clips" "$work/prepared" --frames 256 --audio-encoder mel
$vasa train face --data "$work/prepared" --out "$work/train" --preset small --steps 125 --batch-size 4 \
  --lr 5e-4 --disc-lr 5e-4 --warmup-steps 10 --ema-decay 0.98 --log-every 5 --val-every 25 --save-every 25 \
  --holdout retalking_2 sadtalker_WDA_AOC_000 --device cpu --threads 2
python scripts/eval_face_neural.py --model "$work/train/model.safetensors" --data "$work/prepared" \
  --holdout sadtalker_WDA_AOC_000 retalking_2 --metrics "$work/train/metrics.jsonl" --out docs/img
python scripts/bench_face_neural.py --preset base --batch 1 4
