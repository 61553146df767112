"""Copy a trained motion model to where it ships, with the audio guidance scale it was chosen with.

    python scripts/ship_motion_model.py runs/motion/model.safetensors vasa/assets/motion_default.safetensors \
        --cfg-audio 2

The weights and every metadata entry are kept; "cfg_audio" is added (or replaced), so that
`TalkingHead.from_pretrained` samples with it when the user asks for no other scale. Choose the scale
on held-out speakers (scripts/eval_speakers.py --cfg-audio), never on the training ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vasa.motion import load_motion_model, save_motion_model
from vasa.motion.checkpoint import CONFIG_KEY, read_metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a model written by `vasa train motion`")
    parser.add_argument("out", type=Path, help="where it ships")
    parser.add_argument("--cfg-audio", type=float, required=True, help="lambda_A of Eq. 2 for this model")
    args = parser.parse_args(argv)
    metadata = {k: v for k, v in read_metadata(args.model).items() if k != CONFIG_KEY}
    save_motion_model(args.out, load_motion_model(args.model), {**metadata, "cfg_audio": f"{args.cfg_audio:g}"})
    print(f"wrote {args.out} (cfg_audio {args.cfg_audio:g}; {', '.join(f'{k} {v}' for k, v in metadata.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
