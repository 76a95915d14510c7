"""Local-appearance network: a U-Net with a CBAM block at every encoder and decoder level."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cephspine.models.blocks import CBAM, ConvBNReLU


class _Level(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(ConvBNReLU(in_ch, out_ch), ConvBNReLU(out_ch, out_ch), CBAM(out_ch))


class AppearanceUNet(nn.Module):
    """U-Net producing one heatmap per landmark.

    Args:
        in_channels: image channels (1 for radiographs).
        out_channels: number of landmarks.
        base: filters at the first level, doubled at each level down.
        depth: number of down-sampling steps; inputs must be divisible by ``2**depth``.

    Shapes:
        ``(B, in_channels, H, W) → (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, base: int = 16, depth: int = 4) -> None:
        super().__init__()
        chans = [base * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.encoders = nn.ModuleList()
        prev = in_channels
        for c in chans:
            self.encoders.append(_Level(prev, c))
            prev = c
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c in reversed(chans[:-1]):
            self.ups.append(nn.Conv2d(prev, c, 1))
            self.decoders.append(_Level(2 * c, c))
            prev = c
        self.head = nn.Conv2d(prev, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < self.depth:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, dec in zip(self.ups, self.decoders):
            skip = skips.pop()
            x = up(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
            x = dec(torch.cat([x, skip], dim=1))
        return self.head(x)
