"""Gaussian heatmap targets and sub-pixel decoding.

Coordinates are ``(x, y)`` in the heatmap's pixel grid, origin at the centre of the
top-left pixel. Decoding is arg-max followed by a 3-point parabola fit along x and y.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch


def gaussian_targets(xy: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Render Gaussian heatmaps scaled to [0, 1] (peak 1 at the landmark).

    Args:
        xy: ``(B, N, 2)`` landmark positions ``(x, y)`` in heatmap pixels.
        height, width: heatmap size.
        sigma: standard deviation in heatmap pixels.

    Returns:
        ``(B, N, height, width)`` float32 tensor.
    """
    ys = torch.arange(height, dtype=torch.float32, device=xy.device).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=torch.float32, device=xy.device).view(1, 1, 1, width)
    dx2 = (xs - xy[..., 0, None, None]) ** 2
    dy2 = (ys - xy[..., 1, None, None]) ** 2
    return torch.exp(-(dx2 + dy2) / (2.0 * sigma * sigma))


def decode(heatmaps: torch.Tensor) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Arg-max plus parabola sub-pixel refinement.

    Args:
        heatmaps: ``(B, N, H, W)`` tensor.

    Returns:
        ``xy`` ``(B, N, 2)`` sub-pixel ``(x, y)`` positions and ``peak`` ``(B, N)`` the
        heatmap value at the arg-max.
    """
    hm = heatmaps.detach().float().cpu().numpy().astype(np.float64)
    b, n, h, w = hm.shape
    flat = hm.reshape(b, n, -1)
    idx = flat.argmax(axis=-1)
    peak = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    iy, ix = np.divmod(idx, w)

    def offset(
        m: npt.NDArray[np.float64], c: npt.NDArray[np.float64], p: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        denom = m - 2.0 * c + p
        with np.errstate(divide="ignore", invalid="ignore"):
            off = np.where((denom < 0) & np.isfinite(denom), 0.5 * (m - p) / denom, 0.0)
        return np.clip(off, -0.5, 0.5)

    bi, ni = np.meshgrid(np.arange(b), np.arange(n), indexing="ij")
    xl, xr = np.clip(ix - 1, 0, w - 1), np.clip(ix + 1, 0, w - 1)
    yu, yd = np.clip(iy - 1, 0, h - 1), np.clip(iy + 1, 0, h - 1)
    dx = offset(hm[bi, ni, iy, xl], peak, hm[bi, ni, iy, xr])
    dy = offset(hm[bi, ni, yu, ix], peak, hm[bi, ni, yd, ix])
    dx = np.where((ix > 0) & (ix < w - 1), dx, 0.0)
    dy = np.where((iy > 0) & (iy < h - 1), dy, 0.0)
    xy = np.stack([ix + dx, iy + dy], axis=-1).astype(np.float64)
    return xy, peak
