"""Decode speed of the neural face model: frames per second of `NeuralFaceModel.decode` (warp + 3D->2D
decoder), the per-frame work of generation, with randomly initialised weights of a preset.

    python scripts/bench_face_neural.py [--preset base] [--batch 1 8] [--threads 2] [--iterations 5]

On CPU: fp32. On CUDA (when available): fp32 and fp16 (half precision weights and inputs), with
synchronisation around the timed loop. The VASA-1 goal is >= 100 fps at 512 x 512 in half precision on
one H100 (paper: 45 fps at 512 on an RTX 4090 for the whole pipeline).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from vasa.face.neural import PRESETS, NeuralFaceModel
from vasa.face.neural.warps import identity_pose


@torch.no_grad()
def decode_fps(model: NeuralFaceModel, batch: int, iterations: int, device: torch.device, dtype: torch.dtype) -> float:
    c = model.config
    volume = torch.randn(batch, c.volume_channels, c.volume_depth, c.volume_size, c.volume_size, device=device, dtype=dtype)
    identity = torch.randn(batch, c.identity_dim, device=device, dtype=dtype)
    pose = identity_pose(batch, device, dtype)
    pose[:, 0] = 10.0
    dynamics = torch.randn(batch, c.dynamics_dim, device=device, dtype=dtype)
    model.decode(volume, identity, pose, dynamics)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(iterations):
        model.decode(volume, identity, pose, dynamics)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * iterations / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = NeuralFaceModel(PRESETS[args.preset]).eval()
    size = model.config.size
    parameters = sum(p.numel() for p in model.decoder.parameters()) + sum(
        p.numel() for p in model.warp_to_driving.parameters())
    print(f"preset {args.preset}: {size}x{size}, decode path {parameters / 1e6:.1f} M parameters, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| device | dtype | batch | decode fps |\n|---|---|---|---|")
    targets = [(torch.device("cpu"), torch.float32)]
    if torch.cuda.is_available():
        targets = [(torch.device("cuda"), torch.float32), (torch.device("cuda"), torch.float16)]
    for device, dtype in targets:
        model.to(device=device, dtype=dtype)
        for batch in args.batch:
            fps = decode_fps(model, batch, args.iterations, device, dtype)
            name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
            print(f"| {name} | {str(dtype).removeprefix('torch.')} | {batch} | {fps:.2f} |")


if __name__ == "__main__":
    main()
