"""Global-context network: dilated convolutions on a downscaled copy of the heatmaps and image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cephspine.models.blocks import ConvBNReLU


class GlobalContext(nn.Module):
    """Seven dilated convolutions (six conv-BN-ReLU with ``width`` filters and an output conv).

    The input (local-appearance heatmaps concatenated with the image) is average-pooled by
    ``stride``, passed through the dilated stack, and bilinearly upsampled back.

    Args:
        n_landmarks: heatmap channels in and out.
        width: filters of the hidden layers (128 in the paper).
        kernel: kernel size, ``(3, 3)`` for cephalograms, ``(5, 3)`` for the spine.
        dilations: dilation of each of the seven layers.
        stride: downscaling factor of the context grid.
    """

    def __init__(
        self,
        n_landmarks: int,
        width: int = 128,
        kernel: tuple[int, int] = (3, 3),
        dilations: tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1),
        stride: int = 8,
    ) -> None:
        super().__init__()
        if len(dilations) != 7:
            raise ValueError("the global-context net has exactly 7 layers")
        self.stride = stride
        layers: list[nn.Module] = []
        prev = n_landmarks + 1
        for d in dilations[:-1]:
            layers.append(ConvBNReLU(prev, width, kernel, d))
            prev = width
        d = dilations[-1]
        pad = (d * (kernel[0] - 1) // 2, d * (kernel[1] - 1) // 2)
        layers.append(nn.Conv2d(prev, n_landmarks, kernel, padding=pad, dilation=d))
        self.net = nn.Sequential(*layers)

    def forward(self, heatmaps: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        size = heatmaps.shape[-2:]
        x = torch.cat([heatmaps, image], dim=1)
        x = F.avg_pool2d(x, self.stride)
        x = self.net(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
