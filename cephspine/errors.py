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


class InvalidArgumentError(CephspineError, ValueError):
    """An argument has a value cephspine does not accept (an unknown ``kind``, ``engine``,
    output format, option combination, ...)."""


class InputNotFoundError(CephspineError, FileNotFoundError):
    """An input file or folder does not exist."""


class OutputError(CephspineError, OSError):
    """An output (table, report, export) cannot be written where it was asked for."""


class MissingDependencyError(CephspineError, ImportError):
    """An optional dependency is needed for what was asked; the message says which extra
    to install (e.g. ``pip install 'cephspine[ray]'``)."""


class CohortSettingsError(CephspineError, ValueError):
    """A cohort run would resume an output made with other settings (model, spacing,
    registration, decoding options, ...); the message names what changed."""


class CohortInterrupted(KeyboardInterrupt):
    """A cohort run was interrupted (Ctrl-C, SIGINT). It is a :class:`KeyboardInterrupt`,
    not a :class:`CephspineError`, so that ``except Exception`` does not swallow it.

    Attributes:
        done: the run's images with a row in ``out`` (those of earlier runs included):
            running the same call again keeps them and analyses the rest.
        analysed: images analysed by this run before the interruption.
        images: the run's images.
        out: the table written as images finish, or ``None`` (no row was kept).
        landmarks_out: the landmark table written as images finish, or ``None``.
        landmarks_done: the run's images with their landmarks in ``landmarks_out`` (those
            of earlier runs included).
    """

    def __init__(
        self, done: int, analysed: int, images: int, out: str | None, *, landmarks_out: str | None = None,
        landmarks_done: int = 0,
    ) -> None:  # fmt: skip
        self.done, self.analysed, self.images, self.out = done, analysed, images, out
        self.landmarks_out, self.landmarks_done = landmarks_out, landmarks_done
        if out:
            message = f"{done} of {images} image(s) done, in {out}; running the same call again resumes"
        elif landmarks_out:
            message = (
                f"{analysed} of {images} image(s) analysed; the landmarks of {landmarks_done} image(s) are in "
                f"{landmarks_out} (running the same call again adds the others), no row was kept (no out)"
            )
        else:
            message = f"{analysed} of {images} image(s) done, nothing was written (no out)"
        super().__init__(f"cohort interrupted: {message}")


class CephspineWarning(UserWarning):
    """Root of cephspine warnings."""


class LowConfidenceWarning(CephspineWarning):
    """Some landmarks were predicted with low confidence."""


class RegistrationWarning(CephspineWarning):
    """Registration failed and the unregistered path was used."""


class AnatomyWarning(CephspineWarning):
    """Predicted landmarks violate anatomy (e.g. vertebrae out of order or degenerate)."""


class LevelWarning(CephspineWarning):
    """A spine chain cannot be trusted at an end: vertebrae there were not found in the
    film, or a vertebra-like peak beyond the end makes every vertebra name possibly one
    level off. Their confidences are lowered accordingly."""


class SpacingWarning(CephspineWarning):
    """The pixel spacing is unknown, so millimetre outputs are unavailable."""


class WrongAnatomyWarning(CephspineWarning):
    """The result does not look like the anatomy the model was made for (e.g. a spine film
    analysed with the ``ceph`` model): its measures should not be used."""


class ExperimentalModelWarning(CephspineWarning):
    """The model's card marks it experimental: it falls short of its accuracy targets
    (the card's ``status_note`` says by how much)."""


class TrainingImagesWarning(CephspineWarning):
    """A model is evaluated on images it was trained on (its card's ``trained_ids``): its
    errors there are lower than on images it never saw, and do not measure its accuracy."""


class CohortIncompleteWarning(CephspineWarning):
    """A cohort run ended with images that were neither analysed nor recorded as errors:
    the workers running them kept failing (e.g. Ray actors killed or out of memory). They
    have no row, so running the same call again analyses them."""


_ALLOCATOR_FAILURES = ("DefaultCPUAllocator: can't allocate memory", "not enough memory: you tried to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the machine ran out of memory: a :class:`MemoryError`, torch's
    CUDA out-of-memory error, or torch's CPU allocator failure (a plain ``RuntimeError``)."""
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _ALLOCATOR_FAILURES)
