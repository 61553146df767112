"""The neural face model: shapes, identity warps, known rigid warps, gradient reach, overfitting, the
disentanglement of pose and dynamics, checkpoints and the losses' known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vasa.errors import VasaError
from vasa.face.neural import PRESETS, NeuralFaceModel, load_face_model, save_face_model, warps
from vasa.face.neural import losses
from vasa.face.neural.model import POSE_UNITS

TINY = PRESETS["tiny"]


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
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope="module")
def tiny() -> NeuralFaceModel:
    torch.manual_seed(0)
    return NeuralFaceModel(TINY)


# --- shapes and identities ---------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3])
def test_shapes(tiny, batch):
    image = torch.rand(batch, 3, TINY.size, TINY.size) * 2 - 1
    pose, dynamics = tiny.encode_motion(image)
    assert pose.shape == (batch, 6) and dynamics.shape == (batch, TINY.dynamics_dim)
    volume, identity = tiny.encode_appearance(image, pose, dynamics)
    assert volume.shape == (batch, TINY.volume_channels, TINY.volume_depth, TINY.volume_size, TINY.volume_size)
    assert identity.shape == (batch, TINY.identity_dim)
    out = tiny.decode(volume, identity, pose, dynamics)
    assert out.shape == image.shape and out.abs().max() <= 1
    with pytest.raises(VasaError, match="takes"):
        tiny.encode_motion(torch.zeros(1, 3, 32, 32))


def test_identity_warp_is_identity():
    torch.manual_seed(0)
    volume = torch.randn(2, 3, 5, 7, 9)
    pose = warps.identity_pose(2)
    field = torch.zeros(2, 3, 2, 4, 4)
    assert torch.allclose(warps.source_to_canonical(volume, pose, field), volume, atol=1e-5)
    assert torch.allclose(warps.canonical_to_driving(volume, pose, field), volume, atol=1e-5)


def test_a_fresh_model_starts_at_the_identity_pose_and_rigid_warps(tiny):
    image = torch.rand(2, 3, TINY.size, TINY.size) * 2 - 1
    pose, dynamics = tiny.encode_motion(image)
    assert torch.allclose(pose, warps.identity_pose(2)) and torch.all(dynamics == 0)
    assert torch.all(tiny.warp_to_driving(torch.randn(2, TINY.identity_dim), dynamics) == 0)


def test_posed_and_canonical_are_inverse_and_a_shift_moves_content():
    torch.manual_seed(0)
    pose = warps.identity_pose(4) + torch.randn(4, 6) * torch.tensor([15, 15, 15, 0.05, 0.05, 0.02])
    points = torch.rand(4, 10, 3) * 2 - 1
    assert torch.allclose(warps.to_canonical(warps.to_posed(points, pose), pose), points, atol=1e-5)
    # a blob at the canonical centre shows up 0.25 crop units (= 0.5 volume units) to the right
    volume = torch.zeros(1, 1, 9, 33, 33)
    volume[0, 0, 4, 16, 16] = 1
    shifted = warps.identity_pose(1)
    shifted[0, 3] += 0.25
    moved = warps.canonical_to_driving(volume, shifted, torch.zeros(1, 3, 2, 4, 4))
    z, y, x = np.unravel_index(int(moved.argmax()), moved.shape[2:])
    assert (z, y, x) == (4, 16, 24)
    # a 90 degree yaw maps +x to -z (the geometry module's convention)
    yawed = warps.identity_pose(1)
    yawed[0, 0] = 90
    assert torch.allclose(warps.to_posed(torch.tensor([[[0.5, 0.0, 0.0]]]), yawed), torch.tensor([[[0.0, 0.0, -0.5]]]),
                          atol=1e-6)


# --- training behaviour --------------------------------------------------------------------------------------
def test_gradients_reach_every_parameter_through_both_warps():
    """Zero-initialised heads (motion encoder, warp outputs) pass gradients on from the second step:
    after three steps every parameter has had one."""
    torch.manual_seed(0)
    model = NeuralFaceModel(TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    a = to_tensor([cartoon_face(TINY.size, (0.45, 0.5), 0.04), cartoon_face(TINY.size, (0.55, 0.48), 0.12)])
    reached = {name: False for name, _ in model.named_parameters()}
    for _ in range(3):
        optimizer.zero_grad()
        loss = losses.reconstruction_loss(model(a, a.flip(0)), a.flip(0))
        loss.backward()
        for name, p in model.named_parameters():
            reached[name] |= bool(p.grad is not None and p.grad.abs().sum() > 0)
        optimizer.step()
    assert all(reached.values()), [n for n, r in reached.items() if not r]


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


@pytest.mark.slow
def test_overfitting_two_frames():
    frames = np.stack([cartoon_face(TINY.size, (0.42, 0.5), 0.03), cartoon_face(TINY.size, (0.58, 0.5), 0.14)])
    poses = warps.identity_pose(2)
    poses[:, 3] = torch.tensor([0.42, 0.58])
    torch.manual_seed(0)
    history = fit(NeuralFaceModel(TINY), frames, poses, 40, [(0, 0), (1, 1), (0, 1), (1, 0)])
    assert np.mean(history[-5:]) < 0.4 * history[0]


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


FIT_STEPS = 180
SWAP_CENTRES, SWAP_OPENINGS = (0.4, 0.6), (0.02, 0.16)  # head x, mouth height (crop units)


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


@pytest.fixture(scope="module")
def fitted():
    return swap_renders(*fit_swap_toy(0))


@pytest.mark.slow
def test_swapping_pose_moves_the_head_and_not_the_mouth(fitted):
    """Frame 0: head left, mouth closed; frame 3: head right, mouth open. Frame 0 with frame 3's pose has
    its head where frame 3's is and keeps its closed mouth. Measured on the model's own renders."""
    x, mouth = ({k: v[n] for k, v in fitted.items()} for n in (0, 1))
    assert x["3"] - x["0"] > 0.1 and mouth["3"] - mouth["0"] > 15  # the renders show both differences
    assert abs(x["pose"] - x["3"]) < 0.25 * (x["3"] - x["0"])  # the head went to frame 3's place
    assert mouth["pose"] - mouth["0"] < 0.25 * (mouth["3"] - mouth["0"])  # the mouth did not open


@pytest.mark.slow
def test_swapping_dynamics_moves_the_mouth_and_not_the_head(fitted):
    """Frame 0 with frame 3's z_dyn opens its mouth like frame 3 and keeps its head where it was."""
    x, mouth = ({k: v[n] for k, v in fitted.items()} for n in (0, 1))
    assert x["3"] - x["0"] > 0.1 and mouth["3"] - mouth["0"] > 15
    assert mouth["3"] - mouth["dyn"] < 0.25 * (mouth["3"] - mouth["0"])  # the mouth opened as far
    assert abs(x["dyn"] - x["0"]) < 0.25 * (x["3"] - x["0"])  # the head stayed


# --- checkpoints and losses --------------------------------------------------------------------------------
def test_save_load_round_trip_and_strict_keys(tmp_path, tiny):
    path = tmp_path / "face.safetensors"
    save_face_model(path, tiny, {"step": 7})
    loaded = load_face_model(path)
    assert loaded.config == tiny.config
    image = torch.rand(1, 3, TINY.size, TINY.size) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(image, image.flip(-1)), tiny.eval()(image, image.flip(-1)))
    from safetensors.torch import load_file, save_file
    from vasa.face.neural.model import CONFIG_KEY, read_face_metadata

    tensors = load_file(str(path))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata={CONFIG_KEY: read_face_metadata(path)[CONFIG_KEY]})
    with pytest.raises(VasaError, match="missing"):
        load_face_model(tmp_path / "broken.safetensors")
    with pytest.raises(VasaError, match="no neural face checkpoint"):
        load_face_model(tmp_path / "absent.safetensors")


def test_losses_known_answers(tiny):
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert losses.reconstruction_loss(a, a) == 0 and losses.reconstruction_loss(a, b) > 0
    assert losses.transfer_consistency_loss(a, a) == 0
    describe = lambda x: x.flatten(1)  # noqa: E731
    assert losses.identity_loss(describe, a, a, size=None) < 1e-6
    assert losses.identity_loss(describe, a, -a, size=None) == pytest.approx(2.0)
    units = torch.tensor(POSE_UNITS)
    pose = warps.identity_pose(2)
    assert losses.pose_supervision_loss(pose, pose, units) == 0
    cycle = losses.motion_cycle_loss(tiny.encode_motion, a, *tiny.encode_motion(a), tiny.pose_units)
    assert cycle < 1e-6
    # the z_dyn read-out is scored in units of the geometry dynamics' spread
    probe = losses.DynamicsProbe(TINY.dynamics_dim, 2, mean=torch.tensor([1.0, -1.0]), spread=torch.tensor([2.0, 0.5]))
    geometry = torch.tensor([[3.0, -1.5], [1.0, 0.0]])  # normalised: (1, -1), (0, 2)
    readout = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    assert losses.dynamics_supervision_loss(readout, geometry, probe) == 0
    assert losses.dynamics_supervision_loss(readout + 0.5, geometry, probe) == pytest.approx(0.5)
    assert probe(torch.zeros(3, TINY.dynamics_dim)).shape == (3, 2)
