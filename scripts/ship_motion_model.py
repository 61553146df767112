"""Copy a trained motion model to where it ships, with the audio guidance scale it was chosen with.

    python scripts/ship_motion_model.py runs/motion/model.safetensors vasa/assets/motion_default.safetensors \
        --cfg-audio 2

The weights and every metadata entry are kept; "cfg_audio" (and with --cfg-audio-pose, "cfg_audio_pose",
the scale on the head pose alone) is added or replaced, so that `TalkingHead.from_pretrained` samples
with it when the user asks for no other scale. Choose the scale
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
    parser.add_argument("--cfg-audio-pose", type=float, help="lambda_A on the head pose, where it should differ")
    args = parser.parse_args(argv)
    metadata = {k: v for k, v in read_metadata(args.model).items() if k not in (CONFIG_KEY, "cfg_audio_pose")}
    metadata["cfg_audio"] = f"{args.cfg_audio:g}"
    if args.cfg_audio_pose is not None:
        metadata["cfg_audio_pose"] = f"{args.cfg_audio_pose:g}"
    save_motion_model(args.out, load_motion_model(args.model), metadata)
    print(f"wrote {args.out} ({', '.join(f'{k} {v}' for k, v in metadata.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
