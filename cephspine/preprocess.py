"""Intensity normalisation, resampling to a physical spacing, and the coordinate maps.

All resampling uses the ``align_corners=False`` convention: a pixel coordinate ``x`` in an
image of width ``W`` resized to ``W'`` maps to ``(x + 0.5) * W' / W - 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F


def normalize_intensity(pixels: npt.NDArray[np.floating], sample: int = 4) -> npt.NDArray[np.float32]:
    """Map grey values to [0, 1] with the 0.5th and 99.5th percentiles (robust to bit depth).

    Args:
        pixels: ``(H, W)`` array of any numeric range.
        sample: stride of the sub-sample used to find the percentiles (speed).
    """
    sub = np.asarray(pixels[::sample, ::sample], dtype=np.float32)
    lo, hi = np.percentile(sub, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(sub.min()), float(sub.max())
    scale = 1.0 / (hi - lo) if hi > lo else 1.0
    out = (np.asarray(pixels, dtype=np.float32) - np.float32(lo)) * np.float32(scale)
    return np.clip(out, 0.0, 1.0, out=out)


@dataclass(frozen=True)
class Resampled:
    """An image resampled by per-axis factors, with the coordinate maps to and from it.

    ``factor_xy`` is ``(new_width / old_width, new_height / old_height)``.
    """

    image: torch.Tensor  # (1, 1, H', W') padded to a multiple
    factor_xy: npt.NDArray[np.float64]
    size_hw: tuple[int, int]  # unpadded size

    def to_resampled(self, xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Original-pixel ``(x, y)`` → resampled-pixel ``(x, y)``."""
        return (np.asarray(xy, dtype=np.float64) + 0.5) * self.factor_xy - 0.5

    def to_original(self, xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Resampled-pixel ``(x, y)`` → original-pixel ``(x, y)``."""
        return (np.asarray(xy, dtype=np.float64) + 0.5) / self.factor_xy - 0.5


def resample(
    pixels01: npt.NDArray[np.float32],
    spacing_rc_mm: tuple[float, float],
    target_mm: float,
    multiple: int = 1,
) -> Resampled:
    """Resample a [0, 1] image to ``target_mm`` per pixel (anti-aliased), padded with 0
    at the bottom and right to a multiple of ``multiple``.

    Args:
        pixels01: ``(H, W)`` normalised image.
        spacing_rc_mm: its ``(row_mm, col_mm)`` spacing.
        target_mm: output pixel size in mm, both axes.
        multiple: pad height and width up to a multiple of this.
    """
    h, w = pixels01.shape
    nh = max(1, int(round(h * spacing_rc_mm[0] / target_mm)))
    nw = max(1, int(round(w * spacing_rc_mm[1] / target_mm)))
    t = torch.from_numpy(np.ascontiguousarray(pixels01, dtype=np.float32))[None, None]
    if (nh, nw) != (h, w):
        t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    ph, pw = (-nh) % multiple, (-nw) % multiple
    if ph or pw:
        t = F.pad(t, (0, pw, 0, ph))
    return Resampled(t.contiguous(), np.array([nw / w, nh / h], dtype=np.float64), (nh, nw))


def pixel_affine_to_theta(m: torch.Tensor, src_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """Convert pixel-space affines (output pixel → source pixel) to ``affine_grid`` thetas.

    Args:
        m: ``(B, 2, 3)`` matrices with ``[x_src, y_src]^T = m @ [x_out, y_out, 1]^T``.
        src_hw, out_hw: source and output sizes, for ``align_corners=False``.
    """
    sh, sw = src_hw
    oh, ow = out_hw
    dtype = m.dtype
    # normalised → pixel for the output, pixel → normalised for the source
    n_out_inv = torch.tensor(
        [[ow / 2.0, 0.0, ow / 2.0 - 0.5], [0.0, oh / 2.0, oh / 2.0 - 0.5], [0.0, 0.0, 1.0]], dtype=dtype
    )
    n_src = torch.tensor(
        [[2.0 / sw, 0.0, 1.0 / sw - 1.0], [0.0, 2.0 / sh, 1.0 / sh - 1.0], [0.0, 0.0, 1.0]], dtype=dtype
    )
    m3 = torch.cat([m, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=dtype).expand(m.shape[0], 1, 3)], dim=1)
    return (n_src @ m3 @ n_out_inv)[:, :2, :]


def rotation_scale(
    angle_rad: npt.NDArray[np.float64], scale: npt.NDArray[np.float64] | float = 1.0
) -> npt.NDArray[np.float64]:
    """``(K, 2, 2)`` matrices ``scale · R(angle)`` (the linear maps of :func:`crop_patches`)."""
    c, s = np.cos(angle_rad) * scale, np.sin(angle_rad) * scale
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)


def crop_patches(
    image: torch.Tensor, centers_xy: npt.NDArray[np.float64], size: int, m_lin: torch.Tensor | None = None
) -> torch.Tensor:
    """Sample square patches of ``size`` pixels centred on points of one image.

    Args:
        image: ``(1, 1, H, W)`` tensor.
        centers_xy: ``(K, 2)`` centres in image pixels.
        size: patch side in pixels (same pixel size as ``image`` unless ``m_lin`` scales).
        m_lin: optional ``(K, 2, 2)`` linear part (rotation/scale) of each patch's map.

    Returns:
        ``(K, 1, size, size)`` patches, zero outside the image. Patch pixel ``(u, v)`` maps
        to image pixel ``c + L @ ((u, v) - (size - 1) / 2)``.
    """
    k = len(centers_xy)
    c = torch.as_tensor(np.asarray(centers_xy), dtype=torch.float32)
    lin = torch.eye(2).expand(k, 2, 2) if m_lin is None else m_lin.float()
    half = (size - 1) / 2.0
    trans = c - (lin @ torch.full((k, 2, 1), half))[..., 0]
    m = torch.cat([lin, trans[..., None]], dim=2)
    theta = pixel_affine_to_theta(m, tuple(image.shape[-2:]), (size, size))  # type: ignore[arg-type]
    theta = theta.to(image.device)
    grid = F.affine_grid(theta, [k, 1, size, size], align_corners=False)
    return F.grid_sample(image.expand(k, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
