"""Reading small input files (model cards, annotation files) without trusting them: only
regular files, only up to a size limit, never blocking on a FIFO or device."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class UnsafeFileError(OSError):
    """The file is not a regular file, or is larger than the limit (callers turn it into
    their typed error naming the file)."""


def read_bounded(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``max_bytes``.

    The file is opened non-blocking (a FIFO without writer does not hang) and checked
    with ``fstat`` on the open descriptor (a symlink to ``/dev/zero`` is a device, not a
    regular file); at most ``max_bytes + 1`` bytes are read, so a file that grows while
    being read cannot exhaust memory either.

    Raises:
        FileNotFoundError, PermissionError, ...: as ``open`` raises them.
        UnsafeFileError: not a regular file, or larger than ``max_bytes``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(errno.EINVAL, "not a regular file (a device, FIFO or socket)")
        if st.st_size > max_bytes:
            raise UnsafeFileError(errno.EFBIG, f"{st.st_size} bytes, more than the limit of {max_bytes}")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFileError(errno.EFBIG, f"more than the limit of {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (symlinks followed) is a regular file; ``False`` for a missing
    file, a loop of symlinks, a FIFO or a device."""
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except (OSError, ValueError):
        return False
