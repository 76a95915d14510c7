"""Deterministic perturbations of a radiograph and its landmarks, to measure what a new
site (other contrast, resolution, framing, pose, devices in view) would do to a model.

Each perturbation takes grey values ``(H, W)`` in [0, 1], the landmarks ``(N, 2)`` in
pixels and the pixel spacing (mm, square pixels) and returns the perturbed image, the
landmarks in its pixels and its spacing. ``seed`` picks the per-image variant (e.g. the
sign of a rotation), so a perturbed set is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage

Array = npt.NDArray[np.float64]


class Perturbed(NamedTuple):
    image: npt.NDArray[np.float32]
    xy: Array
    spacing_mm: float


def _clip(img: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def contrast(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Gamma 0.6 or 1.6 (alternating with ``seed``). A linear contrast change alone would be
    undone by the detectors' percentile normalisation."""
    g = 0.6 if seed % 2 else 1.6
    return Perturbed(_clip(img**g), xy, mm)


def histogram(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Global histogram equalisation (another scanner's look-up table)."""
    hist, edges = np.histogram(img, bins=256, range=(0.0, 1.0))
    cdf = np.cumsum(hist).astype(np.float64)
    cdf /= cdf[-1]
    return Perturbed(_clip(np.interp(img, edges[1:], cdf)), xy, mm)


def noise(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Gaussian noise of s.d. 0.04 (on the [0, 1] scale)."""
    rng = np.random.default_rng(seed)
    return Perturbed(_clip(img + rng.normal(0.0, 0.04, img.shape)), xy, mm)


def blur(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Gaussian blur of s.d. 0.4 mm."""
    return Perturbed(_clip(ndimage.gaussian_filter(img, 0.4 / mm)), xy, mm)


def low_resolution(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Resampled to 2.5× the pixel size (0.25 mm for ISBI), spacing given accordingly."""
    f = 2.5
    h, w = img.shape
    nh, nw = int(round(h / f)), int(round(w / f))
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    small = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
    fx, fy = nw / w, nh / h
    out = (xy + 0.5) * np.array([fx, fy]) - 0.5
    return Perturbed(_clip(small), out, mm / fx)


def _affine(
    img: npt.NDArray[np.float32], xy: Array, angle_deg: float, scale: float
) -> tuple[npt.NDArray[np.float32], Array]:
    """Rotate by ``angle_deg`` and scale the content by ``scale`` about the image centre."""
    h, w = img.shape
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    a = np.deg2rad(angle_deg)
    fwd = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # source → output (x, y)
    inv = np.linalg.inv(fwd)
    # ndimage works in (row, col): output (r, c) -> source
    inv_rc = inv[::-1, ::-1]
    c_rc = c[::-1]
    offset = c_rc - inv_rc @ c_rc
    out = ndimage.affine_transform(img, inv_rc, offset=offset, order=1, mode="constant", cval=0.0)
    return _clip(out), (xy - c) @ fwd.T + c


def pose(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Rotation by ±7° and content scale 0.88 or 1.12 (head tilt, magnification)."""
    rng = np.random.default_rng(seed)
    ang = 7.0 * rng.choice([-1.0, 1.0])
    s = float(rng.choice([0.88, 1.12]))
    out, q = _affine(img, xy, ang, s)
    return Perturbed(out, q, mm)


def tight_field(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Cropped to the landmarks' bounding box plus 15 mm (a tighter field of view)."""
    m = 15.0 / mm
    h, w = img.shape
    x0, y0 = (np.floor(xy.min(0) - m)).clip(0).astype(int)
    x1, y1 = np.ceil(xy.max(0) + m).astype(int)
    x1, y1 = min(x1, w), min(y1, h)
    return Perturbed(img[y0:y1, x0:x1].copy(), xy - [x0, y0], mm)


def shifted_field(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Field of view moved up or down (alternating) by 25 mm, at most as far as keeps every
    landmark 10 mm inside: the image is cut at one end and as much black is added at the
    other."""
    h, _ = img.shape
    if seed % 2:  # content moves up: cut the top
        k = int(min(25.0 / mm, max(0.0, xy[:, 1].min() - 10.0 / mm)))
        out = np.concatenate([img[k:], np.zeros_like(img[:k])])
        return Perturbed(out, xy - [0, k], mm)
    k = int(min(25.0 / mm, max(0.0, h - 1 - xy[:, 1].max() - 10.0 / mm)))
    out = np.concatenate([np.zeros_like(img[:k]), img[: h - k]])
    return Perturbed(out, xy + [0, k], mm)


def _disc(shape: tuple[int, int], dist: Array, half_width: float) -> Array:
    return np.clip(half_width + 0.5 - dist, 0.0, 1.0)


def devices(img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """An ear rod (a radio-opaque ring of 7 mm radius whose top edge lies 4 mm below
    porion, with its holder) and a nasion ruler (a bar with a tick every 5 mm, 15 mm in
    front of nasion)."""
    porion, nasion = xy[3], xy[1]
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    px = 1.0 / mm
    r = 7.0 * px
    ctr = porion + [0.0, 4.0 * px + r]
    layer = 0.95 * _disc((h, w), np.abs(np.hypot(xx - ctr[0], yy - ctr[1]) - r), 1.0 * px)
    holder = (np.abs(xx - ctr[0]) < 2.5 * px) & (yy < ctr[1] - r) & (yy > ctr[1] - r - 60 * px)
    layer = np.maximum(layer, 0.7 * holder)
    x0 = nasion[0] + 15.0 * px
    y0, y1 = nasion[1] - 30.0 * px, nasion[1] + 40.0 * px
    ruler = (np.abs(xx - x0) < 1.2 * px) & (yy > y0) & (yy < y1)
    ticks = (xx < x0) & (xx > x0 - 3.0 * px) & (yy > y0) & (yy < y1) & (np.mod(yy - y0, 5.0 * px) < 0.6 * px)
    layer = np.maximum(layer, 0.9 * (ruler | ticks))
    return Perturbed(_clip(np.maximum(img, layer)), xy, mm)


PERTURBATIONS: dict[str, Callable[[npt.NDArray[np.float32], Array, float, int], Perturbed]] = {
    "contrast": contrast,
    "histogram": histogram,
    "noise": noise,
    "blur": blur,
    "low_resolution": low_resolution,
    "pose": pose,
    "tight_field": tight_field,
    "shifted_field": shifted_field,
    "devices": devices,
}
"""The perturbed evaluation's settings, by name."""


def perturb(name: str, img: npt.NDArray[np.float32], xy: Array, mm: float, seed: int) -> Perturbed:
    """Apply the perturbation ``name`` (``"none"`` returns the input)."""
    if name == "none":
        return Perturbed(img, np.asarray(xy, dtype=np.float64), mm)
    if name not in PERTURBATIONS:
        from cephspine.errors import InvalidArgumentError

        raise InvalidArgumentError(f"unknown perturbation {name!r}; known: none, {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[name](img, np.asarray(xy, dtype=np.float64), mm, seed)
