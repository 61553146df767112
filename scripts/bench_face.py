"""Speed and memory of the mesh face latent on this CPU: decode fps, encode and tracking time, peak RSS.

    python scripts/bench_face.py [--media ../shared/media] [--decodes 300] [--threads N] [--profile]

Decodes cycle through real motions (a clip's tracked motion retargeted onto the portrait) when
the media folder is there, else through random pose/blink/mouth/gaze edits. Single process;
timings are wall clock (time.perf_counter) after a warm-up. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vasa.face.landmarker import LandmarkDetector
from vasa.face.landmarks import locate_face, track_video
from vasa.face.mesh import MeshFace, edits
from vasa.latents import Motion
from vasa.media import iter_video_frames, read_image
from vasa.reenact import retarget

REPO = Path(__file__).resolve().parents[1]
FPS = 25.0
DRIVER_CLIP = "sadtalker_WDA_AOC_000.mp4"
PORTRAIT = "hallo_6.jpg"
GOAL_FPS = 60.0  # issue goal: decode >= 60 fps at 512x512 on the 2-core CPU
WARMUP = 20


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
    return names[0] if names else "unknown"


def real_motions(face: MeshFace, appearance, source: Motion, clip: Path, max_frames: int) -> Motion:
    """The clip's tracked motion relative to its first frame, moved onto the portrait: (T,)."""
    tracked = track_video(itertools.islice(iter_video_frames(clip, FPS), max_frames), face.size)
    driver = [face.motion_from_landmarks(p) for p, found in zip(tracked.landmarks, tracked.found) if found]
    return Motion.stack([retarget(source, m, driver[0]) for m in driver])


def random_motions(face: MeshFace, appearance, source: Motion, count: int, seed: int = 0) -> Motion:
    """Random edits of the portrait's own motion (pose, blink, mouth, gaze): (count,)."""
    rng = np.random.default_rng(seed)
    motions = []
    for _ in range(count):
        m = edits.turn(source, *rng.uniform([-20, -12, -8], [20, 12, 8]))
        m = edits.open_mouth(face, appearance, m, rng.uniform(0.0, 0.2))
        m = edits.blink(face, appearance, m, rng.uniform(0.0, 1.0))
        motions.append(edits.look(face, appearance, m, *rng.uniform([-30, -20], [30, 25])))
    return Motion.stack(motions)


def time_decodes(face: MeshFace, appearance, motions: Motion, count: int, batch: int, rounds: int) -> dict:
    """`rounds` x `count` single decodes (ms per call), then the batch path in chunks of `batch`."""
    for i in range(WARMUP):
        face.decode(appearance, motions[i % len(motions)])
    times = np.zeros((rounds, count))
    for r, i in itertools.product(range(rounds), range(count)):
        motion = motions[i % len(motions)]
        start = time.perf_counter()
        face.decode(appearance, motion)
        times[r, i] = time.perf_counter() - start
    ms = times * 1000  # (rounds, count)
    single_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    chunks = max(1, count // batch)
    start = time.perf_counter()
    for c in range(chunks):
        frames = face.decode(appearance, motions[np.arange(c * batch, (c + 1) * batch) % len(motions)])
    batch_ms = (time.perf_counter() - start) * 1000 / (chunks * batch)
    assert frames.shape == (batch, face.size, face.size, 3)
    best = float(ms.mean(axis=1).min())  # the round least disturbed by other processes
    return {"mean_ms": float(ms.mean()), "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "best_round_ms": best, "fps": float(1000 / np.median(ms)), "best_fps": 1000 / best,
            "batch_ms": batch_ms, "batch_fps": 1000 / batch_ms, "decodes": count, "rounds": rounds,
            "batch": batch, "batch_decodes": chunks * batch, "single_peak_mib": single_peak_mib}


def time_encodes(face: MeshFace, images: dict) -> dict:
    """`face.encode` as users call it (a fresh detector per call) and with one reused detector."""
    cold, warm = [], []
    with LandmarkDetector() as detector:
        for image in images.values():
            rgb = read_image(image)
            start = time.perf_counter()
            face.encode(rgb)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            crop, _ = locate_face(rgb, face.size, detector)
            cropped = crop.apply(rgb)
            face.appearance_from_landmarks(cropped, detector.landmarks(cropped), crop)
            warm.append(time.perf_counter() - start)
    return {"images": len(images), "encode_ms": 1000 * float(np.mean(cold)),
            "encode_reused_detector_ms": 1000 * float(np.mean(warm))}


def time_tracking(face: MeshFace, clip: Path, max_frames: int) -> dict:
    frames = list(itertools.islice(iter_video_frames(clip, FPS), max_frames))  # decoded before timing
    start = time.perf_counter()
    tracked = track_video(frames, face.size)
    track_s = time.perf_counter() - start
    start = time.perf_counter()
    for points in tracked.landmarks:
        face.motion_from_landmarks(points)
    motion_s = time.perf_counter() - start
    return {"clip": clip.name, "frames": len(frames), "track_ms_per_frame": 1000 * track_s / len(frames),
            "motion_from_landmarks_ms": 1000 * motion_s / len(frames)}


def profile_decode(face: MeshFace, appearance, motions: Motion, count: int = 100) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(count):
        face.decode(appearance, motions[i % len(motions)])
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(12)
    return stream.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--media", type=Path, default=REPO / ".." / "shared" / "media")
    parser.add_argument("--decodes", type=int, default=300, help="timed decodes per size (>= 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --decodes single decodes")
    parser.add_argument("--batch", type=int, default=50, help="frames per `decode` call on the batch path")
    parser.add_argument("--max-frames", type=int, default=250, help="driver / tracking frames")
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: leave as is)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of 100 decodes at 512")
    args = parser.parse_args(argv)
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    media = args.media if (args.media / "clips").is_dir() else None
    clip = media / "clips" / DRIVER_CLIP if media else None
    portraits = sorted((media / "portraits").iterdir()) if media else []
    portrait = media / "portraits" / PORTRAIT if media else None
    if portrait is None:
        from skimage.data import astronaut

        portrait = astronaut()
    print(f"cpu: {cpu_name()}, nproc {os.cpu_count()}, python {platform.python_version()}, numpy {np.__version__}, "
          f"opencv {cv2.__version__}, cv2.getNumThreads() = {cv2.getNumThreads()}, "
          f"OMP/OPENBLAS_NUM_THREADS = {os.environ.get('OMP_NUM_THREADS')}/{os.environ.get('OPENBLAS_NUM_THREADS')}")
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    MeshFace(size=512).encode(portrait)  # the process's first encode loads mediapipe's models
    first_encode_ms = 1000 * (time.perf_counter() - start)
    rows = []
    for size in (512, 256):
        face = MeshFace(size=size)
        appearance, source = face.encode(portrait)
        if clip is not None:
            motions = real_motions(face, appearance, source, clip, args.max_frames)
            kind = f"{DRIVER_CLIP} motion ({len(motions)} frames)"
        else:
            motions, kind = random_motions(face, appearance, source, 64), "random edits (64)"
        result = time_decodes(face, appearance, motions, args.decodes, args.batch, args.rounds)
        rows.append((size, result))
        if args.profile and size == 512:
            print(profile_decode(face, appearance, motions))
    face = MeshFace(size=512)
    encode = time_encodes(face, {p.name: p for p in portraits} if portraits else {"astronaut": portrait})
    peak_before_tracking_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    tracking = time_tracking(face, clip, args.max_frames) if clip is not None else None
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import torch  # not used by the mesh backend; imported after the RSS reading, only to report

    print(f"torch {torch.__version__}: get_num_threads() = {torch.get_num_threads()} (unused by this path)")
    print(f"load average at start / end: {load_start:.2f} / {os.getloadavg()[0]:.2f} (1 min; other processes skew timings)")
    print(f"decode motions: {kind}; {args.rounds} x {args.decodes} timed decodes after {WARMUP} warm-up, "
          "single process; fps = 1000 / median ms\n")
    print_table(rows, first_encode_ms, encode, tracking, peak_before_tracking_mib, peak_mib)
    return 0


def print_table(rows, first_encode_ms: float, encode: dict, tracking: dict | None, peak_before_tracking_mib: float,
                peak_mib: float) -> None:
    print("| measure | value |\n|---|---|")
    for size, r in rows:
        goal = f" (goal >= {GOAL_FPS:.0f} fps: {'met' if r['fps'] >= GOAL_FPS else 'NOT met'})" if size == 512 else ""
        print(f"| decode {size}x{size}, one at a time ({r['rounds']} x {r['decodes']}) | {r['median_ms']:.2f} ms median "
              f"-> {r['fps']:.1f} fps{goal}; mean {r['mean_ms']:.2f}, p95 {r['p95_ms']:.2f}, "
              f"best round mean {r['best_round_ms']:.2f} ms ({r['best_fps']:.1f} fps) |")
        print(f"| decode {size}x{size}, batches of {r['batch']} ({r['batch_decodes']} frames) | "
              f"{r['batch_ms']:.2f} ms/frame -> {r['batch_fps']:.1f} fps |")
    print(f"| first encode in the process (loads mediapipe's models) | {first_encode_ms:.0f} ms |")
    print(f"| encode portrait (`MeshFace.encode`, mean of {encode['images']}) | {encode['encode_ms']:.0f} ms |")
    print(f"| encode portrait, detector reused | {encode['encode_reused_detector_ms']:.0f} ms |")
    if tracking:
        print(f"| track video frame (`track_video`, {tracking['clip']}, {tracking['frames']} frames) | "
              f"{tracking['track_ms_per_frame']:.1f} ms/frame |")
        print(f"| landmarks -> Motion (`motion_from_landmarks`) | {tracking['motion_from_landmarks_ms']:.2f} ms/frame |")
    print(f"| peak RSS after single decodes at 512 (portrait encoded, motions ready) | "
          f"{rows[0][1]['single_peak_mib']:.0f} MiB |")
    print(f"| peak RSS after batch decodes and encodes | {peak_before_tracking_mib:.0f} MiB |")
    if tracking:
        print(f"| peak RSS, whole run (tracking timing holds {tracking['frames']} decoded frames) | "
              f"{peak_mib:.0f} MiB |")


if __name__ == "__main__":
    sys.exit(main())
