"""Time the motion generator per window on this CPU: presets x samplers, with classifier-free guidance.

    python scripts/bench_motion.py                       # base and default, 50 ancestral and 10 DDIM steps
    python scripts/bench_motion.py --presets default --threads 2 --windows 5

Each window is one MotionStream window (W audio frames in, W motion frames out) with gaze given, so
Eq. 2 runs all three passes (all / no audio / no gaze) stacked as batch 3 in one forward per step.
Each preset runs in its own process so that its peak memory (max RSS) is its own. Untrained weights:
timing does not depend on the values. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from vasa.motion import PRESETS, Guidance, MotionDiT, MotionStream, Sampler
from vasa.latents import FPS

SAMPLERS = {"ancestral-50": Sampler("ancestral", 50), "ddim-10": Sampler("ddim", 10)}


def bench_preset(name: str, windows: int) -> dict:
    config = PRESETS[name]
    torch.manual_seed(0)
    model = MotionDiT(config).eval()
    rows = []
    for label, sampler in SAMPLERS.items():
        sampler = Sampler(sampler.method, sampler.steps, Guidance(audio=0.5, gaze=1.0))
        stream = MotionStream(model, gaze=(0.0, 0.0), distance=1.0, sampler=sampler, seed=0)
        audio = np.random.default_rng(0).standard_normal((config.window_frames, config.audio_dim)).astype(np.float32)
        stream.push(audio)  # warm-up window (the first has no context; later ones do)
        start = time.perf_counter()
        for _ in range(windows):
            stream.push(audio)
        per_window = (time.perf_counter() - start) / windows
        window_s = config.window_frames / FPS
        rows.append(dict(sampler=label, ms_per_window=1000 * per_window, realtime_factor=window_s / per_window))
    params = sum(p.numel() for p in model.parameters())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return dict(preset=name, params_m=params / 1e6, window_frames=config.window_frames,
                context_frames=config.context_frames, cfg_batch=3, threads=torch.get_num_threads(),
                peak_rss_mib=peak_mib, rows=rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["base", "default"], choices=sorted(PRESETS))
    parser.add_argument("--windows", type=int, default=3, help="timed windows per sampler (after one warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process: print JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(bench_preset(args.presets[0], args.windows)))
        return
    print(f"CPU threads: {args.threads}; CFG: 3 passes (all / no audio / no gaze) batched as B=3 per step")
    for name in args.presets:
        cmd = [sys.executable, __file__, "--one", "--presets", name, "--windows", str(args.windows),
               "--threads", str(args.threads)]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(f"\n{name}: {result['params_m']:.1f} M parameters, W={result['window_frames']} "
              f"({result['window_frames'] / FPS:.1f} s), K={result['context_frames']}, "
              f"peak RSS {result['peak_rss_mib']:.0f} MiB")
        for row in result["rows"]:
            print(f"  {row['sampler']:>13}: {row['ms_per_window']:8.1f} ms/window  "
                  f"{row['realtime_factor']:6.2f}x real time")


if __name__ == "__main__":
    main()
