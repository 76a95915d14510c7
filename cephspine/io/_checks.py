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

MAX_PIXELS = 64_000_000
"""Largest accepted image area, in pixels (an 8000 × 8000 film; the largest radiography
detectors hold about 20 million). A side within :data:`MAX_SIDE_PX` can still make a
hostile file of 30000 × 30000 px: its area is refused from the header, before decoding."""

MAX_DECODED_BYTES = 512 * 2**20
"""Largest accepted decoded pixel buffer (rows × columns × samples × bytes per sample)."""

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)
"""ITU-R BT.601 weights used to turn RGB into grey."""


def check_shape(
    height: int, width: int, source: str | Path | None, *, samples: int = 1, bytes_per_sample: int = 1
) -> None:
    """Refuse absurd image dimensions, from a header before any pixel is decoded.

    Raises:
        ImageReadError: when a side is below :data:`MIN_SIDE_PX` or above :data:`MAX_SIDE_PX`,
            the area above :data:`MAX_PIXELS`, or the decoded buffer (``samples`` per pixel
            of ``bytes_per_sample`` each) above :data:`MAX_DECODED_BYTES`.
    """
    if min(height, width) < MIN_SIDE_PX or max(height, width) > MAX_SIDE_PX:
        raise ImageReadError(
            source,
            f"absurd image dimensions {height}x{width} px (height x width); each side must be "
            f"between {MIN_SIDE_PX} and {MAX_SIDE_PX} px",
        )
    if height * width > MAX_PIXELS:
        raise ImageReadError(
            source,
            f"image of {height}x{width} px ({height * width / 1e6:.0f} million pixels) is larger than the limit "
            f"of {MAX_PIXELS / 1e6:.0f} million pixels; refused before decoding",
        )
    n_bytes = height * width * max(1, samples) * max(1, bytes_per_sample)
    if n_bytes > MAX_DECODED_BYTES:
        raise ImageReadError(
            source,
            f"image of {height}x{width} px with {samples} sample(s) of {bytes_per_sample} byte(s) would decode to "
            f"{n_bytes / 2**20:.0f} MiB, more than the limit of {MAX_DECODED_BYTES // 2**20} MiB; refused before "
            "decoding",
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
