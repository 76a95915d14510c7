"""The ``"csv"`` export: the tidy landmark table of an analysis
(:meth:`~cephspine.Analysis.landmarks_dataframe`, one row per landmark), as
``cephspine predict -f csv`` prints it. :func:`cephspine.read_annotations` and
``cephspine.analyze(..., landmarks=path)`` read it back. Text cells that a spreadsheet
would evaluate as a formula (an image or landmark name starting with ``=``, ``+``, ``-``,
``@``, ...) are written with a leading apostrophe, which those readers remove
(:mod:`cephspine._csvcells`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cephspine._csvcells import write_frame

if TYPE_CHECKING:
    from cephspine.analysis import Analysis

__all__ = ["write_csv"]


def write_csv(analyses: Analysis | Sequence[Analysis], path: str | os.PathLike[str]) -> Path:
    """Write the landmark table of one analysis (or of several, one after the other) to
    ``path``, atomically.

    Raises:
        OutputError: ``path`` cannot be written (a folder, a missing folder, no permission,
            a full disk).
    """
    import pandas as pd

    from cephspine.analysis import Analysis

    items = [analyses] if isinstance(analyses, Analysis) else list(analyses)
    df = pd.concat([a.landmarks_dataframe() for a in items], ignore_index=True)
    return write_frame(df, path, "export")
