"""The swap toy: does a `NeuralFaceModel` keep pose and dynamics apart? (tests/test_face_neural.py,
scripts/probe_face_neural_swap.py, docs/face_neural.md)

A `tiny` model is fitted to four drawn cartoon faces, head left/right x mouth closed/open, with the
trainer's losses; then frame 0's appearance is rendered with frame 3's pose (the head should move and the
mouth stay shut) and with frame 3's z_dyn (the mouth should open and the head stay). The renders are read
by where the bright face is and how dark the mouth box is.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from vasa.face.neural import losses, warps
from vasa.face.neural.config import PRESETS
from vasa.face.neural.model import POSE_UNITS, NeuralFaceModel

TINY = PRESETS["tiny"]
FIT_STEPS = 180
SWAP_CENTRES, SWAP_OPENINGS = (0.4, 0.6), (0.02, 0.16)  # head x, mouth height (crop units)


def cartoon_face(size: int, center: tuple[float, float], mouth_open: float) -> np.ndarray:
    """A drawn face (S, S, 3) uint8: skin ellipse centred at `center` (crop units), two eyes, and a
    dark mouth whose height is `mouth_open` (crop units) on a fixed background gradient."""
    ramp = np.linspace(60, 140, size, dtype=np.float32)
    image = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 90.0)], -1)
    image = image.astype(np.uint8)
    cx, cy = center[0] * size, center[1] * size
    cv2.ellipse(image, (round(cx), round(cy)), (round(0.22 * size), round(0.28 * size)), 0, 0, 360,
                (225, 180, 150), -1, cv2.LINE_AA)
    for dx in (-0.09, 0.09):
        cv2.circle(image, (round(cx + dx * size), round(cy - 0.07 * size)), max(1, round(0.03 * size)), (40, 30, 30),
                   -1, cv2.LINE_AA)
    half_height = max(1, round(mouth_open * size / 2))
    cv2.ellipse(image, (round(cx), round(cy + 0.13 * size)), (round(0.08 * size), half_height), 0, 0, 360,
                (90, 10, 20), -1, cv2.LINE_AA)
    return image


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [-1, 1]."""
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def fit(model: NeuralFaceModel, frames: np.ndarray, poses: torch.Tensor, steps: int, pairs: list[tuple[int, int]],
        lr: float = 3e-3, geometry_dynamics: torch.Tensor | None = None) -> list[float]:
    """Train on (source, driver) `pairs` of `frames` with reconstruction, transfer consistency and pose
    supervision, and, given `geometry_dynamics` (N, M), the trainer's z_dyn read-out
    (`losses.DynamicsProbe`) against them; returns the reconstruction loss per step."""
    images = to_tensor(frames)
    src, drv = (torch.tensor(v) for v in zip(*pairs))
    probe = None
    if geometry_dynamics is not None:  # normalised as the trainer does (`FaceFrames.dynamics_spread`)
        probe = losses.DynamicsProbe(model.config.dynamics_dim, geometry_dynamics.shape[1], geometry_dynamics.mean(0),
                                     geometry_dynamics.std(0, unbiased=False).clamp_min(1e-3))
    trained = list(model.parameters()) + ([] if probe is None else list(probe.parameters()))
    optimizer = torch.optim.Adam(trained, lr=lr)
    units = torch.tensor(POSE_UNITS)
    history = []
    for _ in range(steps):
        pose, dynamics = model.encode_motion(images)
        volume, identity = model.encode_appearance(images, pose, dynamics)
        loss = losses.reconstruction_loss(model.decode(volume[src], identity[src], pose[drv], dynamics[drv]), images[drv])
        a = model.decode(volume[drv], identity[drv], pose[src], dynamics[drv])
        b = model.decode(volume[src], identity[src], pose[src], dynamics[drv])
        total = loss + losses.transfer_consistency_loss(a, b) + losses.pose_supervision_loss(pose, poses, units)
        if probe is not None:
            total = total + losses.dynamics_supervision_loss(probe(dynamics), geometry_dynamics, probe)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(loss.item())
    return history


def head_x_and_mouth(image: np.ndarray) -> tuple[float, float]:
    """Where the head is (brightness-weighted x of the bright face, crop units) and how dark the
    mouth is (mean darkness of a box below the head's centre) in a cartoon face or a render of one."""
    gray = image.astype(np.float64).mean(-1)
    size = image.shape[0]
    bright = np.clip(gray - 150, 0, None)
    x = float((bright.sum(0) * np.arange(size)).sum() / bright.sum() / size)
    cx, cy = round(x * size), round(0.63 * size)
    half = max(1, round(0.05 * size))
    box = gray[cy - half:cy + half + 1, cx - half:cx + half + 1]
    return x, float(255 - box.mean())


def fit_swap_toy(seed: int, steps: int = FIT_STEPS, supervised: bool = True,
                 prepare=None) -> tuple[NeuralFaceModel, torch.Tensor]:
    """A tiny model fitted to 4 cartoon frames: head left/right (index bit 1) x mouth closed/open (bit 0).
    Every frame drives every frame but its diagonal opposite, so the mouth has to change without the
    head (and the head without the mouth). z_pose is supervised by the known head place, as the
    trainer does with the geometry backend's pose; `supervised`: z_dyn's read-out by the known mouth
    height, as the trainer does with the geometry backend's facial dynamics (without it, z_dyn did
    not learn the mouth: docs/face_neural.md). `prepare(model)` may change the fresh model first.
    Returns the model (eval mode) and the frames (4, 3, S, S)."""
    frames = np.stack([cartoon_face(TINY.size, (cx, 0.5), m) for cx in SWAP_CENTRES for m in SWAP_OPENINGS])
    poses = warps.identity_pose(4)
    poses[:, 3] = torch.tensor([cx for cx in SWAP_CENTRES for _ in SWAP_OPENINGS])
    mouths = torch.tensor([[m] for _ in SWAP_CENTRES for m in SWAP_OPENINGS])
    pairs = [(i, j) for i in range(4) for j in range(4) if i ^ j != 3]
    torch.manual_seed(seed)
    model = NeuralFaceModel(TINY)
    if prepare is not None:
        prepare(model)
    fit(model, frames, poses, steps, pairs, lr=6e-3, geometry_dynamics=mouths if supervised else None)
    return model.eval(), to_tensor(frames)


def swap_renders(model: NeuralFaceModel, images: torch.Tensor) -> dict[str, tuple[float, float]]:
    """(head x, mouth darkness) of frame 0's appearance rendered with its own motion ("0"), frame 3's
    ("3"), frame 3's pose ("pose") and frame 3's z_dyn ("dyn"); z_pose and z_dyn are the encoder's."""
    with torch.no_grad():
        pose, dynamics = model.encode_motion(images)
        volume, identity = model.encode_appearance(images, pose, dynamics)
        v, i = volume[:1], identity[:1]  # frame 0's appearance: head left, mouth closed
        renders = {"0": model.decode(v, i, pose[:1], dynamics[:1]), "3": model.decode(v, i, pose[3:], dynamics[3:]),
                   "pose": model.decode(v, i, pose[3:], dynamics[:1]), "dyn": model.decode(v, i, pose[:1], dynamics[3:])}
    return {k: head_x_and_mouth(((r[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).numpy()) for k, r in renders.items()}


def _renders_differ(x: dict, mouth: dict) -> list[str]:
    failed = []
    if not x["3"] - x["0"] > 0.1:
        failed.append("the renders of frames 0 and 3 do not show the head moved")
    if not mouth["3"] - mouth["0"] > 15:
        failed.append("the renders of frames 0 and 3 do not show the mouth opened")
    return failed


def pose_swap_failures(measured: dict[str, tuple[float, float]]) -> list[str]:
    """What fails of "frame 0 with frame 3's pose has its head where frame 3's is and keeps its closed
    mouth" in `swap_renders` (empty: it holds)."""
    x, mouth = ({k: v[n] for k, v in measured.items()} for n in (0, 1))
    failed = _renders_differ(x, mouth)
    if not abs(x["pose"] - x["3"]) < 0.25 * (x["3"] - x["0"]):
        failed.append("the head did not go to frame 3's place")
    if not mouth["pose"] - mouth["0"] < 0.25 * (mouth["3"] - mouth["0"]):
        failed.append("the mouth opened with the pose")
    return failed


def dynamics_swap_failures(measured: dict[str, tuple[float, float]]) -> list[str]:
    """What fails of "frame 0 with frame 3's z_dyn opens its mouth like frame 3 and keeps its head where it
    was" in `swap_renders` (empty: it holds)."""
    x, mouth = ({k: v[n] for k, v in measured.items()} for n in (0, 1))
    failed = _renders_differ(x, mouth)
    if not mouth["3"] - mouth["dyn"] < 0.25 * (mouth["3"] - mouth["0"]):
        failed.append("the mouth did not open as far as frame 3's")
    if not abs(x["dyn"] - x["0"]) < 0.25 * (x["3"] - x["0"]):
        failed.append("the head moved with z_dyn")
    return failed
