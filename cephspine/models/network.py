"""The appearance-context network: local appearance × global context (Reddy et al.)."""

from __future__ import annotations

import torch
from torch import nn

from cephspine.models.appearance import AppearanceUNet
from cephspine.models.context import GlobalContext


class AppearanceContextNet(nn.Module):
    """Point-wise product of a CBAM U-Net (local appearance) and a dilated global-context net.

    Args:
        n_landmarks: heatmap channels.
        base: U-Net base filters.
        depth: U-Net depth.
        context: whether to use the global-context branch (``False`` gives a plain
            local-appearance U-Net, used for the refinement stage).
        context_width, context_kernel, context_stride: see :class:`GlobalContext`.
    """

    def __init__(
        self,
        n_landmarks: int,
        base: int = 16,
        depth: int = 4,
        context: bool = True,
        context_width: int = 128,
        context_kernel: tuple[int, int] = (3, 3),
        context_stride: int = 8,
    ) -> None:
        super().__init__()
        self.appearance = AppearanceUNet(1, n_landmarks, base, depth)
        self.context = (
            GlobalContext(n_landmarks, context_width, context_kernel, stride=context_stride) if context else None
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        la = self.appearance(image)
        if self.context is None:
            return la
        return la * self.context(la, image)
