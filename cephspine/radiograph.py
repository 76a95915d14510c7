"""The :class:`Radiograph` type: 2-D pixels that know their spacing and origin."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from cephspine.errors import SpacingError

SPACING_SOURCES = ("PixelSpacing", "ImagerPixelSpacing", "user", "dataset")

MIN_SPACING_MM = 0.01
"""Smallest accepted pixel spacing, mm (film scanners reach about 0.02 mm)."""

MAX_SPACING_MM = 2.0
"""Largest accepted pixel spacing, mm (radiography detectors have pixels of 0.1–0.2 mm;
a heavily downsampled export may reach 1 mm)."""


class Spacing(NamedTuple):
    """Pixel spacing in millimetres, **row first** (as DICOM PixelSpacing).

    ``row_mm`` is the distance between the centres of two vertically adjacent pixels
    (the y step), ``col_mm`` between two horizontally adjacent ones (the x step).
    """

    row_mm: float
    col_mm: float

    @property
    def xy_mm(self) -> npt.NDArray[np.float64]:
        """The spacing as an ``(x_mm, y_mm)`` array, to multiply ``(x, y)`` pixel coordinates."""
        return np.array([self.col_mm, self.row_mm], dtype=np.float64)


def as_spacing(value: Any, *, what: str = "spacing", plausible: bool = True) -> Spacing | None:
    """Validate a user-given spacing.

    Args:
        value: ``None``, a number (isotropic), or a ``(row_mm, col_mm)`` pair.
        what: the name used in the error message.
        plausible: also require a radiograph's range (:func:`implausible_spacing`); the
            geometry functions, pure arithmetic on coordinates, accept any positive value.

    Returns:
        A :class:`Spacing`, or ``None`` when ``value`` is ``None``.

    Raises:
        SpacingError: when a value is not a positive finite number, lies outside
            :data:`MIN_SPACING_MM`–:data:`MAX_SPACING_MM`, or the pair has the wrong length.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise SpacingError(f"{what} must be a number or a (row_mm, col_mm) pair, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        pair = (float(value), float(value))
    else:
        try:
            items = [float(v) for v in value]
        except (TypeError, ValueError, OverflowError):
            raise SpacingError(f"{what} must be a number or a (row_mm, col_mm) pair, got {value!r}") from None
        if len(items) != 2:
            raise SpacingError(f"{what} must have 2 values (row_mm, col_mm), got {len(items)}")
        pair = (items[0], items[1])
    for v in pair:
        if not math.isfinite(v) or v <= 0:
            raise SpacingError(f"{what} must be positive and finite, got {value!r}")
    reason = implausible_spacing(pair) if plausible else None
    if reason:
        raise SpacingError(f"{what} {value!r}: {reason}")
    return Spacing(*pair)


def implausible_spacing(pair: tuple[float, float]) -> str | None:
    """Why a ``(row_mm, col_mm)`` spacing cannot be a radiograph's, or ``None`` when it is
    within :data:`MIN_SPACING_MM`–:data:`MAX_SPACING_MM` on both axes."""
    for v in pair:
        if not MIN_SPACING_MM <= v <= MAX_SPACING_MM:
            return f"{v:g} mm per pixel is outside the range of radiographs ({MIN_SPACING_MM:g}–{MAX_SPACING_MM:g} mm)"
    return None


def spacing_xy_mm(spacing: Any, n_images: int | None = None) -> npt.NDArray[np.float64] | None:
    """Spacing as ``(x_mm, y_mm)`` multipliers for ``(x, y)`` pixel coordinates.

    Args:
        spacing: ``None``; a number or :class:`Spacing` (every image); for one image
            (``n_images=None``) also a ``(row_mm, col_mm)`` pair; for ``n_images`` images
            also a sequence of one entry (number, pair or :class:`Spacing`) per image.
        n_images: number of images the multipliers are for, or ``None`` for one image.

    Returns:
        ``None`` for ``None``, a ``(2,)`` array for one shared spacing, or ``(M, 1, 2)``
        for per-image spacings.

    Raises:
        SpacingError: a value that is not positive and finite, or a per-image sequence of
            the wrong length or with a missing entry.
    """
    if spacing is None:
        return None
    if isinstance(spacing, np.ndarray) and spacing.ndim == 0:
        spacing = spacing.item()
    if isinstance(spacing, (Spacing, bool, int, float, np.generic)) or n_images is None:
        sp = as_spacing(spacing, plausible=False)  # coordinate arithmetic: any positive spacing
        assert sp is not None
        return sp.xy_mm
    items = list(spacing)
    if len(items) != n_images:
        raise SpacingError(
            f"spacing for {n_images} images must be one value or a Spacing, or one entry per image; got {len(items)}"
        )
    rows = []
    for i, item in enumerate(items):
        sp = as_spacing(item, what=f"spacing[{i}]", plausible=False)
        if sp is None:
            raise SpacingError(f"spacing[{i}] is None; give a spacing for every image")
        rows.append(sp.xy_mm)
    return np.asarray(rows, dtype=np.float64)[:, None, :]


@dataclass(frozen=True, eq=False)
class Radiograph:
    """A 2-D radiograph.

    Attributes:
        pixels: ``(H, W)`` float32 array; higher values are brighter as displayed
            (denser tissue), whatever the file's photometric interpretation was.
        spacing: pixel spacing in mm as :class:`Spacing` ``(row_mm, col_mm)``, or ``None``
            when unknown.
        spacing_source: where the spacing came from: ``"PixelSpacing"``,
            ``"ImagerPixelSpacing"``, ``"user"``, ``"dataset"`` or ``None``.
        source: the file the image was read from, or ``None`` for in-memory arrays.
        meta: small metadata dict (format, bit depth, DICOM attributes such as
            ``SOPInstanceUID``); never the pixel data.
    """

    pixels: npt.NDArray[np.float32]
    spacing: Spacing | None = None
    spacing_source: str | None = None
    source: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        h, w = self.pixels.shape
        return int(h), int(w)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def name(self) -> str:
        """The file name, or ``"<array>"`` for in-memory images."""
        return self.source.name if self.source is not None else "<array>"

    def with_spacing(self, spacing: Any, source: str = "user") -> Radiograph:
        """Return a copy with another spacing (validated like :func:`as_spacing`)."""
        sp = as_spacing(spacing)
        return Radiograph(self.pixels, sp, source if sp is not None else None, self.source, dict(self.meta))

    def __repr__(self) -> str:
        sp = (
            f"{self.spacing.row_mm:g}x{self.spacing.col_mm:g} mm ({self.spacing_source})"
            if self.spacing is not None
            else "unknown"
        )
        return f"Radiograph({self.name}, {self.height}x{self.width} px, spacing {sp})"
