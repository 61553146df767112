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
    p.set_defaults(run=_run_reenact)


def _run_reenact(args) -> None:
    from vasa.reenact import reenact

    frames = reenact(args.image, args.video, args.out, only=args.only, size=args.size,
                     audio=args.audio, fps=args.fps, reference=args.reference,
                     paste_back=args.paste_back)
    print(f"wrote {args.out} ({frames} frames at {args.fps:g} fps)")


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="run the main job on the bundled portrait and driving clip")
    p.add_argument("--out", type=Path, default=Path("vasa_demo.mp4"), help="output .mp4 (default vasa_demo.mp4)")
    p.add_argument("--size", type=_positive_size, default=512)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> None:
    from vasa.demo import run_demo

    run_demo(args.out, size=args.size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vasa", description="VASA-1 talking faces: one portrait, one voice.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_reenact(commands)
    _add_demo(commands)
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
