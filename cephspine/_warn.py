"""Warnings that point at the caller's code, not at a line inside cephspine."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _inside_package(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)


def warn_caller(message: str, category: type[Warning]) -> None:
    """Issue ``warnings.warn(message, category)`` attributed to the first frame outside
    the cephspine package: the line of the user's code that called into cephspine, however
    deep inside the package the warning arises (``analyze`` → ``Detector.predict`` → …)."""
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is the caller of this function
    while frame.f_back is not None and _inside_package(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
