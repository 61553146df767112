"""Copy a trained motion model to where it ships, with the audio guidance scale it was chosen with.

    python scripts/ship_motion_model.py runs/motion/model.safetensors vasa/assets/motion_default.safetensors \
        --cfg-audio 2

The weights and every metadata entry are kept; "cfg_audio" (and with --cfg-audio-pose, "cfg_audio_pose",
the scale on the head pose alone) is added or replaced, so that `TalkingHead.from_pretrained` samples
with it when the user asks for no other scale. Choose the scale
on held-out speakers (scripts/eval_speakers.py --cfg-audio), never on the training ones.

A mouth read-out (`vasa.motion.readout`) the model carries is kept (its share set with --mouth-readout);
`--readout-data DATA --split FILE` fits one on DATA's records less the split's validation speakers (the
records the model was trained on) and puts it beside the weights; `--mouth-readout 0` leaves it out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vasa.data.records import record_files
from vasa.data.splits import load_split
from vasa.motion import load_motion_model, save_motion_model
from vasa.motion.checkpoint import CONFIG_KEY, load_mouth_readout, read_metadata
from vasa.motion.readout import CONFIG_KEY as READOUT_KEY, DEFAULT_BLEND, context_for_window
from vasa.train.readout import fit_readout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a model written by `vasa train motion`")
    parser.add_argument("out", type=Path, help="where it ships")
    parser.add_argument("--cfg-audio", type=float, required=True, help="lambda_A of Eq. 2 for this model")
    parser.add_argument("--cfg-audio-pose", type=float, help="lambda_A on the head pose, where it should differ")
    parser.add_argument("--readout-data", type=Path, help="prepared records to fit the mouth read-out on")
    parser.add_argument("--split", type=Path, help="speaker split: its validation speakers are left out of the fit")
    parser.add_argument("--mouth-readout", type=float, help=f"share of the read-out in the mouth, 0..1 "
                        f"(default: the model's, or {DEFAULT_BLEND:g} for a new one; 0: none)")
    parser.add_argument("--readout-context", type=int, nargs="+", metavar="K",
                        help="frame offsets the read-out reads (default: -4 ... 4, no further ahead than the "
                             "model's window lookahead: -4 ... 3 for the live model's 4-frame windows)")
    args = parser.parse_args(argv)
    if args.mouth_readout is not None and not 0.0 <= args.mouth_readout <= 1.0:
        parser.error(f"--mouth-readout must be between 0 and 1, got {args.mouth_readout}")
    metadata = {k: v for k, v in read_metadata(args.model).items()
                if k not in (CONFIG_KEY, READOUT_KEY, "cfg_audio_pose")}
    metadata["cfg_audio"] = f"{args.cfg_audio:g}"
    if args.cfg_audio_pose is not None:
        metadata["cfg_audio_pose"] = f"{args.cfg_audio_pose:g}"
    readout = load_mouth_readout(args.model)
    if args.readout_data is not None:
        files = record_files(args.readout_data)
        if args.split is not None:
            files = load_split(args.split).partition(files)[0]
        window = load_motion_model(args.model).config.window_frames
        try:
            readout = fit_readout(files, context=args.readout_context or context_for_window(window))
        except ValueError as error:  # a context that does not surround the frame
            parser.error(str(error))
        if readout is None:
            parser.error(f"{args.readout_data}: no training records with kept frames, or records of a face "
                         "latent with no known mouth coefficients")
        print(f"fitted the mouth read-out on {len(files)} records")
    if readout is not None and args.mouth_readout is not None:
        readout.blend = args.mouth_readout
    if readout is not None and readout.blend <= 0:
        readout = None
    save_motion_model(args.out, load_motion_model(args.model), metadata, readout)
    shown = {**metadata, **({"mouth_readout": f"{readout.blend:g}"} if readout is not None else {})}
    print(f"wrote {args.out} ({', '.join(f'{k} {v}' for k, v in shown.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
