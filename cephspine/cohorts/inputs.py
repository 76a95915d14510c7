"""The images of a cohort: a folder's image files, or a list of paths."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cephspine.errors import InputNotFoundError, InvalidArgumentError
from cephspine.io.annotations import spacing_columns
from cephspine.radiograph import Spacing, as_spacing

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".jp2", ".j2k", ".dcm", ".dicom"}
)
"""File suffixes (lower case) taken from a folder. Files without a suffix, or with a purely
numeric one (DICOM files named by UID, ``1.2.840.….7``), are taken too, since
:func:`~cephspine.load_image` recognises images by content."""

_SKIPPED_NAMES = frozenset({"DICOMDIR"})  # a DICOM media directory index, not an image


def _is_candidate(p: Path) -> bool:
    if p.name.startswith(".") or p.name in _SKIPPED_NAMES:
        return False
    suffix = p.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix == "" or suffix[1:].isdigit()


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """The candidate image files of a folder in a deterministic (sorted) order; hidden
    files and folders are skipped. See :data:`IMAGE_SUFFIXES`. Entries that are not
    regular files (FIFOs, devices, dangling links, link loops) are listed too, so that the
    cohort gives each an error row rather than skipping it unseen.

    Raises:
        InputNotFoundError: ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputNotFoundError(f"{root}: no such folder")
    found: list[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(Path(dirpath) / f for f in filenames)
    else:
        found = list(root.iterdir())
    # everything but folders: a FIFO, a device, a dangling link or a loop of links is not
    # skipped silently but becomes the image's error row (load_image refuses it unopened)
    files = [p for p in found if _is_candidate(p) and not _is_dir(p)]
    return sorted(files, key=lambda p: p.relative_to(root).parts)


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:  # e.g. a loop of symbolic links on some Pythons
        return False


def collect(images: Any, recursive: bool) -> tuple[list[Path], Path | None]:
    """The files of ``images`` (a folder, a file, or an iterable of paths) and the folder
    their ``image`` keys are relative to (``None``: keyed by file name).

    Raises:
        InputNotFoundError: a folder or file that does not exist, or a folder without
            image files (the message names the suffixes looked for).
        InvalidArgumentError: two files of a list with the same name.
        TypeError: ``images`` is neither a path nor an iterable of paths.
    """
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            found = list_images(p, recursive)
            if not found:
                where = "" if recursive else " (its sub-folders are searched only when recursive, -r)"
                raise InputNotFoundError(
                    f"{p}: no image files in this folder{where}; looked for {', '.join(sorted(IMAGE_SUFFIXES))} "
                    "and files without a suffix"
                )
            return found, p
        if not p.exists():
            raise InputNotFoundError(f"{p}: no such folder or file")
        return [p], None
    if not isinstance(images, Iterable):
        raise TypeError(f"images must be a folder or an iterable of paths, got {type(images).__name__}")
    paths: list[Path] = []
    seen: set[Path] = set()
    names: dict[str, Path] = {}
    for item in images:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"images must hold file paths, got {type(item).__name__}")
        p = Path(item)
        ident = Path(os.path.abspath(p))
        if ident in seen:
            continue
        seen.add(ident)
        if p.name in names:
            raise InvalidArgumentError(
                f"two images named {p.name!r} ({names[p.name]} and {p}); rows are keyed by file name, "
                "so pass their common folder (recursive=True) instead of a list"
            )
        names[p.name] = p
        paths.append(p)
    return paths, None


SPACING_TABLE_COLUMNS: tuple[str, ...] = ("image", "spacing_mm")
"""The columns of a per-image spacing table (``row_mm`` and ``col_mm``, or
``spacing_row_mm`` and ``spacing_col_mm``, may replace ``spacing_mm`` for pixels that are
not square; see :func:`cephspine.io.annotations.spacing_columns`)."""


def read_spacing_table(path: str | os.PathLike[str]) -> dict[str, Spacing]:
    """The per-image pixel spacings of a CSV file: ``image, spacing_mm`` (or ``image,
    row_mm, col_mm``, or ``image, spacing_row_mm, spacing_col_mm``), one row per image, or
    several rows with the same spacing (an annotation CSV, or a landmark CSV of cephspine:
    ``predict -f csv``, :func:`cephspine.export` ``format="csv"``, a cohort's
    ``landmarks_out``; one row per landmark). Rows without a spacing are skipped.

    Returns:
        Image name (as in the file) → :class:`~cephspine.radiograph.Spacing`.

    Raises:
        InputNotFoundError: the file does not exist.
        InvalidArgumentError: not a readable CSV, no ``image`` or spacing column, or an
            image with two different spacings.
        SpacingError: a spacing that is not positive and finite or outside the range of
            radiographs (the message names the file and the image).
    """
    import pandas as pd

    from cephspine._csvcells import unescape_frame

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: no such file")
    try:
        df = pd.read_csv(p, dtype={"image": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"{p}: not a readable CSV file ({exc})") from None
    cols = spacing_columns(df.columns)
    if "image" not in df.columns or cols is None:
        raise InvalidArgumentError(
            f"{p}: a spacing table needs the columns image and spacing_mm (or row_mm and col_mm, or "
            f"spacing_row_mm and spacing_col_mm); it has {', '.join(map(str, df.columns))}"
        )
    df = unescape_frame(df, ("image",))
    values = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64) for c in cols])
    out: dict[str, Spacing] = {}
    for image, pair in zip(df["image"], values):
        if pd.isna(image) or np.isnan(pair).all():
            continue
        sp = as_spacing(tuple(pair), what=f"{p}: image {image}: spacing")
        assert sp is not None
        if image in out and out[image] != sp:
            raise InvalidArgumentError(f"{p}: image {image} has two spacings ({_mm(out[image])} and {_mm(sp)})")
        out[str(image)] = sp
    return out


def _mm(sp: Spacing) -> str:
    return f"{sp.row_mm:g} mm" if sp.row_mm == sp.col_mm else f"{sp.row_mm:g} × {sp.col_mm:g} mm"
