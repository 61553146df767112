#!/usr/bin/env bash
# Reproduce the shipped live motion model (vasa/assets/motion_live.safetensors) from the development clips.
#   scripts/train_live_motion.sh [MEDIA_CLIPS_DIR] [WORK_DIR]
# Needs the clips in ../shared/media/clips (third-party, not part of this repository). The same two clips as
# the default model's are held out. Whisper features in 80 ms hops with 1 s of left context and 40 ms
# lookahead, 4-frame windows (preset `live`). On a 2-core CPU this takes about 5 minutes (with the prepare step).
set -euo pipefail
cd "$(dirname "$0")/.."
clips="${1:-../shared/media/clips}"
work="${2:-runs/live_motion}"
vasa=".venv/bin/vasa"
"$vasa" prepare "$clips" "$work/prepared" --audio-schedule 0.08 1 0.04
"$vasa" train motion --data "$work/prepared" --out "$work/train" --preset live --steps 1000 --batch-size 64 \
  --lr 5e-4 --holdout retalking_2 sadtalker_WDA_AOC_000 --val-every 500 --save-every 500 --seed 0 --threads 1
cp "$work/train/model.safetensors" vasa/assets/motion_live.safetensors
echo "copied $work/train/model.safetensors to vasa/assets/motion_live.safetensors"
