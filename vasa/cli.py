"""`vasa` command line. User mistakes end in one line on stderr and exit status 2, never a trace."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vasa.errors import VasaError


def _positive_size(text: str) -> int:
    value = int(text)
    if value < 64 or value % 2:
        raise argparse.ArgumentTypeError("size must be an even number of pixels, at least 64")
    return value


def _positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 240:
        raise argparse.ArgumentTypeError("frame rate must be above 0 and at most 240")
    return value


def _add_face_options(p) -> None:
    p.add_argument("--face", choices=["mesh", "neural"], default="mesh",
                   help="face backend: mesh (geometry, default) or neural (a model trained by `vasa train face`)")
    p.add_argument("--face-checkpoint", type=Path, metavar="PATH", help="the neural face model (.safetensors)")


def _face(args, size: int):
    from vasa.face.backends import load_face

    return load_face(args.face, args.face_checkpoint, size)


def _add_reenact(commands) -> None:
    p = commands.add_parser("reenact", help="animate a portrait with the motion of a talking video",
                            description="Apply the head pose and facial dynamics of a talking video "
                                        "to a portrait, relative to the video's first frame.")
    p.add_argument("--image", required=True, type=Path, help="portrait photo (any size; RGBA, gray, 16-bit ok)")
    p.add_argument("--video", required=True, type=Path, help="driving talking-face video")
    p.add_argument("--out", required=True, type=Path, help="output .mp4 (H.264 + AAC)")
    p.add_argument("--only", choices=["pose", "dynamics"], help="transfer only head pose or only facial dynamics")
    p.add_argument("--size", type=_positive_size, default=512, help="output side in pixels (default 512)")
    p.add_argument("--audio", type=Path, help="soundtrack to use instead of the video's own")
    p.add_argument("--fps", type=_positive_fps, default=25.0, help="output frame rate (default 25)")
    p.add_argument("--reference", choices=["neutral", "first"], default="neutral",
                   help="expressions move relative to the driver's neutral closed-mouth face (default) "
                        "or to its first frame; head pose is always relative to the first frame")
    p.add_argument("--paste-back", action="store_true",
                   help="put the animated face back into the whole photo instead of writing the square crop")
    _add_face_options(p)
    p.set_defaults(run=_run_reenact)


def _run_reenact(args) -> None:
    from vasa.reenact import reenact

    frames = reenact(args.image, args.video, args.out, only=args.only, size=args.size,
                     audio=args.audio, fps=args.fps, reference=args.reference,
                     paste_back=args.paste_back, face=_face(args, args.size))
    print(f"wrote {args.out} ({frames} frames at {args.fps:g} fps)")


def _add_prepare(commands) -> None:
    p = commands.add_parser("prepare", help="talking-face videos -> training records for `vasa train`",
                            description="Track the face, extract motion, gaze, distance, emotion, speech features "
                                        "and voice activity from talking videos; split at shot cuts; drop "
                                        "stretches with no face, several people or tracking failures. Resumable.")
    p.add_argument("videos", nargs="+", type=Path, help="video files or folders of videos")
    p.add_argument("out", type=Path, help="output folder (records go to OUT/records)")
    p.add_argument("--shard", default="0/1", help="i/n: prepare only every n-th video starting at i (job arrays)")
    p.add_argument("--audio-encoder", default="whisper", choices=["whisper", "wav2vec2", "mel"])
    p.add_argument("--audio-model", type=Path, help="local model folder for wav2vec2/HuBERT (or another Whisper)")
    p.add_argument("--min-frames", type=int, default=25, help="shortest segment kept, in frames (default 25)")
    p.add_argument("--overwrite", action="store_true", help="prepare videos again even if their record exists")
    p.add_argument("--frames", type=int, default=0, metavar="SIZE",
                   help="also store the tracked face crops, SIZE x SIZE, in OUT/frames (for `vasa train face`)")
    _add_face_options(p)
    p.set_defaults(run=_run_prepare)


def _run_prepare(args) -> None:
    from vasa.data.prepare import PrepareConfig, parse_shard, prepare

    config = PrepareConfig(audio_encoder=args.audio_encoder, min_frames=args.min_frames,
                           audio_model=str(args.audio_model) if args.audio_model else None, frames=args.frames,
                           face=args.face, face_checkpoint=str(args.face_checkpoint) if args.face_checkpoint else None)
    report = prepare(args.videos, args.out, config, parse_shard(args.shard), args.overwrite)
    print(f"{report['videos']} videos -> {report['segments']} segments, {report['frames']} frames "
          f"({report['frames'] / config.fps:.1f} s) in {args.out / 'records'}")
    for reason, frames in sorted(report["dropped_frames"].items()):
        print(f"  dropped {frames} frames: {reason}")


def _add_controls(p) -> None:
    p.add_argument("--gaze", nargs=2, type=float, metavar=("THETA", "PHI"),
                   help="main eye direction in degrees, head frame: THETA > 0 toward the image's right, PHI > 0 up")
    p.add_argument("--distance", type=float, help="head distance relative to the photo (1.25 = farther, smaller face)")
    p.add_argument("--emotion", nargs="+", metavar="NAME=WEIGHT",
                   help="emotion offset, e.g. happy=1 (neutral, happy, sad, surprise, fear, disgust, anger)")
    p.add_argument("--cfg-audio", type=float, default=0.5, help="audio guidance scale (Eq. 2; default 0.5)")
    p.add_argument("--cfg-gaze", type=float, default=1.0, help="gaze guidance scale (Eq. 2; default 1.0)")
    p.add_argument("--steps", type=int, default=10, help="DDIM sampling steps (default 10; 0 = 50-step ancestral)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head-scale", type=float, default=1.0, help="head-motion amplitude (0 = still, default 1)")
    p.add_argument("--expression-scale", type=float, default=1.0, help="facial-motion amplitude (default 1)")
    p.add_argument("--smooth", type=float, default=0.6, help="head-pose smoothing strength in [0, 1) (default 0.6)")
    p.add_argument("--still", action="store_true", help="keep the head still at the photo's pose")
    p.add_argument("--mouth-in-silence", action="store_true",
                   help="let the mouth move where voice activity says silence (default: closed)")


def _controls(args):
    from vasa.pipeline import Controls, parse_emotion

    return Controls(gaze=tuple(args.gaze) if args.gaze else None, distance=args.distance,
                    emotion=parse_emotion(args.emotion), cfg_audio=args.cfg_audio, cfg_gaze=args.cfg_gaze,
                    steps=args.steps, seed=args.seed, head_scale=args.head_scale,
                    expression_scale=args.expression_scale, smoothing=args.smooth, still=args.still,
                    close_mouth_in_silence=not args.mouth_in_silence)


def _add_generate(commands) -> None:
    p = commands.add_parser("generate", help="portrait + speech -> talking video",
                            description="Generate head motion, expressions, blinks and lip motion from speech "
                                        "with the motion model and render them on the portrait.")
    p.add_argument("--image", required=True, type=Path, help="portrait photo")
    p.add_argument("--audio", required=True, type=Path, help="speech (any audio file, or a video's soundtrack)")
    p.add_argument("--out", required=True, type=Path, help="output .mp4 (H.264 + the input audio)")
    p.add_argument("--model", type=Path, help="motion model .safetensors (default: the shipped one)")
    p.add_argument("--motion-from", type=Path, metavar="VIDEO",
                   help="take the motion from this talking video instead of generating it (reenactment)")
    p.add_argument("--size", type=_positive_size, default=512, help="output side in pixels (default 512)")
    p.add_argument("--fps", type=_positive_fps, default=25.0, help="output frame rate (default 25)")
    p.add_argument("--paste-back", action="store_true",
                   help="put the animated face back into the whole photo instead of writing the square crop")
    _add_controls(p)
    _add_face_options(p)
    p.set_defaults(run=_run_generate)


def _run_generate(args) -> None:
    if args.motion_from is not None:
        from vasa.reenact import reenact

        frames = reenact(args.image, args.motion_from, args.out, size=args.size, audio=args.audio,
                         fps=args.fps, paste_back=args.paste_back, face=_face(args, args.size))
    else:
        from vasa.pipeline import TalkingHead

        controls = _controls(args)
        head = TalkingHead.from_pretrained(args.model, size=args.size, face=_face(args, args.size))
        head.set_source(args.image)
        frames = head.generate(args.audio, args.out, controls, fps=args.fps, paste_back=args.paste_back)
    print(f"wrote {args.out} ({frames} frames at {args.fps:g} fps)")


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="generate a talking video of the bundled portrait and speech")
    p.add_argument("--out", type=Path, default=Path("vasa_demo.mp4"), help="output .mp4 (default vasa_demo.mp4)")
    p.add_argument("--size", type=_positive_size, default=512)
    p.add_argument("--reenact", action="store_true",
                   help="drive the portrait with the bundled talking clip instead of generating the motion")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> None:
    from vasa.demo import run_demo

    run_demo(args.out, size=args.size, reenact=args.reenact)


def _add_train(commands) -> None:
    p = commands.add_parser("train", help="train a model on records written by `vasa prepare`")
    models = p.add_subparsers(dest="model", required=True)
    # options left out take TrainConfig's defaults (vasa/train/motion.py, docs/training.md)
    m = models.add_parser(
        "motion", argument_default=argparse.SUPPRESS, help="train the motion generator (MotionDiT)",
        description="Train the motion generator on prepared records. Running it again with the same --out "
                    "resumes. Multi-process: torchrun --nproc_per_node N -m vasa.cli train motion ... "
                    "(docs/training.md).")
    m.add_argument("--data", required=True, type=Path, help="folder written by `vasa prepare` (or its records/)")
    m.add_argument("--out", required=True, type=Path, help="run folder: weights, state.pt, metrics, tb/")
    m.add_argument("--preset", help="model size, a name in vasa.motion.PRESETS (tiny, small, default, base; "
                                    "default: default)")
    m.add_argument("--steps", type=int, help="optimiser steps in all (a resumed run continues to this)")
    m.add_argument("--batch-size", type=int, help="windows per step and process (default 64)")
    m.add_argument("--lr", type=float, help="peak learning rate (default 2e-4)")
    m.add_argument("--weight-decay", type=float, help="AdamW weight decay of weight matrices (default 0.01)")
    m.add_argument("--warmup-steps", type=int, help="linear warmup steps (default 200)")
    m.add_argument("--min-lr-ratio", type=float, help="cosine decay ends at this fraction of --lr (default 0.1)")
    m.add_argument("--grad-clip", type=float, help="gradient norm clip, 0 = off (default 1.0)")
    m.add_argument("--ema-decay", type=float, help="EMA decay of the shipped weights (default 0.999)")
    m.add_argument("--log-every", type=int, help="steps between metrics lines")
    m.add_argument("--val-every", type=int, help="steps between validation losses (needs --holdout)")
    m.add_argument("--save-every", type=int, help="steps between checkpoints")
    m.add_argument("--seed", type=int, help="seed of weights, windows and noise (default 0)")
    m.add_argument("--holdout", nargs="+", type=str, metavar="NAME",
                   help="records (video stems) kept out of training for the validation loss")
    m.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    m.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto: cuda when available")
    m.add_argument("--amp", action="store_true", help="bf16 autocast (GPU only)")
    m.add_argument("--no-augment", dest="augment", action="store_false",
                   help="turn off the gaze, distance and speed augmentations")
    m.set_defaults(run=_run_train_motion)
    _add_train_face(models)


def _add_train_face(models) -> None:
    # options left out take FaceTrainConfig's defaults (vasa/train/face.py, docs/face_neural.md)
    f = models.add_parser(
        "face", argument_default=argparse.SUPPRESS, help="train the neural face model (--face neural)",
        description="Train the neural face latent space on the face crops stored by `vasa prepare --frames`. "
                    "Running it again with the same --out resumes. Multi-process: torchrun --nproc_per_node N "
                    "-m vasa.cli train face ... (docs/face_neural.md).")
    f.add_argument("--data", required=True, type=Path, help="folder written by `vasa prepare --frames SIZE`")
    f.add_argument("--out", required=True, type=Path, help="run folder: weights, state.pt, metrics, samples, tb/")
    f.add_argument("--preset", help="model size: tiny, small (128 px), default (256 px), base (512 px)")
    f.add_argument("--steps", type=int, help="optimiser steps in all (a resumed run continues to this)")
    f.add_argument("--batch-size", type=int, help="samples (source, driver, cross driver) per step and process")
    f.add_argument("--lr", type=float, help="peak generator learning rate (default 2e-4)")
    f.add_argument("--disc-lr", type=float, help="peak discriminator learning rate (default 2e-4)")
    f.add_argument("--warmup-steps", type=int, help="linear warmup steps (default 500)")
    f.add_argument("--min-lr-ratio", type=float, help="cosine decay ends at this fraction of --lr (default 0.1)")
    f.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0)")
    f.add_argument("--grad-clip", type=float, help="generator gradient norm clip, 0 = off (default 1.0)")
    f.add_argument("--ema-decay", type=float, help="EMA decay of the shipped weights (default 0.999)")
    for name in ("reconstruction", "perceptual", "feature-matching", "adversarial", "transfer", "cycle",
                 "identity", "pose"):
        f.add_argument(f"--{name}-weight", type=float, help=f"weight of the {name} loss (0 = off)")
    f.add_argument("--reconstruction-warmup-steps", type=int, metavar="N",
                   help="first N steps: reconstruction and pose losses only, no discriminator (cheap steps; "
                        "default 0)")
    f.add_argument("--perceptual", type=Path, help="TorchScript feature network for the perceptual loss")
    f.add_argument("--identity-descriptor", type=Path, help="TorchScript face descriptor for the identity loss")
    f.add_argument("--log-every", type=int, help="steps between metrics lines")
    f.add_argument("--val-every", type=int, help="steps between held-out PSNR/SSIM (needs --holdout)")
    f.add_argument("--save-every", type=int, help="steps between checkpoints and sample grids")
    f.add_argument("--seed", type=int, help="seed of weights and samples (default 0)")
    f.add_argument("--holdout", nargs="+", type=str, metavar="NAME", help="records (video stems) kept out of training")
    f.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    f.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto: cuda when available")
    f.add_argument("--amp", action="store_true", help="bf16 autocast (GPU only)")
    f.set_defaults(run=_run_train_face)


def _run_train_face(args) -> None:
    from vasa.train import face as trainer

    _run_trainer(args, trainer.FaceTrainConfig, trainer.train_face)


def _run_train_motion(args) -> None:
    from vasa.train import motion as trainer  # the command line is the one module allowed to reach training

    _run_trainer(args, trainer.TrainConfig, trainer.train_motion)


def _run_trainer(args, config_class, train) -> None:
    """Build the trainer's config from the options given (the rest take its defaults) and train."""
    import dataclasses

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}
    if "holdout" in options:
        options["holdout"] = tuple(options["holdout"])
    try:
        train(config_class(**options))  # rank 0 says what it wrote
    except KeyboardInterrupt:
        print(f"vasa: interrupted; run the same command to resume from {args.out / 'state.pt'}", file=sys.stderr)
        raise SystemExit(130) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vasa", description="VASA-1 talking faces: one portrait, one voice.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_generate(commands)
    _add_reenact(commands)
    _add_prepare(commands)
    _add_demo(commands)
    _add_train(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        args.run(args)
    except VasaError as error:
        print(f"vasa: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vasa: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
