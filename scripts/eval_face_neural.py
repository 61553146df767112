"""Figures of a trained neural face model on held-out clips: reconstruction PSNR/SSIM, same- and
cross-identity reenactment sheets, training curves.

    python scripts/eval_face_neural.py --model RUN/model.safetensors --data PREPARED \
        --holdout retalking_2 sadtalker_WDA_AOC_000 [--metrics RUN/metrics.jsonl] [--out docs/img]

PSNR/SSIM: every 5th frame of each held-out segment rebuilt from the segment's first frame (source)
with the frame's own motion (the driver), at the model's size, whole crop; beside them the same scores
of the source frame itself, unchanged (the baseline a reenactment model has to beat). Sheets: the first held-out
clip's first frame driven by 6 frames of itself (same identity) and of the second clip (cross identity);
top row drivers, bottom row results. Writes face_neural_{same_identity,cross_identity,curves}.png
(curves: a dotted line where a reconstruction warm-up ends).

What the motion latents carry (`latent_content`): on every 5th frame, each clip's mean taken out, a
ridge map fitted on the training clips' frames from z_dyn to the geometry backend's facial dynamics
(and to its pose), scored by R^2 on the held-out clips' frames and, for comparison, on the training
frames it was fitted on. High dynamics R^2 and low pose R^2 are what disentangled z_dyn
looks like.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from vasa.data.records import record_files
from vasa.face.neural import load_face_model
from vasa.metrics.image import psnr, ssim
from vasa.train.face import FaceFrames, to_images, to_tensor
from vasa.train.common import RECORD_HASH

SHEET_COLUMNS = 6
EVAL_STRIDE = 5


def held_out(data: Path, names: list[str], size: int) -> list[FaceFrames]:
    files = {RECORD_HASH.sub("", f.stem): f for f in record_files(data)}
    return [FaceFrames.load([files[name]], size) for name in names]


@torch.no_grad()
def reconstruction_scores(model, clips: list[FaceFrames]) -> dict:
    scores = {"psnr": [], "ssim": [], "copy_psnr": [], "copy_ssim": []}
    for clip in clips:
        for video, start, length in clip.segments:
            frames = clip.frames[video]
            drivers = frames[start + 1:start + length:EVAL_STRIDE]
            for k in range(0, len(drivers), 8):
                batch = drivers[k:k + 8]
                source = np.repeat(frames[start][None], len(batch), axis=0)
                rebuilt = to_images(model(to_tensor(source, torch.device("cpu")), to_tensor(batch, torch.device("cpu"))))
                scores["psnr"] += [psnr(a, b) for a, b in zip(rebuilt, batch)]
                scores["ssim"] += [ssim(a, b) for a, b in zip(rebuilt, batch)]
                scores["copy_psnr"] += [psnr(source[0], b) for b in batch]  # baseline: the source unchanged
                scores["copy_ssim"] += [ssim(source[0], b) for b in batch]
    return {"frames": len(scores["psnr"]), "psnr_db": float(np.mean(scores["psnr"])),
            "ssim": float(np.mean(scores["ssim"])), "copy_source_psnr_db": float(np.mean(scores["copy_psnr"])),
            "copy_source_ssim": float(np.mean(scores["copy_ssim"]))}


@torch.no_grad()
def sheet(model, source_clip: FaceFrames, driver_clip: FaceFrames) -> np.ndarray:
    """(2 S, 7 S) sheet: drivers on top, the source at the bottom left and the results beside it."""
    video, start, _ = source_clip.segments[0]
    source = source_clip.frames[video][start]
    d_video, d_start, d_length = driver_clip.segments[0]
    picks = d_start + np.linspace(0, d_length - 1, SHEET_COLUMNS).round().astype(int)
    drivers = driver_clip.frames[d_video][picks]
    cpu = torch.device("cpu")
    results = to_images(model(to_tensor(np.repeat(source[None], len(drivers), 0), cpu), to_tensor(drivers, cpu)))
    blank = np.full_like(source, 255)
    top = np.concatenate([blank, *drivers], axis=1)
    bottom = np.concatenate([source, *results], axis=1)
    return np.concatenate([top, bottom], axis=0)


@torch.no_grad()
def motion_latents(model, clips: list[FaceFrames]) -> tuple[np.ndarray, ...]:
    """Every EVAL_STRIDE-th segment frame: z_dyn (N, K), geometry dynamics (N, M), geometry pose (N, 6),
    each minus its segment's mean (motion within a clip; the mesh dynamics also hold the face's shape)."""
    latents, dynamics, poses = [], [], []
    for clip in clips:
        for video, start, length in clip.segments:
            picks = np.arange(start, start + length, EVAL_STRIDE)
            images = [to_tensor(clip.frames[video][picks[k:k + 16]], torch.device("cpu"))
                      for k in range(0, len(picks), 16)]
            z = np.concatenate([model.encode_motion(batch)[1].numpy() for batch in images])
            pairs = ((z, latents), (clip.dynamics[video][picks], dynamics), (clip.poses[video][picks], poses))
            for values, into in pairs:
                into.append(values - values.mean(0))
    return tuple(np.concatenate(v).astype(np.float64) for v in (latents, dynamics, poses))


def ridge_r2(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, alpha: float = 1.0) -> float:
    """R^2 (all target components together, each in units of its training spread) of a ridge map x -> y."""
    mx, sx = x_fit.mean(0), x_fit.std(0) + 1e-8
    my, sy = y_fit.mean(0), y_fit.std(0) + 1e-8
    a, b = (x_fit - mx) / sx, (y_fit - my) / sy
    weights = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ b)
    predicted = ((x_test - mx) / sx) @ weights
    truth = (y_test - my) / sy
    return float(1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum())


def latent_content(model, training: list[FaceFrames], held: list[FaceFrames]) -> dict:
    z_fit, dyn_fit, pose_fit = motion_latents(model, training)
    z_test, dyn_test, pose_test = motion_latents(model, held)
    return {"fit_frames": len(z_fit), "held_out_frames": len(z_test),
            "dynamics_r2": ridge_r2(z_fit, dyn_fit, z_test, dyn_test),
            "pose_r2": ridge_r2(z_fit, pose_fit, z_test, pose_test),
            "training_dynamics_r2": ridge_r2(z_fit, dyn_fit, z_fit, dyn_fit),
            "training_pose_r2": ridge_r2(z_fit, pose_fit, z_fit, pose_fit)}


def curves(metrics: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))

    def plot(ax, name: str, *style, **kwargs) -> None:  # terms absent during a reconstruction warm-up: no points
        points = [(line["step"], line[name]) for line in lines if name in line]
        if points:
            ax.plot(*zip(*points), *style, **kwargs)

    for name in ("reconstruction", "transfer", "feature_matching", "pose", "dynamics", "cycle", "identity"):
        plot(axes[0], name, label=name)
    axes[0].set_yscale("log")
    axes[0].set_title("generator terms (unweighted)")
    plot(axes[1], "discriminator", label="discriminator hinge")
    plot(axes[1], "adversarial", label="generator hinge")
    axes[1].set_title("adversarial")
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:  # a run that never left its warm-up has no adversarial terms
            ax.legend(fontsize=7)
    full = [line["step"] for line in lines if "discriminator" in line]
    if full and full[0] > lines[0]["step"]:  # mark the end of the reconstruction warm-up
        for ax in axes:
            ax.axvline(full[0], color="grey", linestyle=":", linewidth=1)
    val = [line for line in lines if line.get("val_psnr") is not None]
    axes[2].plot([line["step"] for line in val], [line["val_psnr"] for line in val], "o-", label="PSNR (dB)")
    twin = axes[2].twinx()
    twin.plot([line["step"] for line in val], [line["val_ssim"] for line in val], "s--", color="C1", label="SSIM")
    axes[2].set_title("held-out reconstruction (EMA weights)")
    axes[2].set_xlabel("step")
    axes[2].legend(loc="upper left", fontsize=7)
    twin.legend(loc="lower right", fontsize=7)
    for ax in axes[:2]:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--holdout", nargs=2, required=True)
    parser.add_argument("--metrics", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_face_model(args.model)
    clips = held_out(args.data, args.holdout, model.config.size)
    training = [FaceFrames.load([f], model.config.size) for f in record_files(args.data)
                if RECORD_HASH.sub("", f.stem) not in args.holdout]
    print(json.dumps({"held_out_reconstruction": reconstruction_scores(model, clips),
                      "latent_content": latent_content(model, training, clips)}, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, driver in (("same_identity", clips[0]), ("cross_identity", clips[1])):
        path = args.out / f"face_neural_{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(sheet(model, clips[0], driver), cv2.COLOR_RGB2BGR))
        print(f"wrote {path}")
    if args.metrics:
        curves(args.metrics, args.out / "face_neural_curves.png")
        print(f"wrote {args.out / 'face_neural_curves.png'}")


if __name__ == "__main__":
    main()
