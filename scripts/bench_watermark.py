"""The frame watermark against the edits of vasa.provenance.attacks, its false positives, its cost and
its visibility. Prints Markdown tables; asserts nothing.

    python scripts/bench_watermark.py WORK [--videos 20] [--seconds 5] [--size 512]
        [--real ../shared/media/clips ../shared/media/train] [--picture docs/img/watermark.png]

1. Makes `--videos` talking videos with the shipped model (the bundled and shared portraits, each with a
   different stretch of the shared speech, seed k), marks each with its own random id and writes it as
   `vasa generate` does (H.264 CRF 18); PSNR and the marking time per frame are taken on the way.
2. Edits each (CRF 23 and 32, half size, 10 % cropped off each side, 25 -> 30 fps, a 2 s excerpt, and
   the combinations) and reads the watermark back: detection rate, id read rate, lowest and median score.
3. Reads every real video under `--real` as it is and re-encoded (CRF 23, and half size at CRF 32):
   detections (should be none) and the highest score.
WORK keeps the videos between runs (delete it to remake them).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import time
from pathlib import Path

import av
import numpy as np

from vasa.errors import VasaError
from vasa.provenance import attacks, watermark
from vasa.provenance.detect import read_mean_luma

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "media"

EDITS = [
    attacks.Edit(crf=23),
    attacks.Edit(crf=32),
    attacks.Edit(crf=23, scale=0.5),
    attacks.Edit(crf=32, scale=0.5),
    attacks.Edit(crf=23, crop=0.1),
    attacks.Edit(crf=32, crop=0.1),
    attacks.Edit(crf=23, fps=30),
    attacks.Edit(crf=32, fps=30),
    attacks.Edit(crf=23, excerpt_s=(1.5, 2.0)),
    attacks.Edit(crf=32, excerpt_s=(1.5, 2.0)),
    attacks.Edit(crf=23, crop=0.1, scale=0.5),
    attacks.Edit(crf=23, scale=0.5, fps=30, excerpt_s=(1.5, 2.0)),
]


def make_videos(work: Path, count: int, seconds: float, size: int) -> list[tuple[Path, int]]:
    from vasa.audio import SAMPLE_RATE, load_audio
    from vasa.controls import Controls
    from vasa.demo import DEMO_SPEECH, demo_portrait
    from vasa.media import write_video
    from vasa.pipeline import TalkingHead

    portraits = [demo_portrait()] + sorted(Path(p) for p in glob.glob(str(SHARED / "portraits" / "*")))
    speech = [DEMO_SPEECH] + sorted(Path(p) for p in glob.glob(str(SHARED / "audio" / "*.wav")))
    head = TalkingHead.from_pretrained(size=size)
    rng = np.random.default_rng(0)
    made, psnrs, costs = [], [], []
    for k in range(count):
        ident = int(rng.integers(0, 2**32))
        path = work / f"marked_{k:02d}_{ident:08x}.mp4"
        made.append((path, ident))
        if path.exists():
            continue
        waveform = load_audio(speech[k % len(speech)])
        length = int(seconds * SAMPLE_RATE)
        start = (k // len(speech)) * length % max(1, len(waveform) - length)
        clip = waveform[start: start + length]
        source = head.encode_source(portraits[k % len(portraits)])
        frames = list(head.frames(clip, Controls(seed=k), source=source))
        marker = watermark.Watermarker(ident)
        begin = time.perf_counter()
        marked = [marker.mark(frame) for frame in frames]
        costs.append((time.perf_counter() - begin) / len(frames))
        error = np.mean([np.mean((m.astype(np.float64) - f) ** 2) for m, f in zip(marked, frames)])
        psnrs.append(10 * np.log10(255**2 / error))
        write_video(path, marked, 25, (clip[None].astype(np.float32), SAMPLE_RATE))
        print(f"made {path.name}: PSNR {psnrs[-1]:.2f} dB, marking {1000 * costs[-1]:.2f} ms/frame", flush=True)
    if psnrs:
        print(f"\nPSNR over {len(psnrs)} videos: mean {np.mean(psnrs):.2f} dB, lowest {min(psnrs):.2f} dB; marking "
              f"{1000 * np.median(costs):.2f} ms per {size}x{size} frame (median; OpenCV's default threads)\n")
    return made


def picture(out: Path, size: int) -> None:
    """The demo portrait's first generated frame: original, marked, the difference x20 around grey;
    below, a 4x enlargement of a plain stretch of background beside the face, where a pattern would show."""
    import cv2

    from vasa.audio import load_audio
    from vasa.controls import Controls
    from vasa.demo import DEMO_SPEECH, demo_portrait
    from vasa.pipeline import TalkingHead

    head = TalkingHead.from_pretrained(size=size)
    head.set_source(demo_portrait())
    frame = next(iter(head.frames(load_audio(DEMO_SPEECH)[:16000], Controls(seed=0))))
    marked = watermark.Watermarker(0x6E0BA651).mark(frame)
    difference = np.clip(128 + 20 * (marked.astype(np.int16) - frame), 0, 255).astype(np.uint8)
    rows, columns = slice(size // 8, size // 8 + size // 4), slice(size - size // 4, size)
    zoom = [cv2.resize(image[rows, columns], (size, size), interpolation=cv2.INTER_NEAREST)
            for image in (frame, marked, difference)]
    grid = np.concatenate([np.concatenate([frame, marked, difference], 1), np.concatenate(zoom, 1)], 0)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {out}")


def read(path: Path) -> watermark.Reading:
    mean, frames = read_mean_luma(path)
    return watermark.read(mean, frames)


def attack_table(work: Path, videos: list[tuple[Path, int]]) -> None:
    print("| edit | detected | id read | score lowest / median | pilot z lowest |")
    print("|---|---|---|---|---|")
    edited = work / "edited.mp4"
    for edit in EDITS:
        scores, found, ids, pilots = [], 0, 0, []
        for path, ident in videos:
            attacks.apply(edit, path, edited)
            reading = read(edited)
            scores.append(reading.z)
            pilots.append(reading.pilot_z)
            found += reading.found
            ids += reading.ident == ident
        print(f"| {edit.name} | {found}/{len(videos)} | {ids}/{len(videos)} | {min(scores):.1f} / "
              f"{np.median(scores):.1f} | {min(pilots):.1f} |", flush=True)
    edited.unlink(missing_ok=True)


def false_positives(work: Path, folders: list[str]) -> None:
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*")
                   if p.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi", ".webm"))
    edited = work / "real_edited.mp4"
    rows = {"as they are": [], "CRF 23": [], "half size, CRF 32": []}
    for path in paths:
        try:
            rows["as they are"].append(read(path))
            for name, edit in (("CRF 23", attacks.Edit(crf=23, preset="veryfast")),
                               ("half size, CRF 32", attacks.Edit(crf=32, scale=0.5, preset="veryfast"))):
                attacks.apply(edit, path, edited)
                rows[name].append(read(edited))
        except (VasaError, ValueError, av.FFmpegError) as error:  # a broken file in a corpus is reported
            print(f"skipped {path}: {error}")
    edited.unlink(missing_ok=True)
    print(f"\n| real videos ({len(paths)}) | detections | highest score | scores above 4 |")
    print("|---|---|---|---|")
    for name, readings in rows.items():
        scores = np.array([r.z for r in readings])
        print(f"| {name} | {sum(r.found for r in readings)}/{len(readings)} | {scores.max():.2f} | "
              f"{int((scores > 4).sum())} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--real", nargs="*", default=[str(SHARED / "clips"), str(SHARED / "train")])
    parser.add_argument("--skip-attacks", action="store_true")
    parser.add_argument("--picture", type=Path, help="write original / marked / difference x20 of one frame here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threshold z >= "
          f"{watermark.Z_THRESHOLD} (false-positive probability <= {watermark.THRESHOLD_FALSE_POSITIVE_P:.1e})\n")
    videos = make_videos(args.work, args.videos, args.seconds, args.size)
    if args.picture:
        picture(args.picture, args.size)
    if not args.skip_attacks:
        attack_table(args.work, videos)
    if args.real:
        false_positives(args.work, args.real)


if __name__ == "__main__":
    main()
