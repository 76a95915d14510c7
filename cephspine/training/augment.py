"""Random geometric and intensity augmentation on torch tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cephspine.preprocess import pixel_affine_to_theta, rotation_scale


@dataclass(frozen=True)
class GeometricAugment:
    """Random affine augmentation of the coarse stage's training images: rotation within
    ±``max_rot_deg``, isotropic scale in ``scale_range``, translation within ±``shift_px``
    coarse pixels per axis (vertically within ±``shift_y_px`` when that is set: a *framing*
    augmentation moves the field of view up or down by whole vertebrae). The defaults are
    the paper's (±2°, 0.9–1.1, ±10 px).

    The scale maps output to source pixels: a value above 1 shrinks the image content
    (zooms out, black padding all round), below 1 enlarges it. Landmarks carried outside
    the image by the transform stay in the landmark array; losses that must not see them
    mask them (:func:`cephspine.vertebrae.vertebra_loss`)."""

    max_rot_deg: float = 2.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    shift_px: float = 10.0
    shift_y_px: float | None = None

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        sy = self.shift_px if self.shift_y_px is None else self.shift_y_px
        if not (0 < lo <= hi) or self.max_rot_deg < 0 or self.shift_px < 0 or sy < 0:
            raise ValueError(f"invalid augmentation {self}: need 0 < scale low <= high, rotation and shifts >= 0")

    def random_shift(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        """``(n, 2)`` random shifts ``(dx, dy)`` in coarse pixels (without ``shift_y_px``
        one draw for both axes, as the recipes before it drew them)."""
        if self.shift_y_px is None:
            d = rng.uniform(-self.shift_px, self.shift_px, (n, 2))
        else:
            d = np.stack(
                [rng.uniform(-self.shift_px, self.shift_px, n), rng.uniform(-self.shift_y_px, self.shift_y_px, n)], 1
            )
        return torch.tensor(d, dtype=torch.float32)


def random_linear(
    rng: np.random.Generator, n: int, max_rot_deg: float, scale_range: tuple[float, float]
) -> torch.Tensor:
    """``(n, 2, 2)`` rotation-times-scale matrices mapping output offsets to source offsets."""
    ang = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg, n))
    s = rng.uniform(scale_range[0], scale_range[1], n)
    return torch.tensor(rotation_scale(ang, s), dtype=torch.float32)


def warp_about_centre(
    x: torch.Tensor, xy: np.ndarray, lin: torch.Tensor, shift: torch.Tensor
) -> tuple[torch.Tensor, np.ndarray]:
    """Images ``(B, 1, H, W)`` and their landmarks ``(B, N, 2)`` (pixels) transformed by the
    linear maps ``lin`` ``(B, 2, 2)`` about the image centre and moved by ``shift`` ``(B, 2)``
    pixels (``lin`` maps output offsets to source offsets, as :func:`random_linear`'s);
    zero outside the source image. The arithmetic runs in ``lin``'s dtype."""
    b, _, h, w = x.shape
    ctr = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=lin.dtype)
    trans = ctr - (lin @ ctr) - shift  # source = lin @ out + trans
    m = torch.cat([lin, trans[..., None]], dim=2)
    theta = pixel_affine_to_theta(m, (h, w), (h, w)).to(device=x.device, dtype=x.dtype)
    grid = torch.nn.functional.affine_grid(theta, [b, 1, h, w], align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inv = torch.linalg.inv(lin).numpy()
    return x, np.einsum("bij,bnj->bni", inv, xy - trans.numpy()[:, None, :])


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


@dataclass(frozen=True)
class BroadAugment:
    """Augmentation for films from other times, sites and scanners (device-agnostic torch).

    Geometry (applied to the whole coarse image; refinement patches get their own
    rotation and scale): rotation within ±``max_rot_deg``, log-uniform isotropic scale in
    ``scale_range`` (above 1 zooms out), translation within ±``shift_mm`` per axis.
    Field of view: with probability ``p_fov`` everything outside a random rectangle that
    still holds the landmarks (with ``fov_margin_mm``) is blanked to black, white or grey
    (collimation, a tighter or shifted field of view). Objects: with probability
    ``p_objects`` each, an ear rod (a bright ring below porion with its bar) and a nasion
    ruler (a bright graduated bar in front of the face). Image quality: with probability
    ``p_blur`` a Gaussian blur of s.d. in ``blur_mm``; with ``p_lowres`` a down- and
    up-sampling by a factor in ``lowres_factor``; with ``p_curve`` an S-shaped tone curve
    (histogram change); always gamma, contrast, brightness and Gaussian noise up to
    ``noise_sd``.
    """

    max_rot_deg: float = 10.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    shift_mm: float = 16.0
    p_fov: float = 0.3
    fov_margin_mm: float = 6.0
    p_objects: float = 0.3
    p_blur: float = 0.3
    blur_mm: tuple[float, float] = (0.1, 0.6)
    p_lowres: float = 0.25
    lowres_factor: tuple[float, float] = (1.5, 3.0)
    p_curve: float = 0.3
    gamma: tuple[float, float] = (0.6, 1.7)
    contrast: tuple[float, float] = (0.7, 1.3)
    brightness: float = 0.15
    noise_sd: float = 0.05

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        probs = (self.p_fov, self.p_objects, self.p_blur, self.p_lowres, self.p_curve)
        if not (0 < lo <= hi) or self.max_rot_deg < 0 or self.shift_mm < 0 or not all(0 <= p <= 1 for p in probs):
            raise ValueError(
                f"invalid augmentation {self}: need 0 < scale low <= high, angles/shifts >= 0, p in [0, 1]"
            )


def _uniform(rng: np.random.Generator, lo: float, hi: float, n: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(rng.uniform(lo, hi, n), dtype=torch.float32, device=device)


def broad_intensity(rng: np.random.Generator, x: torch.Tensor, aug: BroadAugment, mm_per_px: float) -> torch.Tensor:
    """Blur, resolution loss, tone curve, gamma, contrast, brightness and noise on [0, 1]
    images ``(B, 1, H, W)`` with ``mm_per_px`` per pixel; a different draw per image."""
    b, dev = x.shape[0], x.device
    y = x.clamp(0, 1)
    blur = np.flatnonzero(rng.random(b) < aug.p_blur)
    if len(blur):
        sig = rng.uniform(aug.blur_mm[0], aug.blur_mm[1], len(blur)) / mm_per_px
        r = max(1, int(math.ceil(3 * sig.max())))
        t = torch.arange(-r, r + 1, dtype=torch.float32, device=dev)
        k = torch.exp(-(t[None] ** 2) / (2 * torch.tensor(sig, dtype=torch.float32, device=dev)[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)  # (n, 2r+1)
        z = y[blur].transpose(0, 1)  # (1, n, H, W): one group per image
        z = torch.nn.functional.conv2d(
            torch.nn.functional.pad(z, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=len(blur)
        )
        z = torch.nn.functional.conv2d(
            torch.nn.functional.pad(z, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=len(blur)
        )
        y = y.clone()
        y[blur] = z.transpose(0, 1)
    for i in np.flatnonzero(rng.random(b) < aug.p_lowres):
        f = rng.uniform(*aug.lowres_factor)
        h, w = y.shape[-2:]
        small = torch.nn.functional.interpolate(
            y[i : i + 1],
            size=(max(2, int(h / f)), max(2, int(w / f))),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        y = y.clone() if not y.requires_grad else y
        y[i : i + 1] = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    curve = torch.tensor(rng.random(b) < aug.p_curve, device=dev).view(b, 1, 1, 1)
    c = _uniform(rng, 0.3, 0.7, b, dev).view(b, 1, 1, 1)
    wd = _uniform(rng, 0.08, 0.25, b, dev).view(b, 1, 1, 1)
    mix = _uniform(rng, 0.3, 1.0, b, dev).view(b, 1, 1, 1)
    lo, hi = torch.sigmoid((0 - c) / wd), torch.sigmoid((1 - c) / wd)
    s = (torch.sigmoid((y - c) / wd) - lo) / (hi - lo)
    y = torch.where(curve, mix * s + (1 - mix) * y, y)
    gamma = torch.exp(_uniform(rng, math.log(aug.gamma[0]), math.log(aug.gamma[1]), b, dev)).view(b, 1, 1, 1)
    y = y.clamp(0, 1) ** gamma
    y = (y - 0.5) * _uniform(rng, *aug.contrast, b, dev).view(b, 1, 1, 1) + 0.5
    y = y + _uniform(rng, -aug.brightness, aug.brightness, b, dev).view(b, 1, 1, 1)
    gen = torch.Generator(device=dev).manual_seed(int(rng.integers(2**31)))
    noise = _uniform(rng, 0.0, aug.noise_sd, b, dev).view(b, 1, 1, 1)
    return y + noise * torch.randn(y.shape, generator=gen, device=dev, dtype=y.dtype)


def _segment_distance(px: torch.Tensor, py: torch.Tensor, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Distance of the pixels ``(px, py)`` to the segment ``a``–``b``."""
    d = b - a
    t = ((px - a[0]) * d[0] + (py - a[1]) * d[1]) / max(float(d @ d), 1e-9)
    t = t.clamp(0, 1)
    return torch.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1]))


def draw_objects(
    rng: np.random.Generator, img: torch.Tensor, porion: np.ndarray, nasion: np.ndarray, mm_per_px: float, p: float
) -> torch.Tensor:
    """Draw, each with probability ``p``, an ear rod (a ring a few mm below ``porion`` with
    a bar above it) and a nasion ruler (a graduated bar in front of ``nasion``) into a
    ``(1, H, W)`` or ``(1, 1, H, W)`` [0, 1] image (positions in its pixels, face to the
    right); radio-opaque, so the brighter of image and object is kept."""
    rod, ruler = rng.random() < p, rng.random() < p
    if not (rod or ruler):
        return img
    h, w = img.shape[-2:]
    py, px = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=img.device),
        torch.arange(w, dtype=torch.float32, device=img.device),
        indexing="ij",
    )
    mm = 1.0 / mm_per_px
    layer = torch.zeros((h, w), device=img.device)

    def soft(dist: torch.Tensor, half_width: float) -> torch.Tensor:
        return torch.clamp(half_width + 0.5 - dist, 0.0, 1.0)

    if rod:
        ctr = porion + np.array([rng.normal(0, 3), rng.uniform(4, 12)]) * mm
        r, t = rng.uniform(4, 9) * mm, rng.uniform(0.8, 2.5) * mm
        ring = soft((torch.hypot(px - ctr[0], py - ctr[1]) - r).abs(), t / 2)
        ang = np.deg2rad(rng.uniform(-10, 10))
        top = ctr + np.array([np.sin(ang), -np.cos(ang)]) * rng.uniform(30, 90) * mm
        bar = soft(
            _segment_distance(px, py, ctr - (top - ctr) * (r / max(float(np.linalg.norm(top - ctr)), 1e-9)), top),
            rng.uniform(1.5, 4) * mm,
        )
        layer = torch.maximum(layer, rng.uniform(0.8, 1.0) * ring)
        layer = torch.maximum(layer, rng.uniform(0.5, 1.0) * bar)
    if ruler:
        x0 = nasion[0] + rng.uniform(8, 25) * mm
        y0 = nasion[1] - rng.uniform(5, 40) * mm
        length = rng.uniform(30, 90) * mm
        a, bb = np.array([x0, y0]), np.array([x0 + rng.uniform(-0.1, 0.1) * length, y0 + length])
        val = rng.uniform(0.7, 1.0)
        layer = torch.maximum(layer, val * soft(_segment_distance(px, py, a, bb), rng.uniform(0.8, 2.5) * mm))
        step = rng.uniform(2, 10) * mm
        tick = rng.uniform(2, 5) * mm
        for k in range(int(length // step) + 1):
            q = a + (bb - a) * (k * step / length)
            layer = torch.maximum(layer, val * soft(_segment_distance(px, py, q, q + np.array([-tick, 0.0])), 0.4 * mm))
    return torch.maximum(img, layer.expand_as(img))


def fov_mask(
    rng: np.random.Generator, hw: tuple[int, int], xy: np.ndarray, margin_px: float, device: torch.device
) -> tuple[torch.Tensor, float]:
    """A random rectangle (bool ``(H, W)`` mask, true inside) between the image border and
    the landmarks' bounding box grown by ``margin_px``, and the fill value outside it."""
    h, w = hw
    lo = np.maximum(xy.min(0) - margin_px, 0)
    hi = np.minimum(xy.max(0) + margin_px, [w - 1, h - 1])
    x0, y0 = rng.uniform(0, max(lo[0], 0)), rng.uniform(0, max(lo[1], 0))
    x1, y1 = rng.uniform(min(hi[0], w), w), rng.uniform(min(hi[1], h), h)
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)[None, :]
    mask = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    fill = float(rng.choice([0.0, 1.0, rng.uniform(0.2, 0.8)]))
    return mask, fill
