"""Reading ordinary raster images (JPEG, PNG, TIFF, BMP, …) with Pillow.

Grey levels are kept as they are stored: 8-bit images give values 0–255, 16-bit TIFF and
PNG give the raw 0–65535 values, 32-bit float TIFF gives its floats, all as float32.
Colour images are turned into grey (see :func:`cephspine.io._checks.rgb_to_grey`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cephspine.errors import CephspineError, ImageReadError, UnsupportedImageError
from cephspine.io._checks import check_finite, check_shape, rgb_to_grey

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;16LS", "I;16BS")
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA")
_EXIF_ORIENTATION_TAG = 0x0112


def read_raster(path: str | Path) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """Read a single-frame raster image as grey float32 pixels.

    The file is opened read-only and never modified. An EXIF orientation tag, when
    present, is applied so that the pixels are oriented as an image viewer shows them
    (``meta["exif_orientation"]`` records the original tag).

    Args:
        path: the image file.

    Returns:
        ``(pixels, meta)``: pixels an ``(H, W)`` float32 array; meta with ``format``
        (``"jpeg"``, ``"png"``, ``"tiff"``, …), ``bits`` (stored bits per sample),
        ``mode`` (Pillow's mode) and ``colour`` (``True`` when converted from colour).

    Raises:
        ImageReadError: the file is not an image Pillow can read, is truncated or
            corrupt, has absurd dimensions, is a decompression bomb, or holds NaN.
        UnsupportedImageError: multi-frame / multi-page images and unusual pixel modes.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    fmt = "image"
    try:
        with Image.open(path) as im:
            fmt = (im.format or "image").lower()
            width, height = im.size
            check_shape(height, width, path, samples=len(im.getbands()), bytes_per_sample=_sample_bytes(im.mode))
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            if n_frames > 1:
                raise UnsupportedImageError(
                    path,
                    f"{fmt} file with {n_frames} frames/pages; only single-frame images are "
                    "supported (save the frame you need on its own)",
                )
            im.load()
            meta: dict[str, Any] = {"format": fmt, "mode": im.mode, "bits": _bits(im, fmt)}
            orientation = im.getexif().get(_EXIF_ORIENTATION_TAG)
            if orientation not in (None, 1):
                meta["exif_orientation"] = int(orientation)
                im = ImageOps.exif_transpose(im)
            pixels, meta["colour"] = _to_grey(im, path)
    except CephspineError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not an image file Pillow can identify") from exc
    except MemoryError:
        raise  # the machine's limit, not the file's fault: callers treat it as out of memory
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error, …
        raise ImageReadError(path, f"could not decode {fmt} data (truncated or corrupt?): {exc}") from exc
    if pixels.ndim != 2:
        raise UnsupportedImageError(path, f"decoded to an array of shape {pixels.shape}")
    check_shape(pixels.shape[0], pixels.shape[1], path)
    check_finite(pixels, path)
    return pixels, meta


def _sample_bytes(mode: str) -> int:
    """Bytes per sample of a decoded Pillow image of ``mode``."""
    if mode in ("I", "F", "I;32", "I;32B"):
        return 4
    return 2 if mode.startswith("I;16") else 1


def _bits(im: Any, fmt: str) -> int:
    """Stored bits per sample, as far as the file tells."""
    if fmt == "tiff":
        tag = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
        if tag:
            first = tag[0] if isinstance(tag, tuple) else tag
            return int(first)
    mode: str = im.mode
    if mode == "1":
        return 1
    if mode in _SIXTEEN_BIT_MODES:
        return 16
    if mode == "I":
        return 16 if fmt == "png" else 32  # Pillow opens 16-bit grey PNG as "I"
    if mode == "F":
        return 32
    return 8


def _to_grey(im: Any, path: Path) -> tuple[npt.NDArray[np.float32], bool]:
    """An opened Pillow image as ``(H, W)`` float32 pixels, and whether it was colour."""
    mode: str = im.mode
    if mode in ("L", "I", "F") or mode in _SIXTEEN_BIT_MODES:
        return np.array(im, dtype=np.float32), False
    if mode == "1":
        return np.array(im.convert("L"), dtype=np.float32), False
    if mode in ("LA", "La"):
        return np.array(im.getchannel(0), dtype=np.float32), False
    if mode in _COLOUR_MODES:
        rgb = np.asarray(im.convert("RGB"))
        return rgb_to_grey(rgb), True
    raise UnsupportedImageError(path, f"unsupported pixel mode {mode!r}")
