#!/usr/bin/env bash
# Reproduce the shipped live motion model (vasa/assets/motion_live.safetensors) from the training corpus.
#   scripts/train_live_motion.sh [CORPUS_DIR] [WORK_DIR]
# Needs the corpus in ../shared/media/train with its MANIFEST.tsv (third-party, research terms, not part of
# this repository). The 20 speakers of data/corpus_split.json are held out, as for the default model.
# Whisper base layer 3 features in 80 ms hops with 1 s of left context and 40 ms lookahead, 4-frame windows
# (preset `live`), offsets taken out. On a 2-core CPU: about 25 minutes to prepare, 6 to train.
# The trainer fits the mouth read-out (vasa/motion/readout.py) on the same training records and saves it
# in the model file; the ship script keeps it at its share of 0.75.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:-../shared/media/train}"
work="${2:-runs/live_motion}"
bin=".venv/bin"
"$bin/vasa" prepare "$corpus" "$work/prepared" --workers 2 --audio-encoder whisper-base --audio-layers 3 \
  --audio-schedule 0.08 1 0.04 --av-sync correct
"$bin/vasa" train motion --data "$work/prepared" --out "$work/train" --preset live --steps 3000 --batch-size 64 \
  --lr 5e-4 --split data/corpus_split.json --val-every 500 --save-every 500 --seed 0 --threads 1
"$bin/python" scripts/ship_motion_model.py "$work/train/model.safetensors" vasa/assets/motion_live.safetensors \
  --cfg-audio 2 --cfg-audio-pose 0.5
