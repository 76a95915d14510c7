"""Writing an output file atomically: into a temporary file beside the target, then moved
into place, so that a failed write never leaves a partial file or replaces a good one.
Shared by the PDF reports (:mod:`cephspine.reports`) and the exports
(:mod:`cephspine.exports`); ``what`` names the output in error messages."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cephspine.errors import OutputError


def output_error(target: Path, what: str, reason: str, code: int | None = None) -> OutputError:
    """The error for an output that cannot be written: the file and the reason, once each."""
    exc = OutputError(f"cannot write the {what} to {target}: {reason}")
    if code is not None:  # kept for callers that test errno; str(exc) stays the message alone
        exc.errno = code
    return exc


def check_target(path: str | os.PathLike[str], what: str) -> Path:
    """The output path, refused early (:class:`OutputError`) when it is a folder or its
    folder does not exist."""
    target = Path(os.fspath(path)).expanduser()
    if target.is_dir():
        raise output_error(target, what, "it is a folder", errno.EISDIR)
    parent = target.parent
    if not parent.exists():
        raise output_error(target, what, f"folder {parent} does not exist", errno.ENOENT)
    if not parent.is_dir():
        raise output_error(target, what, f"{parent} is not a folder", errno.ENOTDIR)
    return target


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a file just moved into it) to disk, where the platform can."""
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temporary_name(target: Path) -> Path:
    """A fresh temporary file name beside ``target``: ``.<name>.<12 hex digits>.tmp``."""
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def write_atomic(path: str | os.PathLike[str], render: Callable[[BinaryIO], object], what: str) -> Path:
    """Call ``render`` on a temporary file beside ``path`` (:func:`temporary_name`), then
    move it into place and flush the folder to disk.

    On any failure the temporary file is removed and an existing file at ``path`` is left
    untouched; ``OSError`` from writing (a full disk, no permission) becomes
    :class:`OutputError` naming ``path`` and the cause.
    """
    target = check_target(path, what)
    tmp = temporary_name(target)
    try:
        fh = open(tmp, "xb")  # noqa: SIM115 - closed below, before the move
    except OSError as exc:
        raise output_error(target, what, exc.strerror or str(exc), exc.errno) from exc
    try:
        try:
            render(fh)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fh.close()
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise output_error(target, what, exc.strerror or str(exc), exc.errno) from exc
        raise
    fsync_dir(target.parent)
    return target
