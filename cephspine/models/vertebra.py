"""Vertebra-centre network: one class-agnostic centre heatmap plus the offsets from each
centre to its four corners (the appearance-context product on the heatmap channel), and
optionally a spine-level channel that says which vertebra a pixel belongs to."""

from __future__ import annotations

import torch
from torch import nn

from cephspine.models.appearance import AppearanceUNet
from cephspine.models.context import GlobalContext

N_CORNERS = 4


class VertebraCentreNet(nn.Module):
    """CBAM U-Net with ``1 + 2 × 4`` output channels; the global-context net multiplies the
    first (the centre-heatmap logit), the other eight are corner offsets ``(dx, dy)`` of
    TL, TR, BL, BR relative to each pixel, in units of :attr:`offset_unit` grid pixels.

    With ``levels=True`` a tenth channel regresses the spine level of each pixel near the
    spine: the vertebra index counted from the top annotated vertebra (continuous, 0 at its
    centre, one per vertebra, negative above it and past the last one below), centred on the
    middle vertebra and divided by :attr:`level_unit`. The decoder uses it to tell an
    annotated vertebra from its unannotated neighbours (C7 above T1, the sacrum below L5).

    Shapes:
        ``(B, 1, H, W) → (B, 9 + levels, H, W)``.
    """

    offset_unit: float = 8.0
    level_unit: float = 8.0

    def __init__(
        self,
        base: int = 16,
        depth: int = 4,
        context_width: int = 128,
        context_kernel: tuple[int, int] = (5, 3),
        context_stride: int = 8,
        levels: bool = False,
    ) -> None:
        super().__init__()
        self.appearance = AppearanceUNet(1, 1 + 2 * N_CORNERS + int(levels), base, depth)
        self.context = GlobalContext(1, context_width, context_kernel, stride=context_stride)
        # centre logits start near sigmoid⁻¹(0.1): the heatmap is almost everywhere empty
        self.heat_bias = nn.Parameter(torch.tensor(-2.19))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        la = self.appearance(image)
        heat = la[:, :1]
        heat = heat * self.context(heat, image) + self.heat_bias
        return torch.cat([heat, la[:, 1:]], dim=1)
