"""`vasa` command line. User mistakes end in one line on stderr and exit status 2, never a trace."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from vasa.errors import VasaError
from vasa.latents import FPS

MODEL_HELP = ("motion model: a .safetensors path, or a shipped one by name: default (best quality) or live "
              "(low latency, docs/serve.md); default: default")


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
    p.add_argument("--fps", type=_positive_fps, default=FPS, help=f"output frame rate (default {FPS:g})")
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
    p.add_argument("--workers", type=int, default=1,
                   help="processes preparing videos side by side on this machine (default 1; records are the same)")
    p.add_argument("--manifest", type=Path,
                   help="tab-separated file with a `file` column and a `speaker` label per video (default: a "
                        "MANIFEST.tsv at the root of a folder given; docs/training.md)")
    p.add_argument("--audio-encoder", default="whisper", choices=["whisper", "whisper-base", "wav2vec2", "mel"])
    p.add_argument("--audio-model", type=Path, help="local model folder for wav2vec2/HuBERT (or another Whisper)")
    p.add_argument("--audio-schedule", nargs=3, type=float, metavar=("HOP", "LEFT", "LOOKAHEAD"),
                   help="encoder windows in seconds (default: the encoder's); a model trained on these records "
                        "runs on the same windows, e.g. 0.08 1 0.04 for the live model (docs/serve.md)")
    p.add_argument("--audio-layers", nargs="+", type=int, metavar="K",
                   help="Whisper encoder layers to take features from, concatenated (default: its output; "
                        "0 = stem, 4 = output for tiny.en; docs/audio.md)")
    p.add_argument("--min-frames", type=int, default=25, help="shortest segment kept, in frames (default 25)")
    p.add_argument("--overwrite", action="store_true", help="prepare videos again even if their record exists")
    p.add_argument("--retry-failed", action="store_true",
                   help="prepare again the videos that gave no segment last time (videos that were unusable, or "
                        "changed since their record was made, are tried again anyway)")
    p.add_argument("--frames", type=int, default=0, metavar="SIZE",
                   help="also store the tracked face crops, SIZE x SIZE, in OUT/frames (for `vasa train face`)")
    p.add_argument("--av-sync", default="report", choices=["correct", "report", "off"],
                   help="each video's audio-visual offset: measure it and list those of 100 ms or more "
                        "(report, the default), measure it and take those out (correct), or neither (off)")
    p.add_argument("--sync-probe", type=Path, help="the speech-to-mouth probe that finds offsets "
                                                   "(default: the shipped one; scripts/make_sync_probe.py fits one)")
    _add_face_options(p)
    p.set_defaults(run=_run_prepare)


def _run_prepare(args) -> None:
    from vasa.data.prepare import PrepareConfig, parse_shard, prepare

    config = PrepareConfig(audio_encoder=args.audio_encoder, min_frames=args.min_frames,
                           audio_schedule=tuple(args.audio_schedule) if args.audio_schedule else None,
                           audio_layers=tuple(args.audio_layers) if args.audio_layers else None,
                           audio_model=str(args.audio_model) if args.audio_model else None, frames=args.frames,
                           face=args.face, face_checkpoint=str(args.face_checkpoint) if args.face_checkpoint else None,
                           av_sync=args.av_sync, sync_probe=str(args.sync_probe) if args.sync_probe else None)
    report = prepare(args.videos, args.out, config, parse_shard(args.shard), args.overwrite,
                     workers=args.workers, manifest=args.manifest, retry_failed=args.retry_failed)
    print(f"{report['videos']} videos -> {report['segments']} segments, {report['frames']} frames "
          f"({report['frames'] / config.fps:.1f} s) in {args.out / 'records'}; data card: {args.out / 'DATA_CARD.md'}")
    for name, why in sorted(report["unusable"].items()):
        print(f"  unusable: {name}: {why}")
    for reason, frames in sorted(report["dropped_frames"].items()):
        print(f"  dropped {frames} frames: {reason}")
    sync = report["sync"]
    if sync["measured"]:
        corrected = ", ".join(f"{name} {ms:+.0f} ms" for name, ms in sorted(sync["corrected"].items()))
        print(f"  audio-visual offset measured on {sync['measured']} videos" + (f"; corrected: {corrected}" if corrected else ""))
    for name, ms in sorted(sync["large"].items()):
        print(f"  {name}: audio-visual offset {ms:+.0f} ms (--av-sync correct takes it out)")
    if sync["unclear"]:
        print(f"  no clear sync between mouth and speech (a dub, a silent speaker?): {', '.join(sync['unclear'])}")
    if not report["frames"]:
        raise VasaError("nothing usable was found in these videos (see the reasons above); no records to train on")


def _add_split(commands) -> None:
    p = commands.add_parser("split", help="choose validation speakers: a split file every trainer reads",
                            description="Hold out whole speakers (the manifest's speaker labels in the records): "
                                        "every clip of a validation speaker is kept out of training. Chosen per "
                                        "source and language, in proportion, with a seed (docs/training.md).")
    p.add_argument("data", type=Path, help="folder written by `vasa prepare` (or its records/)")
    p.add_argument("--speakers", type=int, default=20, help="validation speakers (default 20)")
    p.add_argument("--seed", type=int, default=0, help="which speakers within each group (default 0)")
    p.add_argument("--include", nargs="+", default=[], metavar="SPEAKER",
                   help="speakers that must be among the validation ones (e.g. one per language to report)")
    p.add_argument("--out", type=Path, required=True, help="the split file to write (JSON)")
    p.set_defaults(run=_run_split)


def _run_split(args) -> None:
    from vasa.data.records import read_meta, record_files, speaker_of
    from vasa.data.splits import make_split, write_split

    metas = [read_meta(f) for f in record_files(args.data)]
    split = make_split(metas, args.speakers, args.seed, tuple(args.include))
    write_split(args.out, split, metas, args.seed)
    held = sum(m["frames"] / m["fps"] for m in metas if split.holds_out(speaker_of(m)))
    total = sum(m["frames"] / m["fps"] for m in metas)
    print(f"wrote {args.out}: {len(split.validation)} validation speakers, {held / 60:.1f} of {total / 60:.1f} min")


def _add_controls(p) -> None:
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


def _controls(args):
    from vasa.pipeline import Controls, parse_emotion

    return Controls(gaze=tuple(args.gaze) if args.gaze else None, distance=args.distance,
                    emotion=parse_emotion(args.emotion), cfg_audio=args.cfg_audio,
                    cfg_audio_pose=args.cfg_audio_pose, cfg_gaze=args.cfg_gaze, steps=args.steps,
                    seed=args.seed, head_scale=args.head_scale, expression_scale=args.expression_scale,
                    smoothing=args.smooth, still=args.still, close_mouth_in_silence=not args.mouth_in_silence,
                    blinks=args.blinks, mouth_readout=args.mouth_readout)


def _add_generate(commands) -> None:
    p = commands.add_parser("generate", help="portrait + speech -> talking video",
                            description="Generate head motion, expressions, blinks and lip motion from speech "
                                        "with the motion model and render them on the portrait.")
    p.add_argument("--image", required=True, type=Path, help="portrait photo")
    p.add_argument("--audio", required=True, type=Path, help="speech (any audio file, or a video's soundtrack)")
    p.add_argument("--out", required=True, type=Path, help="output .mp4 (H.264 + the input audio)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--motion-from", type=Path, metavar="VIDEO",
                   help="take the motion from this talking video instead of generating it (reenactment)")
    p.add_argument("--size", type=_positive_size, default=512, help="output side in pixels (default 512)")
    p.add_argument("--fps", type=_positive_fps, default=FPS, help=f"output frame rate (default {FPS:g})")
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


def _add_eval(commands) -> None:
    p = commands.add_parser("eval", help="measure talking-face videos (any method's) and write a report",
                            description="Lip sync (SyncNet SC/SD with --syncnet, our lip judge), CAPP, pose variation, "
                                        "blinks, jitter, identity, mouth vs a real video, FVD25 (with --i3d) or an "
                                        "offline Fréchet distance; report.md + plots + metrics.json (docs/eval.md).")
    p.add_argument("generated", nargs="?", type=Path, help="folder of generated videos (x.mp4)")
    p.add_argument("--out", required=True, type=Path, help="report folder (report.md, metrics.json, img/)")
    p.add_argument("--real", type=Path, help="folder of the real videos, same names (x.mp4)")
    p.add_argument("--audio", type=Path, help="folder of the speech, same names, for videos without a soundtrack")
    p.add_argument("--portraits", type=Path, help="folder of source portraits, same names (default: the real "
                                                  "video's first frame)")
    p.add_argument("--benchmark", type=Path, metavar="CASES",
                   help="generate each case of this folder (x.mp4 real video, or x.png + x.wav) and evaluate it")
    p.add_argument("--cases", nargs="+", metavar="NAME", help="with --benchmark: only these cases")
    p.add_argument("--model", help="with --benchmark: " + MODEL_HELP)
    p.add_argument("--size", type=_positive_size, default=256, help="generated side / tracker crop (default 256)")
    p.add_argument("--seed", type=int, default=0, help="with --benchmark: generation seed")
    p.add_argument("--no-controls", action="store_true", help="with --benchmark: skip the gaze/distance requests")
    p.add_argument("--work", type=Path, help="with --benchmark: folder for the generated videos and portraits "
                                             "(default: OUT)")
    p.add_argument("--syncnet", type=Path, help="SyncNet weights (syncnet_v2 state dict, .model or .safetensors)")
    p.add_argument("--i3d", type=Path, help="I3D Kinetics-400 weights (state dict) for FVD25")
    p.add_argument("--capp", type=Path, help="CAPP judge (default: vasa/assets/capp.safetensors)")
    p.add_argument("--lipsync", type=Path, help="lip-sync judge (default: vasa/assets/lipsync.safetensors)")
    p.add_argument("--no-identity", action="store_true", help="skip dlib's identity similarity (slow on CPU)")
    p.set_defaults(run=_run_eval)


def _run_eval(args) -> None:
    import torch

    from vasa.evaluation.measure import Judges
    from vasa.evaluation.run import evaluate_folder, run_benchmark

    if (args.generated is None) == (args.benchmark is None):
        raise VasaError("give either a folder of generated videos or --benchmark CASES")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    judges = Judges.load(size=args.size, capp=args.capp, lipsync=args.lipsync, syncnet_path=args.syncnet,
                         i3d_path=args.i3d, identity_metric=not args.no_identity)
    command = "vasa " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["eval"] else "vasa eval"
    if args.benchmark is not None:
        report = run_benchmark(args.benchmark, args.out, args.model, args.size, args.seed, args.cases,
                               controls=not args.no_controls, judges=judges, command=command, work=args.work)
    else:
        report = evaluate_folder(judges, args.generated, args.out, real=args.real, audio=args.audio,
                                 portraits=args.portraits, command=command)
    print(f"wrote {report} and {args.out / 'metrics.json'}")


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value


def _add_serve(commands) -> None:
    p = commands.add_parser("serve", help="web page: speak into the microphone, see the portrait talk live",
                            description="Serve a page where a portrait is picked or uploaded and speech from the "
                                        "microphone or a file drives it live (docs/serve.md).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080)")
    p.add_argument("--model", default="live",
                   help="motion model: live (default: the first frame about 0.25 s after the first audio), "
                        "default (better lip sync, 2.8 s), or a .safetensors path")
    p.add_argument("--size", type=_positive_size, default=256, help="frame side in pixels (default 256)")
    p.add_argument("--steps", type=int, default=5, help="DDIM steps per motion window (default 5, real time on 2 "
                                                        "cores; 10 moves the head more at twice the generator's "
                                                        "cost, docs/serve.md)")
    p.add_argument("--portraits", nargs="+", type=Path, default=[], metavar="IMAGE",
                   help="portraits offered on the page besides the bundled one")
    p.add_argument("--max-sessions", type=int, default=1,
                   help="live streams at once (default 1: two live-model streams do not keep real time on 2 cores)")
    p.add_argument("--step-frames", type=int,
                   help="motion frames per generator window: fewer = lower latency, more compute "
                        "(default: the model's window)")
    p.add_argument("--idle-timeout", type=float, default=20.0, help="close a silent session after this many seconds")
    p.set_defaults(run=_run_serve)


def _run_serve(args) -> None:
    try:
        from aiohttp import web
    except ImportError:
        raise VasaError("vasa serve needs aiohttp, a dependency of vasa: run ./install.sh again") from None
    from vasa.pipeline import TalkingHead
    from vasa.server import ServerConfig, build_app

    portraits = tuple(args.portraits)
    for path in portraits:
        if not path.is_file():
            raise VasaError(f"portrait not found: {path}")
    if not 1 <= args.steps <= 50:
        raise VasaError(f"--steps must be 1..50, got {args.steps}")
    config = ServerConfig(max_sessions=args.max_sessions, step_frames=args.step_frames, steps=args.steps,
                          idle_timeout_s=args.idle_timeout, portraits=portraits)
    head = TalkingHead.from_pretrained(args.model, size=args.size)
    if args.step_frames is not None:
        from vasa.motion import MotionStream

        try:
            MotionStream(head.motion_model, step_frames=args.step_frames)
        except ValueError as error:
            raise VasaError(str(error)) from None
    app = build_app(head, config)
    print(f"vasa serve: open http://{args.host}:{args.port}/ (Ctrl-C stops)")
    try:
        web.run_app(app, host=args.host, port=args.port, print=None)
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise VasaError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None


def _add_bench(commands) -> None:
    p = commands.add_parser("bench", help="offline and streaming speed: fps, first-frame latency, stage shares",
                            description="Time offline generation and live streaming (audio pushed at real-time "
                                        "pace) at each size on CPU, and on CUDA when present. Prints a Markdown "
                                        "table; --out appends it to a file (e.g. docs/benchmarks.md).")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--sizes", nargs="+", type=_positive_size, default=[256, 512])
    p.add_argument("--seconds", type=float, default=12.0, help="speech length per run (default 12)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--step-frames", nargs="+", type=int, default=[0],
                   help="motion window steps to stream with (0 = the model's window; default 0)")
    p.add_argument("--out", type=Path, help="append the results to this Markdown file")
    p.set_defaults(run=_run_bench)


def _run_bench(args) -> None:
    from vasa.bench import run_bench

    run_bench(model=args.model, sizes=args.sizes, seconds=args.seconds, threads=args.threads,
              step_frames=[s or None for s in args.step_frames], out=args.out)


def _motion_trainer():
    from vasa.train import motion as trainer  # the command line is the one module allowed to reach training

    return trainer.TrainConfig, trainer.train_motion


def _face_trainer():
    from vasa.train import face as trainer

    return trainer.FaceTrainConfig, trainer.train_face


def _judge_trainer():
    from vasa.train import judge as trainer

    return trainer.JudgeTrainConfig, trainer.train_judge


class _TrainerParser(argparse.ArgumentParser):
    """A `vasa train` command: its options are the fields of its trainer's config dataclass
    (`vasa.train.options`), added when the command is parsed or its help shown, for importing a trainer
    imports torch, which `vasa --help` and the other commands need not wait for. Options not given stay
    out of the namespace (argument_default SUPPRESS), so they take the dataclass' defaults."""

    def __init__(self, *args, trainer, **kwargs):
        super().__init__(*args, argument_default=argparse.SUPPRESS, **kwargs)
        self._trainer = trainer  # () -> (config dataclass, train function)
        self._has_options = False
        self.set_defaults(run=self._run)

    def _add_options(self) -> None:
        if not self._has_options:
            from vasa.train.options import add_config_options

            add_config_options(self, self._trainer()[0])
            self._has_options = True

    def parse_known_args(self, args=None, namespace=None):
        self._add_options()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_options()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_options()
        return super().format_help()

    def _run(self, args) -> None:
        """Build the trainer's config from the options given (the rest take its defaults) and train."""
        config_class, train = self._trainer()
        options = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}
        if "holdout" in options:
            options["holdout"] = tuple(options["holdout"])
        try:
            train(config_class(**options))  # rank 0 says what it wrote
        except KeyboardInterrupt:
            print(f"vasa: interrupted; run the same command to resume from {args.out / 'state.pt'}", file=sys.stderr)
            raise SystemExit(130) from None


def _add_train(commands) -> None:
    p = commands.add_parser("train", help="train a model on records written by `vasa prepare`")
    models = p.add_subparsers(dest="model", required=True, parser_class=_TrainerParser)
    models.add_parser(
        "motion", trainer=_motion_trainer, help="train the motion generator (MotionDiT)",
        description="Train the motion generator on prepared records. Running it again with the same --out "
                    "resumes. Multi-process: torchrun --nproc_per_node N -m vasa.cli train motion ... "
                    "(docs/training.md).")
    models.add_parser(
        "face", trainer=_face_trainer, help="train the neural face model (--face neural)",
        description="Train the neural face latent space on the face crops stored by `vasa prepare --frames`. "
                    "Running it again with the same --out resumes. Multi-process: torchrun --nproc_per_node N "
                    "-m vasa.cli train face ... (docs/face_neural.md).")
    for kind, what in (("capp", "CAPP, the contrastive audio-pose judge of VASA-1 (3 s windows)"),
                       ("lipsync", "the offline lip-sync judge (mouth measures vs audio, 0.6 s windows)")):
        models.add_parser(kind, trainer=_judge_trainer, help=f"train {what}",
                          description=f"Train {what} on prepared records, contrastively (CLIP loss). "
                                      "Running it again with the same --out resumes (docs/eval.md).",
                          ).set_defaults(kind=kind)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vasa", description="VASA-1 talking faces: one portrait, one voice.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_generate(commands)
    _add_reenact(commands)
    _add_prepare(commands)
    _add_split(commands)
    _add_demo(commands)
    _add_eval(commands)
    _add_serve(commands)
    _add_bench(commands)
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
