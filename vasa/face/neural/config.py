"""Sizes of the neural face model: one frozen dataclass and named presets.

The appearance volume V_app has `volume_channels` x `volume_depth` x `volume_size` x `volume_size`
cells (MegaPortraits: 96 x 16 x 64 x 64 at 512 px, the `base` preset). The warp fields are coarser
(`warp_depth` x `warp_size`^2) and are sampled trilinearly where the volume needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vasa.errors import VasaError


@dataclass(frozen=True)
class NeuralFaceConfig:
    size: int = 256  # image side in pixels (input crops and decoded frames)
    encoder_channels: int = 64  # first 2D encoder width; doubles per halving, capped at 8x
    volume_channels: int = 16  # C of V_app
    volume_depth: int = 16  # D of V_app
    volume_size: int = 64  # H = W of V_app
    identity_dim: int = 128  # z_id
    dynamics_dim: int = 64  # z_dyn
    warp_channels: int = 32  # width of the warp generators
    warp_depth: int = 8  # warp field cells along depth
    warp_size: int = 32  # warp field cells along height and width
    canonical_blocks: int = 2  # 3D residual blocks on the canonical volume
    decoder_channels: int = 64  # 2D decoder width at full resolution (x2 per halving, capped at 8x)
    max_offset: float = 0.25  # largest non-rigid offset, in volume coordinates ([-1, 1] across)

    def __post_init__(self):
        if self.size % self.volume_size or not _power_of_two(self.size // self.volume_size):
            raise VasaError(f"size {self.size} must be volume_size {self.volume_size} times a power of two")
        if self.warp_size < 4 or not _power_of_two(self.warp_size // 4) or self.warp_size % 4:
            raise VasaError(f"warp_size must be 4 times a power of two, got {self.warp_size}")
        if self.size // 4 < 4:
            raise VasaError(f"size must be at least 16 pixels, got {self.size}")

    @property
    def downsamplings(self) -> int:
        """Halvings from the image to the volume's height and width."""
        return int(math.log2(self.size // self.volume_size))


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


PRESETS: dict[str, NeuralFaceConfig] = {
    # tests: 64 px, a 4 x 4 x 16 x 16 volume, ~0.3 M parameters
    "tiny": NeuralFaceConfig(size=64, encoder_channels=8, volume_channels=4, volume_depth=4, volume_size=16,
                             identity_dim=16, dynamics_dim=16, warp_channels=8, warp_depth=4, warp_size=8,
                             canonical_blocks=1, decoder_channels=8),
    # CPU experiments: 128 px
    "small": NeuralFaceConfig(size=128, encoder_channels=8, volume_channels=8, volume_depth=8, volume_size=32,
                              identity_dim=64, dynamics_dim=32, warp_channels=16, warp_depth=4, warp_size=16,
                              canonical_blocks=1, decoder_channels=8),
    # one GPU: 256 px
    "default": NeuralFaceConfig(),
    # MegaPortraits-sized volume at 512 px
    "base": NeuralFaceConfig(size=512, encoder_channels=64, volume_channels=96, volume_depth=16, volume_size=64,
                             identity_dim=512, dynamics_dim=128, warp_channels=64, warp_depth=16, warp_size=64,
                             canonical_blocks=6, decoder_channels=32),
}
