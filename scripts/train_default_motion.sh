#!/usr/bin/env bash
# Reproduce the shipped motion model (vasa/assets/motion_default.safetensors) from the training corpus.
#   scripts/train_default_motion.sh [CORPUS_DIR] [WORK_DIR]
# Needs the corpus in ../shared/media/train with its MANIFEST.tsv (third-party, research terms, not part of
# this repository). The 20 speakers of data/corpus_split.json are held out for validation and the figures in
# the model card. Whisper base layer 3 features, each video's audio-visual offset taken out where the sync
# probe finds one. On a 2-core CPU: about 12 minutes to prepare, 16 to train.
# The trainer fits the mouth read-out (vasa/motion/readout.py) on the same training records and saves it
# in the model file; the ship script keeps it at its share of 0.75.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:-../shared/media/train}"
work="${2:-runs/default_motion}"
bin=".venv/bin"
"$bin/vasa" prepare "$corpus" "$work/prepared" --workers 2 --audio-encoder whisper-base --audio-layers 3 \
  --av-sync correct
"$bin/vasa" train motion --data "$work/prepared" --out "$work/train" --preset small --steps 4000 --batch-size 32 \
  --lr 5e-4 --split data/corpus_split.json --val-every 1000 --save-every 1000 --seed 0 --threads 1
"$bin/python" scripts/ship_motion_model.py "$work/train/model.safetensors" vasa/assets/motion_default.safetensors \
  --cfg-audio 2 --cfg-audio-pose 0.5
