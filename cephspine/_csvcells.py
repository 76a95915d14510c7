"""Text cells of the CSV files cephspine writes, made safe to open in a spreadsheet.

A spreadsheet evaluates a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or with a
tab, carriage return or line feed before one) as a formula, so a film named
``=HYPERLINK(...).png`` or a landmark named ``@SUM(1+1)`` could run a formula when a
cohort table is opened (CSV or formula injection). Every CSV that cephspine writes (the
cohort and landmark tables, the ``"csv"`` export, ``-f csv`` on the command line, the
evaluation and training tables) passes its text cells through :func:`escape_cell`, and
every CSV reader of cephspine that reads such a table back passes them through
:func:`unescape_cell`:

* a text cell that starts with one of :data:`FORMULA_TRIGGERS`, possibly after leading
  apostrophes, is written with one more leading apostrophe (``=A1`` → ``'=A1``, and a name
  that itself is ``'=A1`` → ``''=A1``), the rule of the OWASP CSV-injection guidance;
* reading removes the first apostrophe of exactly those cells, so every text reads back
  as it was, and a cell such as ``'quoted'`` or ``it's`` is never changed.

Numbers (int and float cells, negative ones included) and column types are left alone:
only ``str`` values are escaped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cephspine._atomic import write_atomic

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMULA_TRIGGERS",
    "escape_cell",
    "escape_frame",
    "is_escaped",
    "needs_escape",
    "unescape_cell",
    "unescape_frame",
    "write_frame",
]

FORMULA_TRIGGERS: frozenset[str] = frozenset("=+-@\t\r\n")
"""Leading characters that make a spreadsheet read a cell as a formula."""


def _triggers(text: str) -> bool:
    """Whether ``text``, after any leading apostrophes, starts with a formula trigger."""
    return text.lstrip("'")[:1] in FORMULA_TRIGGERS


def needs_escape(value: Any) -> bool:
    """Whether ``value`` is a text that :func:`escape_cell` changes."""
    return isinstance(value, str) and _triggers(value)


def escape_cell(value: Any) -> Any:
    """``value`` as written to a CSV cell: a text that a spreadsheet would evaluate gets a
    leading apostrophe (see the module documentation); anything else is returned as it is."""
    return "'" + value if needs_escape(value) else value


def is_escaped(value: Any) -> bool:
    """Whether ``value`` is a CSV cell that :func:`escape_cell` prefixed with an apostrophe."""
    return isinstance(value, str) and value.startswith("'") and _triggers(value)


def unescape_cell(value: Any) -> Any:
    """The inverse of :func:`escape_cell`: a cell read from a CSV file, without the
    apostrophe the writer added; other values are returned as they are."""
    return value[1:] if is_escaped(value) else value


def _is_text(series: pd.Series) -> bool:
    import pandas as pd

    return series.dtype == object or isinstance(series.dtype, pd.StringDtype)


def escape_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` ready for ``to_csv``: the ``str`` cells of its text columns
    (object or ``string`` dtype), its column names and its index labels escaped with
    :func:`escape_cell`. Numeric columns are not touched."""
    out = df.copy()
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if _is_text(col) and any(needs_escape(v) for v in col):
            out.isetitem(i, col.astype(object).map(escape_cell))
    out.columns = out.columns.map(escape_cell)
    out.index = out.index.map(escape_cell)
    return out


def unescape_frame(df: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """``df`` (read from a CSV file) with :func:`unescape_cell` applied to ``columns``
    (default: every text column; names that are not columns are skipped)."""
    wanted = set(df.columns if columns is None else columns)
    out = df
    for i, name in enumerate(df.columns):
        col = df.iloc[:, i]
        if name not in wanted or not _is_text(col) or not any(is_escaped(v) for v in col):
            continue
        if out is df:
            out = df.copy()
        out.isetitem(i, col.map(unescape_cell).astype(col.dtype).array)
    return out


def write_frame(df: pd.DataFrame, path: str | os.PathLike[str], what: str, *, index: bool = False) -> Path:
    """Write ``df`` as CSV (text cells escaped, :func:`escape_frame`) to ``path``,
    atomically (:func:`cephspine._atomic.write_atomic`).

    Raises:
        OutputError: ``path`` cannot be written (a folder, a missing folder, no
            permission, a full disk); the message names ``path`` and the cause.
    """
    data = escape_frame(df).to_csv(index=index).encode("utf-8")
    return write_atomic(path, lambda fh: fh.write(data), what)
