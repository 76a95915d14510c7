"""Analyses written in standard formats, for other tools: one module per format.

::

    import cephspine
    a = cephspine.analyze("scan.dcm", kind="ceph")
    cephspine.export(a, "landmarks.csv", format="csv")        # the tidy landmark table
    cephspine.export(a, "landmarks.json", format="coco")      # COCO keypoints
    cephspine.export(a, "scan-sr.dcm", format="dicom-sr")     # DICOM SR (TID 1500)

- ``"csv"``: :mod:`cephspine.exports.csv`
- ``"coco"``: :mod:`cephspine.exports.coco` (:func:`~cephspine.exports.coco.write_coco`
  also writes many analyses into one file)
- ``"dicom-sr"``: :mod:`cephspine.exports.dicom_sr` (needs ``cephspine[dicom-sr]``)

Every file is written atomically: a failed export leaves no partial file and an existing
file untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cephspine.errors import InvalidArgumentError

if TYPE_CHECKING:
    from cephspine.analysis import Analysis

__all__ = ["EXPORT_FORMATS", "export"]

EXPORT_FORMATS: tuple[str, ...] = ("csv", "coco", "dicom-sr")
"""The formats :func:`export` writes."""


def export(
    analysis: Analysis,
    path: str | os.PathLike[str],
    format: str = "csv",
    *,
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Write one analysis to ``path`` in ``format``; returns the path written.

    Args:
        analysis: the :class:`~cephspine.Analysis` to export.
        path: the file to write (replaced only on success).
        format: ``"csv"``, ``"coco"`` or ``"dicom-sr"``.
        source: ``"dicom-sr"`` only: the DICOM file the analysis was made from (default:
            the file :func:`~cephspine.analyze` read in this process; for an analysis read
            back from JSON, its image name when that is a file relative to the working
            directory).
            The report references its SOP Instance and copies its patient and study.

    Raises:
        InvalidArgumentError: an unknown format, ``source`` with another format than
            ``"dicom-sr"``, or (``"dicom-sr"``) a source that is not the analysis' DICOM file.
        InputNotFoundError: (``"dicom-sr"``) ``source`` does not exist.
        MissingDependencyError: (``"dicom-sr"``) highdicom is not installed.
        OutputError: ``path`` cannot be written.
    """
    fmt = str(format).strip().lower()
    if fmt not in EXPORT_FORMATS:
        raise InvalidArgumentError(f"export format must be one of {', '.join(EXPORT_FORMATS)}; got {format!r}")
    if source is not None and fmt != "dicom-sr":
        raise InvalidArgumentError(f"source= is used by the dicom-sr export only, not by {fmt}")
    if fmt == "csv":
        from cephspine.exports.csv import write_csv

        return write_csv(analysis, path)
    if fmt == "coco":
        from cephspine.exports.coco import write_coco

        return write_coco(analysis, path)
    from cephspine.exports.dicom_sr import write_dicom_sr

    return write_dicom_sr(analysis, path, source=source)
