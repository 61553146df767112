"""The neural face model: shapes, identity warps, known rigid warps, gradient reach, overfitting, the
disentanglement of pose and dynamics, checkpoints and the losses' known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vasa.errors import VasaError
from vasa.face.neural import NeuralFaceModel, load_face_model, save_face_model, warps
from vasa.face.neural import losses, toy
from vasa.face.neural.model import POSE_UNITS
from vasa.face.neural.toy import TINY, cartoon_face, fit, fit_swap_toy, swap_renders, to_tensor


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


@pytest.mark.slow
def test_overfitting_two_frames():
    frames = np.stack([cartoon_face(TINY.size, (0.42, 0.5), 0.03), cartoon_face(TINY.size, (0.58, 0.5), 0.14)])
    poses = warps.identity_pose(2)
    poses[:, 3] = torch.tensor([0.42, 0.58])
    torch.manual_seed(0)
    history = fit(NeuralFaceModel(TINY), frames, poses, 40, [(0, 0), (1, 1), (0, 1), (1, 0)])
    assert np.mean(history[-5:]) < 0.4 * history[0]


@pytest.fixture(scope="module")
def fitted():
    return swap_renders(*fit_swap_toy(0))


@pytest.mark.slow
def test_swapping_pose_moves_the_head_and_not_the_mouth(fitted):
    """Frame 0: head left, mouth closed; frame 3: head right, mouth open. Frame 0 with frame 3's pose has
    its head where frame 3's is and keeps its closed mouth. Measured on the model's own renders."""
    assert not toy.pose_swap_failures(fitted), (toy.pose_swap_failures(fitted), fitted)


@pytest.mark.slow
def test_swapping_dynamics_moves_the_mouth_and_not_the_head(fitted):
    """Frame 0 with frame 3's z_dyn opens its mouth like frame 3 and keeps its head where it was."""
    assert not toy.dynamics_swap_failures(fitted), (toy.dynamics_swap_failures(fitted), fitted)


def test_the_swap_checks_read_known_renders():
    """The swap toy's verdicts on hand-made (head x, mouth darkness) readings: a clean swap passes both,
    a pose that drags the mouth open fails the pose check, a z_dyn that moves the head fails the other."""
    clean = {"0": (0.4, 10.0), "3": (0.6, 60.0), "pose": (0.6, 12.0), "dyn": (0.41, 58.0)}
    assert toy.pose_swap_failures(clean) == [] and toy.dynamics_swap_failures(clean) == []
    assert toy.pose_swap_failures({**clean, "pose": (0.6, 50.0)}) == ["the mouth opened with the pose"]
    assert toy.dynamics_swap_failures({**clean, "dyn": (0.55, 58.0)}) == ["the head moved with z_dyn"]
    unchanged = {k: (0.4, 10.0) for k in clean}
    assert len(toy.pose_swap_failures(unchanged)) >= 2
    x, mouth = toy.head_x_and_mouth(toy.cartoon_face(64, (0.6, 0.5), 0.16))
    assert abs(x - 0.6) < 0.05 and mouth > toy.head_x_and_mouth(toy.cartoon_face(64, (0.6, 0.5), 0.02))[1] + 15


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
