"""Time `vasa generate` end to end on this CPU, and each of its stages.

    python scripts/bench_generate.py [--model vasa/assets/motion_default.safetensors] [--size 512] [--seconds 20]

Speech: the shipped demo speech (vasa/assets/demo_speech.wav) tiled to --seconds. End to end is
`TalkingHead.generate` to a temporary mp4 (audio features + voice activity, motion, rendering,
H.264 + AAC encoding, all streamed). Then each stage alone: audio features with voice activity on
the whole waveform; `TalkingHead.motion` (features included: the stage the pipeline runs; "motion
alone" subtracts the features); rendering (motion -> absolute latents -> `MeshFace.decode`) per
frame; H.264 encoding of the rendered frames per frame. Peak memory (max RSS) after the end-to-end
run and at the end. Prints numbers; asserts nothing. Threads: the libraries' defaults unless
--threads is given (the machine's load average is printed: timings on shared cores move with it).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def render(head, x: np.ndarray) -> list[np.ndarray]:
    """`TalkingHead.frames`' rendering at the model's frame rate: relative x (T, 46) -> frames."""
    from vasa.face.mesh.edits import keep_physical
    from vasa.latents import Motion

    appearance, reference = head.source.appearance, head.source.reference
    pose, dynamics = head.space.to_absolute(x, reference)
    return [head.face.decode(appearance, keep_physical(head.face, appearance, Motion(pose[k], dynamics[k])))
            for k in range(len(x))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="motion model (default: the shipped one)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--portrait", type=Path, default=None, help="default: matplotlib's grace_hopper.jpg")
    args = parser.parse_args(argv)

    import torch

    from vasa.audio import SAMPLE_RATE, load_audio
    from vasa.demo import DEMO_SPEECH, demo_portrait
    from vasa.media import write_wav
    from vasa.media import write_video
    from vasa.pipeline import DEFAULT_MOTION_MODEL, MODEL_FPS, Controls, TalkingHead

    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = args.model or DEFAULT_MOTION_MODEL
    if not model_path.is_file():
        raise SystemExit(f"no motion model at {model_path}: pass --model PATH")
    start = time.perf_counter()
    head = TalkingHead.from_pretrained(model_path, size=args.size)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    head.set_source(args.portrait or demo_portrait())
    source_s = time.perf_counter() - start
    speech = load_audio(DEMO_SPEECH)
    samples = int(args.seconds * SAMPLE_RATE)
    waveform = np.tile(speech, -(-samples // len(speech)))[:samples]
    controls = Controls(seed=0)
    config = head.motion_model.config
    print(f"model {model_path.name}: width {config.width}, depth {config.depth}, window {config.window_frames}; "
          f"encoder {type(head.encoder).__name__}; size {args.size}; {args.seconds:g} s of speech; "
          f"DDIM {controls.steps} steps, cfg audio {head.cfg_audio if controls.cfg_audio is None else controls.cfg_audio}")
    print(f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    with tempfile.TemporaryDirectory() as folder:
        wav, out = Path(folder) / "speech.wav", Path(folder) / "out.mp4"
        write_wav(Path(folder) / "warm.wav", waveform[:SAMPLE_RATE], SAMPLE_RATE)
        head.generate(Path(folder) / "warm.wav", out, controls, progress=False)  # first-call set-up
        write_wav(wav, waveform, SAMPLE_RATE)
        start = time.perf_counter()
        frames = head.generate(wav, out, controls, progress=False)
        end_to_end_s = time.perf_counter() - start
        end_to_end_rss = peak_rss_mb()
        video_mb = out.stat().st_size / 2**20

        start = time.perf_counter()
        features = head.encoder.encode(waveform, vad=head.vad)
        features_s = time.perf_counter() - start
        start = time.perf_counter()
        x = np.concatenate(list(head.motion(waveform, controls)))  # (T, 46)
        motion_s = time.perf_counter() - start
        start = time.perf_counter()
        rendered = render(head, x)
        render_s = time.perf_counter() - start
        start = time.perf_counter()
        write_video(out, rendered, MODEL_FPS, (waveform[None], SAMPLE_RATE))
        encode_s = time.perf_counter() - start
    duration = len(waveform) / SAMPLE_RATE
    stages = [
        ("audio features + voice activity", features_s),
        ("motion alone (head.motion - features)", motion_s - features_s),
        ("head.motion (features + motion)", motion_s),
        ("render (decode)", render_s),
        ("H.264 + AAC encode", encode_s),
        ("sum: head.motion + render + encode", motion_s + render_s + encode_s),
        (f"**end to end: generate {args.size}x{args.size}**", end_to_end_s),
    ]
    print(f"\n{frames} frames ({len(features)} feature frames, {len(x)} motion frames) for {duration:.1f} s of audio\n")
    print("| stage | total s | ms/frame | real-time factor (s per s of audio) | x real time |\n|---|---|---|---|---|")
    for name, seconds in stages:
        print(f"| {name} | {seconds:.2f} | {1000 * seconds / frames:.1f} | {seconds / duration:.3f} | "
              f"{duration / seconds:.2f} |")
    print(f"\nreal-time factor (wall / audio) end to end: {end_to_end_s / duration:.2f}")
    print(f"load model + encoders {load_s:.2f} s, set_source {source_s:.2f} s; output {video_mb:.2f} MB")
    print(f"peak RSS: {end_to_end_rss:.0f} MB after the end-to-end run, {peak_rss_mb():.0f} MB at the end "
          f"(the stage timings hold all rendered frames in memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
