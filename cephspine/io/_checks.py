"""Checks and conversions shared by the image readers (private)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from cephspine.errors import ImageReadError

MIN_SIDE_PX = 8
"""Smallest accepted image side, in pixels."""

MAX_SIDE_PX = 30_000
"""Largest accepted image side, in pixels (larger is treated as corrupt or hostile)."""

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)
"""ITU-R BT.601 weights used to turn RGB into grey."""


def check_shape(height: int, width: int, source: str | Path | None) -> None:
    """Refuse absurd image dimensions.

    Raises:
        ImageReadError: when a side is below :data:`MIN_SIDE_PX` or above :data:`MAX_SIDE_PX`.
    """
    if min(height, width) < MIN_SIDE_PX or max(height, width) > MAX_SIDE_PX:
        raise ImageReadError(
            source,
            f"absurd image dimensions {height}x{width} px (height x width); each side must be "
            f"between {MIN_SIDE_PX} and {MAX_SIDE_PX} px",
        )


def check_finite(pixels: npt.NDArray[np.float32], source: str | Path | None) -> None:
    """Refuse pixels that are NaN or infinite.

    Raises:
        ImageReadError: naming how many values are not finite.
    """
    finite = np.isfinite(pixels)
    if not finite.all():
        n_bad = int(pixels.size - np.count_nonzero(finite))
        raise ImageReadError(source, f"{n_bad} pixel value(s) are NaN or infinite")


def rgb_to_grey(rgb: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """Convert an ``(H, W, C)`` colour array (C ≥ 3, extra channels ignored) to grey.

    Images whose three colour channels are identical (grey stored as RGB) keep their
    values exactly; others are combined with the BT.601 luma weights.

    Returns:
        ``(H, W)`` float32 array in the input's value scale.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if np.array_equal(r, g) and np.array_equal(g, b):
        return np.asarray(r, dtype=np.float32).copy()
    grey = rgb[..., :3].astype(np.float64) @ LUMA_WEIGHTS
    return grey.astype(np.float32)
