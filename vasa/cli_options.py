"""Argument types and option groups of the `vasa` commands, each group with what reads its values back:
the face backend (generate, reenact, prepare) and the generation controls (generate). Light to import:
`vasa --help` loads it."""

from __future__ import annotations

import argparse
from pathlib import Path

MODEL_HELP = ("motion model: a .safetensors path, or a shipped one by name: default (best quality) or live "
              "(low latency, docs/serve.md); default: default")


def positive_size(text: str) -> int:
    value = int(text)
    if value < 64 or value % 2:
        raise argparse.ArgumentTypeError("size must be an even number of pixels, at least 64")
    return value


def positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 240:
        raise argparse.ArgumentTypeError("frame rate must be above 0 and at most 240")
    return value


def add_face_options(p) -> None:
    p.add_argument("--face", choices=["mesh", "neural"], default="mesh",
                   help="face backend: mesh (geometry, default) or neural (a model trained by `vasa train face`)")
    p.add_argument("--face-checkpoint", type=Path, metavar="PATH", help="the neural face model (.safetensors)")


def add_provenance_options(p) -> None:
    """The marks every written video carries (vasa.provenance, docs/provenance.md)."""
    p.add_argument("--no-watermark", action="store_true",
                   help="leave the frames without the invisible watermark (for research; the signed manifest "
                        "still says the video is synthetic)")
    p.add_argument("--sign-key", type=Path, metavar="PEM",
                   help="private key that signs the video's C2PA manifest (default: $VASA_SIGN_KEY, else a local "
                        "identity vasa makes once per user)")
    p.add_argument("--sign-cert", type=Path, metavar="PEM",
                   help="the key's certificate chain, signing certificate first (default: $VASA_SIGN_CERT)")


def provenance_from(args):
    from vasa.provenance import Provenance

    return Provenance(watermark=not args.no_watermark, sign_key=args.sign_key, sign_cert=args.sign_cert)


def chosen_face(args, size: int):
    """The face backend that add_face_options' options choose, at `size` pixels."""
    from vasa.face.backends import load_face

    return load_face(args.face, args.face_checkpoint, size)


def add_controls(p) -> None:
    """What a user can ask of the generated motion (vasa.controls.Controls)."""
    p.add_argument("--gaze", nargs=2, type=float, metavar=("THETA", "PHI"),
                   help="main eye direction in degrees, head frame: THETA > 0 toward the image's right, PHI > 0 up")
    p.add_argument("--distance", type=float, help="head distance relative to the photo (1.25 = farther, smaller face)")
    p.add_argument("--emotion", nargs="+", metavar="NAME=WEIGHT",
                   help="emotion and its weight, 0 to 1.5 (1 = a clear expression), e.g. happy=1 or sad=0.5 fear=0.5 "
                        "(neutral, happy, sad, surprise, fear, disgust, anger)")
    p.add_argument("--cfg-audio", type=float,
                   help="audio guidance scale (Eq. 2; default: the motion model's own, in its model card)")
    p.add_argument("--cfg-audio-pose", type=float,
                   help="audio guidance scale on the head pose alone (default: the motion model's own, "
                        "else --cfg-audio's)")
    p.add_argument("--cfg-gaze", type=float, default=1.0, help="gaze guidance scale (Eq. 2; default 1.0)")
    p.add_argument("--steps", type=int, default=10, help="DDIM sampling steps (default 10; 0 = 50-step ancestral)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head-scale", type=float, default=1.0, help="head-motion amplitude (0 = still, default 1)")
    p.add_argument("--expression-scale", type=float, default=1.0, help="facial-motion amplitude (default 1)")
    p.add_argument("--smooth", type=float, default=0.6, help="head-pose smoothing strength in [0, 1) (default 0.6)")
    p.add_argument("--still", action="store_true", help="keep the head still at the photo's pose")
    p.add_argument("--mouth-in-silence", action="store_true",
                   help="let the mouth move where voice activity says silence (default: closed)")
    p.add_argument("--blinks", type=float, metavar="PER_MIN",
                   help="blink rate: the model's own blinks replaced by full blinks at this many a minute "
                        "(0 = none; people blink 10-40 times; default: the model's own)")
    p.add_argument("--mouth-readout", type=float, metavar="SHARE",
                   help="share of the motion model's mouth read-out in the lips, 0 to 1 (0 = the diffusion "
                        "model's mouth alone; default: the model's own, 0.75 for the shipped ones)")


def controls_from(args):
    """The `Controls` that add_controls' options ask for."""
    from vasa.pipeline import Controls, parse_emotion

    return Controls(gaze=tuple(args.gaze) if args.gaze else None, distance=args.distance,
                    emotion=parse_emotion(args.emotion), cfg_audio=args.cfg_audio,
                    cfg_audio_pose=args.cfg_audio_pose, cfg_gaze=args.cfg_gaze, steps=args.steps,
                    seed=args.seed, head_scale=args.head_scale, expression_scale=args.expression_scale,
                    smoothing=args.smooth, still=args.still, close_mouth_in_silence=not args.mouth_in_silence,
                    blinks=args.blinks, mouth_readout=args.mouth_readout)
