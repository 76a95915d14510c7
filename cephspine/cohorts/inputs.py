"""The images of a cohort: a folder's image files, or a list of paths."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cephspine.errors import InputNotFoundError, InvalidArgumentError

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
        InputNotFoundError: a folder or file that does not exist.
        InvalidArgumentError: two files of a list with the same name.
        TypeError: ``images`` is neither a path nor an iterable of paths.
    """
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            return list_images(p, recursive), p
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
