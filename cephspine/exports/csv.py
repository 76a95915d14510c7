"""The ``"csv"`` export: the tidy landmark table of an analysis
(:meth:`~cephspine.Analysis.landmarks_dataframe`, one row per landmark), as
``cephspine predict -f csv`` prints it. :func:`cephspine.read_annotations` and
``cephspine.analyze(..., landmarks=path)`` read it back."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cephspine._atomic import write_atomic

if TYPE_CHECKING:
    from cephspine.analysis import Analysis

__all__ = ["write_csv"]


def write_csv(analyses: Analysis | Sequence[Analysis], path: str | os.PathLike[str]) -> Path:
    """Write the landmark table of one analysis (or of several, one after the other) to
    ``path``, atomically.

    Raises:
        OutputError: ``path`` cannot be written (a folder, a missing folder, no permission).
    """
    import pandas as pd

    from cephspine.analysis import Analysis

    items = [analyses] if isinstance(analyses, Analysis) else list(analyses)
    df = pd.concat([a.landmarks_dataframe() for a in items], ignore_index=True)
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    data = buf.getvalue().encode("utf-8")
    return write_atomic(path, lambda fh: fh.write(data), "export")
