"""Exceptions and warnings raised by cephspine.

Every error derives from :class:`CephspineError` and also from the matching built-in
exception, so ``except ValueError`` clauses in existing code keep working.
"""

from __future__ import annotations

from pathlib import Path


class CephspineError(Exception):
    """Root of all cephspine errors."""


class ImageReadError(CephspineError, ValueError):
    """An image could not be read or is not a usable radiograph.

    Attributes:
        source: the file (or ``"<array>"``) that failed.
        reason: what is wrong with it.
    """

    def __init__(self, source: str | Path | None, reason: str) -> None:
        self.source = str(source) if source is not None else "<array>"
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class UnsupportedImageError(ImageReadError):
    """The file is an image, but of a kind cephspine does not handle (e.g. multi-frame DICOM)."""


class SpacingError(CephspineError, ValueError):
    """A pixel spacing is missing where required, or is not positive and finite."""


class DatasetError(CephspineError, ValueError):
    """A dataset folder does not have the expected layout or a record is unreadable."""


class LandmarkError(CephspineError, ValueError):
    """Landmarks have the wrong shape, contain NaN, or make a measure undefined."""


class UnknownModelError(CephspineError, KeyError):
    """``Detector.from_pretrained`` was given a name that is not a known model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(CephspineError, ValueError):
    """A model directory or weights file is missing, unsafe or does not match its card."""


class DeviceError(CephspineError, ValueError):
    """The requested compute device does not exist or is not available."""


class CephspineWarning(UserWarning):
    """Root of cephspine warnings."""


class LowConfidenceWarning(CephspineWarning):
    """Some landmarks were predicted with low confidence."""


class RegistrationWarning(CephspineWarning):
    """Registration failed and the unregistered path was used."""


class AnatomyWarning(CephspineWarning):
    """Predicted landmarks violate anatomy (e.g. vertebrae out of order or degenerate)."""


class SpacingWarning(CephspineWarning):
    """The pixel spacing is unknown, so millimetre outputs are unavailable."""


class ExperimentalModelWarning(CephspineWarning):
    """The model's card marks it experimental: it falls short of its accuracy targets
    (the card's ``status_note`` says by how much)."""
