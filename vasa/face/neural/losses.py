"""Losses of the neural face model (MegaPortraits Sec. 3.2, VASA-1 Sec. 3.1), as free functions.

Images are (B, 3, S, S) in [-1, 1]. The trainer (`vasa.train.face`) weighs and sums them:

    reconstruction_loss    multi-scale L1 between the reenacted driver and the driver
    perceptual_loss        L1 between a frozen feature network's features (a TorchScript file given by
                           the user, `load_feature_network`); without one, feature_matching_loss on
                           the discriminator's features stands in
    hinge losses           multi-scale patch discriminator (discriminator.py)
    motion_cycle_loss      cross-identity cycle: the motion re-encoded from a cross-identity reenactment
                           equals the driver's motion (MegaPortraits' cycle consistency, in latent space)
    transfer_consistency_loss  VASA-1's pose/dynamics transfer consistency for two frames i, j of one video
    identity_loss          1 - cosine similarity of face descriptors of a cross-identity reenactment and
                           its source (VASA-1's identity-similarity loss)
    pose_supervision_loss  optional weak supervision of z_pose by the geometry backend's pose
    dynamics_supervision_loss  optional weak supervision of z_dyn: a learned linear read-out of z_dyn
                           (`DynamicsProbe`) must give the geometry backend's facial dynamics (not in
                           VASA-1; docs/face_neural.md says why it is there)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vasa.errors import VasaError

DESCRIPTOR_SIZE = 112  # face descriptors take 112 x 112 crops (the ArcFace convention)


def reconstruction_loss(prediction: Tensor, target: Tensor, scales: int = 3) -> Tensor:
    """Mean L1 over an average-pooled pyramid (full, 1/2, 1/4, ... resolution)."""
    total = prediction.new_zeros(())
    for k in range(scales):
        total = total + F.l1_loss(prediction, target)
        if k + 1 < scales:
            prediction, target = F.avg_pool2d(prediction, 2), F.avg_pool2d(target, 2)
    return total / scales


def load_feature_network(path: str | os.PathLike) -> nn.Module:
    """A frozen TorchScript network: RGB (B, 3, H, W) in [-1, 1] -> a tensor or a list/tuple of tensors
    (e.g. VGG-19 activations exported with torch.jit.trace). Used for the perceptual loss and, given
    as an identity descriptor, for the identity loss (then its output is one (B, E) embedding)."""
    path = Path(path)
    if not path.is_file():
        raise VasaError(f"no feature network at {path} (a TorchScript file: torch.jit.save)")
    try:
        network = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        raise VasaError(f"{path} is not a TorchScript file: {error}") from None
    return network.eval().requires_grad_(False)


def _as_list(features) -> list[Tensor]:
    return list(features) if isinstance(features, (list, tuple)) else [features]


def perceptual_loss(network: nn.Module, prediction: Tensor, target: Tensor) -> Tensor:
    """Sum over the network's outputs of the mean L1 between features of prediction and target."""
    with torch.no_grad():
        wanted = _as_list(network(target))
    got = _as_list(network(prediction))
    return sum(F.l1_loss(g, w) for g, w in zip(got, wanted))


def feature_matching_loss(fake: list[tuple[list[Tensor], Tensor]], real: list[tuple[list[Tensor], Tensor]]) -> Tensor:
    """L1 between the discriminator's features of generated and real images (real ones detached)."""
    terms = [F.l1_loss(f, r.detach()) for (fake_features, _), (real_features, _) in zip(fake, real)
             for f, r in zip(fake_features, real_features)]
    return sum(terms) / len(terms)


def generator_hinge_loss(fake: list[tuple[list[Tensor], Tensor]]) -> Tensor:
    return sum(-score.mean() for _, score in fake) / len(fake)


def discriminator_hinge_loss(real: list[tuple[list[Tensor], Tensor]], fake: list[tuple[list[Tensor], Tensor]]) -> Tensor:
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for (_, r), (_, f) in zip(real, fake)]
    return sum(terms) / len(terms)


def motion_cycle_loss(encode_motion: Callable[[Tensor], tuple[Tensor, Tensor]], reenacted: Tensor,
                      pose: Tensor, dynamics: Tensor, pose_units: Tensor) -> Tensor:
    """Re-encode a cross-identity reenactment: its pose and dynamics must be the driver's (targets detached).
    Pose error is measured in `pose_units` (typical spreads), so every component counts alike."""
    pose_again, dynamics_again = encode_motion(reenacted)
    return (F.l1_loss(pose_again / pose_units, pose.detach() / pose_units)
            + F.l1_loss(dynamics_again, dynamics.detach()))


def transfer_consistency_loss(frame_j_with_pose_i: Tensor, frame_i_with_dynamics_j: Tensor) -> Tensor:
    """VASA-1: for frames i, j of one video, I_hat_{j, z_i^pose} (frame j's appearance, identity and
    dynamics with i's pose) and I_hat_{i, z_j^dyn} (frame i's with j's dynamics) show the same pose and
    dynamics of the same person: they must be the same image."""
    return F.l1_loss(frame_j_with_pose_i, frame_i_with_dynamics_j)


def identity_loss(descriptor: Callable[[Tensor], Tensor], generated: Tensor, reference: Tensor,
                  size: int | None = DESCRIPTOR_SIZE) -> Tensor:
    """1 - cosine similarity of face descriptors (B, E) of generated images and their identity references
    (reference descriptors detached). Images are resized to `size` first (None: as they are)."""
    def describe(images: Tensor) -> Tensor:
        if size is not None and images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return descriptor(images)

    with torch.no_grad():
        wanted = describe(reference)
    return (1 - F.cosine_similarity(describe(generated), wanted, dim=-1)).mean()


def pose_supervision_loss(pose: Tensor, geometry_pose: Tensor, pose_units: Tensor) -> Tensor:
    """L1 between z_pose and the geometry backend's pose (B, 6), in typical spreads (`pose_units`)."""
    return F.l1_loss(pose / pose_units, geometry_pose / pose_units)


class DynamicsProbe(nn.Module):
    """A linear read-out of z_dyn (B, K) -> the geometry backend's dynamics (B, M) in units of their
    spread over the training frames (`mean`, `spread`: (M,)). It belongs to the trainer, not to the
    model: z_dyn only has to carry what the geometry sees (mouth, eyes), linearly, in any directions
    it likes, and may carry more. Started random, not zero, so z_dyn gets a gradient from the first step."""

    def __init__(self, dynamics_dim: int, target_dim: int, mean: Tensor | None = None, spread: Tensor | None = None):
        super().__init__()
        self.linear = nn.Linear(dynamics_dim, target_dim)
        self.register_buffer("mean", torch.zeros(target_dim) if mean is None else mean.float().clone())
        self.register_buffer("spread", torch.ones(target_dim) if spread is None else spread.float().clone())

    def forward(self, dynamics: Tensor) -> Tensor:
        return self.linear(dynamics)  # (B, M), normalised units


def dynamics_supervision_loss(readout: Tensor, geometry_dynamics: Tensor, probe: DynamicsProbe) -> Tensor:
    """L1 between `probe`'s read-out of z_dyn (B, M) and the geometry backend's dynamics (B, M), in
    units of their spread."""
    return F.l1_loss(readout, (geometry_dynamics - probe.mean) / probe.spread)
