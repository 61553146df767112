"""The 3D warps of the neural face model, as free functions (MegaPortraits Sec. 3.1, VASA-1 Sec. 3.1).

Volume coordinates: grid_sample's, (x, y, z) in [-1, 1] across a volume's (W, H, D) axes, with
x to the right, y down and z away from the camera: the image frame of `vasa.face.geometry`. The
pose is `Motion.pose` in the geometry module's units (yaw, pitch, roll in degrees; tx, ty in crop
units; scale in crop units per canonical unit), so the geometry backend's pose can supervise it.
Canonical volume coordinates span +-CANONICAL_HALF_EXTENT canonical units; the pose maps them to
the posed volume:

    posed = s * R @ canonical + t,   s = 2 * scale * CANONICAL_HALF_EXTENT,  t = (2 tx - 1, 2 ty - 1, 0)

so IDENTITY_POSE (no rotation, centred, scale 1 / (2 * CANONICAL_HALF_EXTENT)) is the identity map.
Warps are backward: an output cell samples its input at the coordinates the warp gives it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Canonical units (outer-eye-corner distance) from the volume's centre to its side: a face with
# the geometry backend's typical scale (~0.3 crop units per canonical unit) fills the crop.
CANONICAL_HALF_EXTENT = 1.5
IDENTITY_POSE = (0.0, 0.0, 0.0, 0.5, 0.5, 1.0 / (2.0 * CANONICAL_HALF_EXTENT))


def identity_pose(batch: int, device=None, dtype=torch.float32) -> Tensor:
    """(B, 6) poses whose rigid warp is the identity."""
    return torch.tensor(IDENTITY_POSE, device=device, dtype=dtype).expand(batch, 6).clone()


def base_grid(depth: int, height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Cell-centre coordinates (D, H, W, 3) as (x, y, z), corners at +-1 (align_corners=True)."""
    z, y, x = torch.meshgrid(torch.linspace(-1, 1, depth, device=device, dtype=dtype),
                             torch.linspace(-1, 1, height, device=device, dtype=dtype),
                             torch.linspace(-1, 1, width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def euler_to_matrix(angles_deg: Tensor) -> Tensor:
    """(B, 3) yaw, pitch, roll in degrees -> (B, 3, 3) R = R_z(roll) R_y(yaw) R_x(pitch) (`geometry`)."""
    yaw, pitch, roll = torch.deg2rad(angles_deg).unbind(-1)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def matrix(rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rx = matrix([(one, zero, zero), (zero, pitch.cos(), -pitch.sin()), (zero, pitch.sin(), pitch.cos())])
    ry = matrix([(yaw.cos(), zero, yaw.sin()), (zero, one, zero), (-yaw.sin(), zero, yaw.cos())])
    rz = matrix([(roll.cos(), -roll.sin(), zero), (roll.sin(), roll.cos(), zero), (zero, zero, one)])
    return rz @ ry @ rx


def rigid_transform(pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 6) pose -> (R (B, 3, 3), s (B,), t (B, 3)) in volume coordinates (module docstring)."""
    rotation = euler_to_matrix(pose[:, :3])
    scale = 2.0 * pose[:, 5] * CANONICAL_HALF_EXTENT
    translation = torch.stack([2 * pose[:, 3] - 1, 2 * pose[:, 4] - 1, torch.zeros_like(pose[:, 3])], dim=-1)
    return rotation, scale, translation


def to_posed(points: Tensor, pose: Tensor) -> Tensor:
    """Canonical volume coordinates (B, ..., 3) -> posed ones: s R p + t."""
    rotation, scale, translation = rigid_transform(pose)
    shape = points.shape
    flat = points.reshape(shape[0], -1, 3)  # (B, N, 3)
    posed = scale[:, None, None] * flat @ rotation.transpose(1, 2) + translation[:, None]
    return posed.reshape(shape)


def to_canonical(points: Tensor, pose: Tensor) -> Tensor:
    """Posed volume coordinates (B, ..., 3) -> canonical ones: R^T (p - t) / s (inverse of `to_posed`)."""
    rotation, scale, translation = rigid_transform(pose)
    shape = points.shape
    flat = points.reshape(shape[0], -1, 3)
    canonical = ((flat - translation[:, None]) @ rotation) / scale[:, None, None]
    return canonical.reshape(shape)


def sample(volume: Tensor, coordinates: Tensor, padding: str = "zeros") -> Tensor:
    """Trilinear samples of volume (B, C, D, H, W) at coordinates (B, D', H', W', 3) -> (B, C, D', H', W')."""
    return F.grid_sample(volume, coordinates.to(volume.dtype), mode="bilinear", padding_mode=padding,
                         align_corners=True)


def offsets_at(field: Tensor, coordinates: Tensor) -> Tensor:
    """Non-rigid offsets (B, 3, Dw, Hw, Ww) read at coordinates (B, D, H, W, 3) -> (B, D, H, W, 3)."""
    return sample(field, coordinates, padding="border").permute(0, 2, 3, 4, 1)


def source_to_canonical(volume: Tensor, pose: Tensor, field: Tensor) -> Tensor:
    """W_s->c: the source's volume (B, C, D, H, W) brought to the canonical frame.

    Canonical cell c reads the source at T_source(c + offset(c)): the non-rigid field removes the
    source's expression (and identity-specific shape), the rigid pose its head pose."""
    B, _, D, H, W = volume.shape
    grid = base_grid(D, H, W, volume.device).expand(B, D, H, W, 3)
    return sample(volume, to_posed(grid + offsets_at(field, grid), pose))


def canonical_to_driving(volume: Tensor, pose: Tensor, field: Tensor) -> Tensor:
    """W_c->d: the canonical volume (B, C, D, H, W) posed and animated for the driving motion.

    Driving cell d reads the canonical volume at c + offset(c), c = T_driving^-1(d)."""
    B, _, D, H, W = volume.shape
    grid = base_grid(D, H, W, volume.device).expand(B, D, H, W, 3)
    canonical = to_canonical(grid, pose)
    return sample(volume, canonical + offsets_at(field, canonical))

