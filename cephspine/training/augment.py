"""Random geometric and intensity augmentation on torch tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cephspine.preprocess import rotation_scale


@dataclass(frozen=True)
class GeometricAugment:
    """Random affine augmentation of the coarse stage's training images: rotation within
    ±``max_rot_deg``, isotropic scale in ``scale_range``, translation within ±``shift_px``
    coarse pixels per axis. The defaults are the paper's (±2°, 0.9–1.1, ±10 px).

    The scale maps output to source pixels: a value above 1 shrinks the image content
    (zooms out), below 1 enlarges it."""

    max_rot_deg: float = 2.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    shift_px: float = 10.0

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not (0 < lo <= hi) or self.max_rot_deg < 0 or self.shift_px < 0:
            raise ValueError(f"invalid augmentation {self}: need 0 < scale low <= high, rotation and shift >= 0")


def random_linear(
    rng: np.random.Generator, n: int, max_rot_deg: float, scale_range: tuple[float, float]
) -> torch.Tensor:
    """``(n, 2, 2)`` rotation-times-scale matrices mapping output offsets to source offsets."""
    ang = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg, n))
    s = rng.uniform(scale_range[0], scale_range[1], n)
    return torch.tensor(rotation_scale(ang, s), dtype=torch.float32)


def random_intensity(rng: np.random.Generator, x: torch.Tensor) -> torch.Tensor:
    """Gamma 0.7–1.4, contrast 0.85–1.15, brightness ±0.1, Gaussian noise on [0, 1] images
    ``(B, 1, H, W)``; a different draw per image."""
    b = x.shape[0]
    gamma = torch.tensor(np.exp(rng.uniform(math.log(0.7), math.log(1.4), b)), dtype=x.dtype).view(b, 1, 1, 1)
    contrast = torch.tensor(rng.uniform(0.85, 1.15, b), dtype=x.dtype).view(b, 1, 1, 1)
    bright = torch.tensor(rng.uniform(-0.1, 0.1, b), dtype=x.dtype).view(b, 1, 1, 1)
    noise = torch.tensor(rng.uniform(0.0, 0.03, b), dtype=x.dtype).view(b, 1, 1, 1)
    y = x.clamp(0, 1) ** gamma
    y = (y - 0.5) * contrast + 0.5 + bright
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    return y + noise * torch.randn(x.shape, generator=gen, dtype=x.dtype)
