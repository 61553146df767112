"""`vasa` command line. User mistakes end in one line on stderr and exit status 2, never a trace.
`vasa prepare` and `vasa split` are built in vasa.cli_data, the options commands share in vasa.cli_options."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from vasa.cli_data import add_prepare, add_split
from vasa.cli_options import (MODEL_HELP, add_controls, add_face_options, add_provenance_options, chosen_face,
                              controls_from, positive_fps, positive_size, provenance_from)
from vasa.errors import VasaError
from vasa.latents import FPS


def _add_reenact(commands) -> None:
    p = commands.add_parser("reenact", help="animate a portrait with the motion of a talking video",
                            description="Apply the head pose and facial dynamics of a talking video "
                                        "to a portrait, relative to the video's first frame.")
    p.add_argument("--image", required=True, type=Path, help="portrait photo (any size; RGBA, gray, 16-bit ok)")
    p.add_argument("--video", required=True, type=Path, help="driving talking-face video")
    p.add_argument("--out", required=True, type=Path, help="output .mp4 (H.264 + AAC)")
    p.add_argument("--only", choices=["pose", "dynamics"], help="transfer only head pose or only facial dynamics")
    p.add_argument("--size", type=positive_size, default=512, help="output side in pixels (default 512)")
    p.add_argument("--audio", type=Path, help="soundtrack to use instead of the video's own")
    p.add_argument("--fps", type=positive_fps, default=FPS, help=f"output frame rate (default {FPS:g})")
    p.add_argument("--reference", choices=["neutral", "first"], default="neutral",
                   help="expressions move relative to the driver's neutral closed-mouth face (default) "
                        "or to its first frame; head pose is always relative to the first frame")
    p.add_argument("--paste-back", action="store_true",
                   help="put the animated face back into the whole photo instead of writing the square crop")
    add_face_options(p)
    add_provenance_options(p)
    p.set_defaults(run=_run_reenact)


def _run_reenact(args) -> None:
    from vasa.reenact import reenact

    frames = reenact(args.image, args.video, args.out, only=args.only, size=args.size,
                     audio=args.audio, fps=args.fps, reference=args.reference,
                     paste_back=args.paste_back, face=chosen_face(args, args.size),
                     provenance=provenance_from(args))
    print(f"wrote {args.out} ({frames} frames at {args.fps:g} fps)")


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
    p.add_argument("--size", type=positive_size, default=512, help="output side in pixels (default 512)")
    p.add_argument("--fps", type=positive_fps, default=FPS, help=f"output frame rate (default {FPS:g})")
    p.add_argument("--paste-back", action="store_true",
                   help="put the animated face back into the whole photo instead of writing the square crop")
    add_controls(p)
    add_face_options(p)
    add_provenance_options(p)
    p.set_defaults(run=_run_generate)


def _run_generate(args) -> None:
    if args.motion_from is not None:
        from vasa.reenact import reenact

        frames = reenact(args.image, args.motion_from, args.out, size=args.size, audio=args.audio,
                         fps=args.fps, paste_back=args.paste_back, face=chosen_face(args, args.size),
                         provenance=provenance_from(args))
    else:
        from vasa.pipeline import TalkingHead

        controls = controls_from(args)
        head = TalkingHead.from_pretrained(args.model, size=args.size, face=chosen_face(args, args.size))
        head.set_source(args.image)
        frames = head.generate(args.audio, args.out, controls, fps=args.fps, paste_back=args.paste_back,
                               provenance=provenance_from(args))
    print(f"wrote {args.out} ({frames} frames at {args.fps:g} fps)")


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="generate a talking video of the bundled portrait and speech")
    p.add_argument("--out", type=Path, default=Path("vasa_demo.mp4"), help="output .mp4 (default vasa_demo.mp4)")
    p.add_argument("--size", type=positive_size, default=512)
    p.add_argument("--reenact", action="store_true",
                   help="drive the portrait with the bundled talking clip instead of generating the motion")
    add_provenance_options(p)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> None:
    from vasa.demo import run_demo

    run_demo(args.out, size=args.size, reenact=args.reenact, provenance=provenance_from(args))


def _add_detect(commands) -> None:
    p = commands.add_parser("detect", help="does a video carry vasa's marks? (manifest and watermark)",
                            description="For each video: its C2PA manifest (present, valid or tampered, its claims) "
                                        "and vasa's invisible watermark (found or not, id, score, false-positive "
                                        "probability). Exit status: 0 every video carries a vasa mark, 1 at least "
                                        "one carries none, 2 a file could not be read (docs/provenance.md).")
    p.add_argument("videos", nargs="+", type=Path, metavar="VIDEO")
    p.add_argument("--json", action="store_true", help="print one JSON object per video, one per line")
    p.add_argument("--seconds", type=float, default=60.0, help="read at most this much of each video (default 60)")
    p.set_defaults(run=_run_detect)


def _run_detect(args) -> int:
    import json

    from vasa.provenance.detect import describe, detect

    if args.seconds <= 0:
        raise VasaError(f"--seconds must be positive, got {args.seconds}")
    unmarked = failed = 0
    for path in args.videos:
        try:
            found = detect(path, args.seconds)
        except VasaError as error:
            failed += 1
            print(json.dumps({"path": str(path), "error": str(error)}) if args.json else f"{path}: error: {error}",
                  flush=True)
            continue
        unmarked += not found.marked
        print(json.dumps(found.as_dict()) if args.json else describe(found), flush=True)
    return 2 if failed else 1 if unmarked else 0


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
    p.add_argument("--size", type=positive_size, default=256, help="generated side / tracker crop (default 256)")
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
    p.add_argument("--size", type=positive_size, default=256, help="frame side in pixels (default 256)")
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
    p.add_argument("--no-watermark", action="store_true",
                   help="stream frames without vasa's invisible watermark (for research)")
    p.set_defaults(run=_run_serve)


def _run_serve(args) -> None:
    try:
        from aiohttp import web
    except ImportError:
        raise VasaError("vasa serve needs aiohttp, a dependency of vasa: run ./install.sh again") from None
    from vasa.pipeline import TalkingHead
    from vasa.server import ServerConfig, build_app
    from vasa.streaming import one_opencv_thread

    portraits = tuple(args.portraits)
    for path in portraits:
        if not path.is_file():
            raise VasaError(f"portrait not found: {path}")
    if not 1 <= args.steps <= 50:
        raise VasaError(f"--steps must be 1..50, got {args.steps}")
    config = ServerConfig(max_sessions=args.max_sessions, step_frames=args.step_frames, steps=args.steps,
                          idle_timeout_s=args.idle_timeout, portraits=portraits, watermark=not args.no_watermark)
    head = TalkingHead.from_pretrained(args.model, size=args.size)
    if args.step_frames is not None:
        from vasa.motion import MotionStream

        try:
            MotionStream(head.motion_model, step_frames=args.step_frames)
        except ValueError as error:
            raise VasaError(str(error)) from None
    app = build_app(head, config)
    one_opencv_thread()  # the stream's stages run in parallel already (vasa.streaming.one_opencv_thread)
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
    p.add_argument("--sizes", nargs="+", type=positive_size, default=[256, 512])
    p.add_argument("--seconds", type=float, help="speech length per run (default 12; --agent: 60)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--step-frames", nargs="+", type=int, default=[0],
                   help="motion window steps to stream with (0 = the model's window; default 0)")
    p.add_argument("--out", type=Path, help="append the results to this Markdown file")
    p.add_argument("--no-watermark", action="store_true",
                   help="stream without the frame watermark (default: on, as vasa serve streams)")
    p.add_argument("--agent", action="store_true",
                   help="instead: the avatar in a Pipecat pipeline (needs vasa[pipecat]): first frame after TTS "
                        "audio, interruption to closed mouth, frame lag over --seconds (default 60) of "
                        "speech and silence; --model default live, the first of --sizes")
    p.set_defaults(run=_run_bench)


def _run_bench(args) -> None:
    if args.agent:
        from vasa.agent.bench import run_agent_bench

        run_agent_bench(model=args.model, size=args.sizes[0], seconds=args.seconds or 60.0, threads=args.threads,
                        out=args.out)
        return
    from vasa.bench import run_bench

    run_bench(model=args.model, sizes=args.sizes, seconds=args.seconds or 12.0, threads=args.threads,
              step_frames=[s or None for s in args.step_frames], out=args.out, watermark=not args.no_watermark)


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
    for kind, what in (("capp", "CAPP, the audio-pose judge of VASA-1 (3 s windows)"),
                       ("lipsync", "the offline lip-sync judge (mouth measures vs audio, 0.6 s windows)")):
        models.add_parser(kind, trainer=_judge_trainer, help=f"train {what}",
                          description=f"Fit {what} on prepared records: a ridge read-out of the speech "
                                      "(--method readout, seconds) or two transformers trained with CLIP's "
                                      "loss (--method contrastive; running it again with the same --out "
                                      "resumes). docs/eval.md.",
                          ).set_defaults(kind=kind)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vasa", description="VASA-1 talking faces: one portrait, one voice.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_generate(commands)
    _add_reenact(commands)
    add_prepare(commands)
    add_split(commands)
    _add_demo(commands)
    _add_detect(commands)
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
        status = args.run(args)  # None, or the exit status a command chose (vasa detect)
    except VasaError as error:
        print(f"vasa: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vasa: interrupted; no output was written", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
