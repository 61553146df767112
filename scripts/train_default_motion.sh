#!/usr/bin/env bash
# Reproduce the shipped motion model (vasa/assets/motion_default.safetensors) from the development clips.
#   scripts/train_default_motion.sh [MEDIA_CLIPS_DIR] [WORK_DIR]
# Needs the clips in ../shared/media/clips (third-party, not part of this repository). Two clips are held
# out for validation and the figures in the model card. On a 2-core CPU this takes about 25 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
clips="${1:-../shared/media/clips}"
work="${2:-runs/default_motion}"
vasa=".venv/bin/vasa"
"$vasa" prepare "$clips" "$work/prepared"
"$vasa" train motion --data "$work/prepared" --out "$work/train" --preset small --steps 4000 --batch-size 32 \
  --lr 5e-4 --holdout retalking_2 sadtalker_WDA_AOC_000 --val-every 500 --save-every 500 --seed 0
cp "$work/train/model.safetensors" vasa/assets/motion_default.safetensors
echo "copied $work/train/model.safetensors to vasa/assets/motion_default.safetensors"
