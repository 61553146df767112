"""The networks of the neural face model (MegaPortraits Fig. 2, VASA-1 Sec. 3.1); composed in model.py.

    AppearanceEncoder  image (B, 3, S, S) -> source volume (B, C, D, V, V)
    VectorEncoder      image -> a vector: z_id (identity encoder) or [z_pose, z_dyn] (motion encoder)
    WarpGenerator      [z_id, z_dyn] (B, Z) -> non-rigid offset field (B, 3, Dw, Hw, Hw)
                       (3D convolutions on [z_id, z_dyn] + a linear map of z_dyn onto learned offset fields)
    CanonicalNet       3D residual blocks on the canonical volume
    Decoder            volume (B, C, D, V, V) -> orthographic projection (C * D channels) -> image (B, 3, S, S)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vasa.face.neural.config import NeuralFaceConfig

MAX_WIDTH_FACTOR = 8  # widths double per halving up to this multiple of the first width


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, SiLU, 3x3 conv twice) in 2D or 3D."""

    def __init__(self, channels_in: int, channels_out: int, dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.norm1 = nn.GroupNorm(_groups(channels_in), channels_in)
        self.conv1 = conv(channels_in, channels_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(channels_out), channels_out)
        self.conv2 = conv(channels_out, channels_out, 3, padding=1)
        self.skip = conv(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def _down_stack(width: int, halvings: int) -> tuple[nn.Sequential, int]:
    """3 -> width stem, then `halvings` (ResBlock, 2x average pool) stages. Returns (stack, channels out)."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
    channels = width
    for k in range(halvings):
        wider = width * min(2 ** (k + 1), MAX_WIDTH_FACTOR)
        layers += [ResBlock(channels, wider), nn.AvgPool2d(2)]
        channels = wider
    return nn.Sequential(*layers), channels


class AppearanceEncoder(nn.Module):
    """E_app: image (B, 3, S, S) -> the source's 3D feature volume (B, C, D, V, V)."""

    def __init__(self, config: NeuralFaceConfig):
        super().__init__()
        self.config = config
        self.down, channels = _down_stack(config.encoder_channels, config.downsamplings)
        self.lift = nn.Conv2d(channels, config.volume_channels * config.volume_depth, 1)
        self.blocks = nn.Sequential(ResBlock(config.volume_channels, config.volume_channels, dims=3),
                                    ResBlock(config.volume_channels, config.volume_channels, dims=3))

    def forward(self, image: Tensor) -> Tensor:
        c = self.config
        features = self.lift(F.silu(self.down(image)))  # (B, C * D, V, V)
        volume = features.view(-1, c.volume_channels, c.volume_depth, c.volume_size, c.volume_size)
        return self.blocks(volume)  # (B, C, D, V, V)


class VectorEncoder(nn.Module):
    """Image (B, 3, S, S) -> (B, out_dim): convolutions down to 4 x 4, mean pool, linear head.

    `zero_head` starts the head at zero (the motion encoder then starts at the identity pose and
    zero dynamics, so the first warps are identities)."""

    def __init__(self, config: NeuralFaceConfig, out_dim: int, zero_head: bool = False):
        super().__init__()
        halvings = (config.size // 4).bit_length() - 1
        self.down, channels = _down_stack(config.encoder_channels, halvings)
        self.head = nn.Linear(channels, out_dim)
        if zero_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, image: Tensor) -> Tensor:
        features = F.silu(self.down(image)).mean(dim=(2, 3))  # (B, channels)
        return self.head(features)


DYNAMICS_BASIS_INIT_STD = 0.1  # measured on the tiny preset (docs/face_neural.md, "Why the mouth did not follow z_dyn")
DYNAMICS_BASIS_MAX_SIZE = 16  # the basis fields' height and width at most (upsampled to warp_size): caps its size


class WarpGenerator(nn.Module):
    """[z_id, z_dyn] (B, Z) -> offsets (B, 3, Dw, Hw, Hw) in volume coordinates, |offset| < max_offset.

    A linear layer makes a (warp_channels, Dw, 4, 4) seed that 3D blocks upsample (height and width
    x2 per stage) to (Dw, Hw, Hw). The output convolution starts at zero. To that, before the bound,
    `dynamics_basis` adds z_dyn's own linear combination of learned offset fields (one field per z_dyn
    component, like blendshapes): without it the generator did not learn a local, z_dyn-dependent
    offset (a mouth opening) even when z_dyn was given. It starts small and random, not zero: zero
    there and in the motion encoder's zero-initialised dynamics head would be a saddle where neither
    gets a gradient. A fresh model still starts rigid, since its z_dyn is zero. The basis fields are at
    most DYNAMICS_BASIS_MAX_SIZE cells high and wide (trilinearly upsampled to the field's size), so the
    linear map stays small in the large presets."""

    def __init__(self, config: NeuralFaceConfig):
        super().__init__()
        self.config = config
        width, depth = config.warp_channels, config.warp_depth
        self.seed = nn.Linear(config.identity_dim + config.dynamics_dim, width * depth * 16)
        stages = (config.warp_size // 4).bit_length() - 1
        self.blocks = nn.ModuleList(ResBlock(width, width, dims=3) for _ in range(stages + 1))
        self.norm = nn.GroupNorm(_groups(width), width)
        self.out = nn.Conv3d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.basis_size = min(config.warp_size, DYNAMICS_BASIS_MAX_SIZE)
        self.dynamics_basis = nn.Linear(config.dynamics_dim, 3 * depth * self.basis_size ** 2, bias=False)
        nn.init.normal_(self.dynamics_basis.weight, std=DYNAMICS_BASIS_INIT_STD)

    def forward(self, identity: Tensor, dynamics: Tensor) -> Tensor:
        c = self.config
        x = self.seed(torch.cat([identity, dynamics], dim=-1)).view(-1, c.warp_channels, c.warp_depth, 4, 4)
        x = self.blocks[0](x)
        for block in self.blocks[1:]:
            x = block(F.interpolate(x, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False))
        b = self.basis_size
        basis = self.dynamics_basis(dynamics).view(-1, 3, c.warp_depth, b, b)  # (B, 3, Dw, Hb, Hb)
        if b != c.warp_size:
            basis = F.interpolate(basis, size=(c.warp_depth, c.warp_size, c.warp_size), mode="trilinear",
                                  align_corners=False)
        return c.max_offset * torch.tanh(self.out(F.silu(self.norm(x))) + basis)  # (B, 3, Dw, Hw, Hw)


class CanonicalNet(nn.Module):
    """G_3D: residual 3D convolutions on the canonical volume V_app (B, C, D, V, V)."""

    def __init__(self, config: NeuralFaceConfig):
        super().__init__()
        self.blocks = nn.Sequential(*[ResBlock(config.volume_channels, config.volume_channels, dims=3)
                                      for _ in range(config.canonical_blocks)])

    def forward(self, volume: Tensor) -> Tensor:
        return self.blocks(volume)


class Decoder(nn.Module):
    """G_2D: driving volume (B, C, D, V, V) -> orthographic projection (depth folded into channels,
    (B, C * D, V, V)) -> residual 2D blocks, x2 nearest upsampling per stage -> image (B, 3, S, S) in [-1, 1]."""

    def __init__(self, config: NeuralFaceConfig):
        super().__init__()
        stages = config.downsamplings
        widths = [config.decoder_channels * min(2 ** (stages - k), MAX_WIDTH_FACTOR) for k in range(stages + 1)]
        self.project = nn.Conv2d(config.volume_channels * config.volume_depth, widths[0], 1)
        self.blocks = nn.ModuleList(ResBlock(widths[k], widths[k + 1]) for k in range(stages))
        self.final = ResBlock(widths[-1], widths[-1])
        self.norm = nn.GroupNorm(_groups(widths[-1]), widths[-1])
        self.out = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, volume: Tensor) -> Tensor:
        B, C, D, H, W = volume.shape
        x = self.project(volume.reshape(B, C * D, H, W))  # (B, width, V, V)
        for block in self.blocks:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.final(x)
        return torch.tanh(self.out(F.silu(self.norm(x))))  # (B, 3, S, S)
