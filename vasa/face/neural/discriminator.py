"""Multi-scale patch discriminator (pix2pixHD-style) for the neural face model's adversarial loss.

Each scale is a stack of strided 4x4 convolutions that scores overlapping patches; scale k sees the
image average-pooled k times. `forward` returns, per scale, the intermediate feature maps and the
patch scores: the features also serve the feature-matching loss.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    def __init__(self, width: int = 32, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 3
        for k in range(layers):
            wider = width * 2 ** min(k, 3)
            blocks.append(nn.Sequential(nn.Conv2d(channels, wider, 4, stride=2, padding=1), nn.LeakyReLU(0.2)))
            channels = wider
        self.blocks = nn.ModuleList(blocks)
        self.score = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, image: Tensor) -> tuple[list[Tensor], Tensor]:
        features = []
        x = image
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features, self.score(x)  # [(B, c_k, h_k, w_k)], (B, 1, h, w)


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, scales: int = 2, width: int = 32, layers: int = 3):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(width, layers) for _ in range(scales))

    def forward(self, image: Tensor) -> list[tuple[list[Tensor], Tensor]]:
        outputs = []
        for k, scale in enumerate(self.scales):
            outputs.append(scale(image))
            if k + 1 < len(self.scales):
                image = F.avg_pool2d(image, 2)
        return outputs
