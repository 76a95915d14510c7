""":func:`load_image`: one entry point for files, arrays and radiographs."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from cephspine.errors import ImageReadError, SpacingError, UnsupportedImageError
from cephspine.io._checks import check_finite, check_shape
from cephspine.io.dicom import NotDicomError, read_dicom
from cephspine.io.raster import read_raster
from cephspine.radiograph import Radiograph, Spacing, as_spacing

SpacingLike: TypeAlias = Spacing | float | Sequence[float] | None
"""A spacing as users may give it: a :class:`Spacing`, one number (isotropic, mm per
pixel) or a ``(row_mm, col_mm)`` pair."""

ImageSource: TypeAlias = str | os.PathLike[str] | np.ndarray[Any, Any] | Radiograph
"""What :func:`load_image` accepts."""

_DICOM_MAGIC_OFFSET = 128
_RASTER_MAGIC: tuple[bytes, ...] = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"BM",  # BMP
    b"GIF87a",
    b"GIF89a",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000 (JP2)
    b"\xffO\xffQ",  # JPEG 2000 codestream
)


def load_image(source: ImageSource, spacing: SpacingLike = None) -> Radiograph:
    """Load a radiograph from a file, a numpy array or an existing :class:`Radiograph`.

    Files are recognised by their content, not their extension: DICOM (``DICM`` at
    byte 128, or a DICOM data set without the preamble), otherwise anything Pillow reads
    (JPEG, PNG, TIFF 8/16-bit, BMP, …). Colour images become grey. DICOM pixels go
    through the modality LUT, the VOI LUT or window, and MONOCHROME1 inversion (see
    :mod:`cephspine.io.dicom`). Files are opened read-only; inputs are never modified.

    Args:
        source: a path (``str`` or :class:`os.PathLike`), a 2-D numeric numpy array
            ``(H, W)`` of grey values (copied), or a :class:`Radiograph`.
        spacing: pixel spacing in mm that overrides the file's (``spacing_source`` then
            is ``"user"``): one number for square pixels or a ``(row_mm, col_mm)`` pair.
            ``None`` keeps the file's spacing, or leaves it unknown.

    Returns:
        A :class:`Radiograph` with ``(H, W)`` float32 pixels (higher = brighter),
        spacing and its source, the file path, and ``meta`` (format, bits, and for
        DICOM a few non-identifying attributes; never patient identifiers). When a
        user spacing replaces a file spacing, the latter is kept in
        ``meta["file_spacing"]`` and ``meta["file_spacing_source"]``.

    Raises:
        SpacingError: ``spacing`` is not a positive finite number or pair.
        ImageReadError: missing, empty, truncated or unreadable file; not an image; no
            pixel data; absurd dimensions; NaN/inf values; arrays that are not 2-D,
            boolean or not numeric. The message starts with the file name.
        UnsupportedImageError: multi-frame files and unusual pixel formats (a subclass
            of :class:`ImageReadError`).

    Example:
        >>> import cephspine
        >>> rg = cephspine.load_image(cephspine.example_path(), spacing=0.1)
        >>> rg.shape, rg.spacing_source
        ((2400, 1935), 'user')
    """
    if isinstance(source, Radiograph):
        user = _user_spacing(spacing, source.source)
        _check_pixels(source.pixels, source.source)
        return source if user is None else source.with_spacing(user, "user")
    if isinstance(source, np.ndarray):
        user = _user_spacing(spacing, None)
        return _from_array(source, user)
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fsdecode(source)).expanduser()
        user = _user_spacing(spacing, path)
        return _from_file(path, user)
    raise ImageReadError(
        f"<{type(source).__name__}>",
        "expected a file path, a 2-D numpy array or a Radiograph",
    )


def _user_spacing(spacing: Any, source: Path | None) -> Spacing | None:
    try:
        return as_spacing(spacing)
    except SpacingError as exc:
        name = str(source) if source is not None else "<array>"
        raise SpacingError(f"{name}: {exc}") from None


def _check_pixels(array: Any, source: Path | None) -> None:
    """Type, dimension and size checks shared by arrays and ready-made Radiographs."""
    if not isinstance(array, np.ndarray):
        raise ImageReadError(source, f"pixels must be a numpy array, got {type(array).__name__}")
    if array.dtype == np.bool_:
        raise ImageReadError(source, "boolean arrays are masks, not images")
    if array.dtype.kind not in "uif":
        raise ImageReadError(source, f"array dtype {array.dtype} is not a real numeric type")
    if array.ndim != 2:
        raise ImageReadError(
            source,
            f"expected a 2-D (height, width) array, got shape {array.shape}; convert colour "
            "or multi-channel images to one grey channel first",
        )
    check_shape(array.shape[0], array.shape[1], source)
    if array.dtype.kind == "f":
        check_finite(array, source)


def _from_array(array: np.ndarray[Any, Any], spacing: Spacing | None) -> Radiograph:
    _check_pixels(array, None)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        pixels = np.array(array, dtype=np.float32, copy=True)
    check_finite(pixels, None)
    meta: dict[str, Any] = {"format": "array", "dtype": str(array.dtype)}
    if array.dtype.kind in "ui":
        meta["bits"] = array.dtype.itemsize * 8
    return Radiograph(pixels, spacing, "user" if spacing is not None else None, None, meta)


def _from_file(path: Path, spacing: Spacing | None) -> Radiograph:
    head = _read_head(path)
    if head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        dcm = read_dicom(path)
        pixels, meta = dcm.pixels, dcm.meta
        file_spacing, file_source = dcm.spacing, dcm.spacing_source
    elif head.startswith(_RASTER_MAGIC):
        pixels, meta = read_raster(path)
        file_spacing, file_source = None, None
    else:
        try:  # a DICOM data set without preamble (old or non-conformant writers)
            dcm = read_dicom(path, force=True)
        except NotDicomError:
            try:  # a raster format without a magic number we check for
                pixels, meta = read_raster(path)
            except UnsupportedImageError:
                raise
            except ImageReadError:
                raise ImageReadError(
                    path,
                    "not a recognised image: neither DICOM nor a format Pillow reads (JPEG, PNG, TIFF, BMP, ...)",
                ) from None
            file_spacing, file_source = None, None
        else:
            pixels, meta = dcm.pixels, dcm.meta
            file_spacing, file_source = dcm.spacing, dcm.spacing_source
    if spacing is not None:
        if file_spacing is not None:
            meta["file_spacing"] = (file_spacing.row_mm, file_spacing.col_mm)
            meta["file_spacing_source"] = file_source
        return Radiograph(pixels, spacing, "user", path, meta)
    return Radiograph(pixels, file_spacing, file_source, path, meta)


def _read_head(path: Path) -> bytes:
    """The first bytes of a file, refusing missing, empty and non-regular files (a FIFO is
    never opened, so it cannot block; a link to a device is refused, not read)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except ValueError as exc:  # e.g. a NUL byte in the name
        raise ImageReadError(path, f"not a valid file name ({exc})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError(path, "symbolic link loop") from None
        raise ImageReadError(path, f"cannot open file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(path, "not a regular file (a FIFO, device or socket), refused")
    if st.st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            return fh.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError as exc:
        raise ImageReadError(path, f"cannot open file: {exc.strerror or exc}") from exc
