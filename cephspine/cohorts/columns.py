"""Columns and dtypes of the cohort tables.

A cohort table has exactly the columns of :meth:`~cephspine.Analysis.to_row` (the landmark
table those of :meth:`~cephspine.Analysis.landmarks_dataframe`), each of one of three
kinds, with the same dtype whether the table comes from memory, a CSV or a Parquet file:

* text: pandas' nullable ``string`` dtype; a missing or empty value is ``pd.NA`` (an
  error row has no ``anb_class``, an ok row no ``error``), so ``groupby`` and
  ``value_counts`` leave it out;
* integer (counts, image size in pixels, anatomical type numbers, landmark index):
  nullable ``Int64``, missing as ``pd.NA``;
* float (measures, angles, spacing, confidence): ``float64``, missing as ``NaN``.

A CSV stores a missing value as an empty field; Parquet as a null of a ``string``,
``int64`` or ``double`` column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from cephspine.analysis import IDENTIFIER_FIELDS, Analysis, check_kind
from cephspine.anatomy import CEPH_LANDMARKS, SPINE_LANDMARKS
from cephspine.prediction import Prediction

TEXT_DTYPE = pd.StringDtype("python")
"""dtype of the text columns (``pd.NA`` for missing)."""
INTEGER_DTYPE = pd.Int64Dtype()
"""dtype of the integer columns (``pd.NA`` for missing)."""


def one_line(text: str) -> str:
    """``text`` with line breaks (and the blanks around them) folded into single spaces."""
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


_KEY_SPECIAL = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_KEY_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_KEY_ESCAPE = re.compile(r"\\(?:([\\nrt])|x([0-9a-f]{2})|u([0-9a-f]{4}))")


def _key_char(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _KEY_NAMED:
        return _KEY_NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _key_unchar(m: re.Match[str]) -> str:
    named, byte, code = m.groups()
    if named is not None:
        return {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[named]
    return chr(int(byte or code, 16))


def escape_key(name: str) -> str:
    """``name`` (a file name or relative path) as one line of printable text that names it
    unambiguously, for the ``image`` column of a cohort table: a backslash is doubled, a
    line feed, carriage return and tab become ``\\n``, ``\\r`` and ``\\t``, any other
    control character ``\\xHH`` (``\\u2028``/``\\u2029`` for the Unicode line and
    paragraph separators, ``\\uHHHH`` for a byte of a name that is not UTF-8); every other
    character stays. A name without such characters is its own key."""
    return _KEY_SPECIAL.sub(_key_char, name) if _KEY_SPECIAL.search(name) else name


def unescape_key(key: str) -> str:
    """The file name or relative path that a cohort table's ``image`` key names (the inverse
    of :func:`escape_key`)."""
    return _KEY_ESCAPE.sub(_key_unchar, key) if "\\" in key else key


def is_missing(value: Any) -> bool:
    """``None``, ``pd.NA``, ``NaT`` or a float NaN."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


@dataclass(frozen=True)
class TableSchema:
    """The columns of a cohort table, in order, and which hold text or integers (the
    others hold floats)."""

    columns: tuple[str, ...]
    text: frozenset[str] = frozenset()
    integer: frozenset[str] = frozenset()

    def cell(self, column: str, value: Any) -> Any:
        """``value`` as stored in ``column``: a one-line ``str`` or ``None`` (empty text is
        missing), an ``int`` or ``None``, a ``float`` (``NaN`` when missing)."""
        if isinstance(value, np.generic):
            value = value.item()
        if column in self.text:
            if is_missing(value):
                return None
            s = one_line(str(value))
            return s if s else None
        if is_missing(value) or isinstance(value, str) and not value.strip():
            return None if column in self.integer else math.nan
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None if column in self.integer else math.nan
        if column in self.integer:
            return int(round(number)) if math.isfinite(number) else None
        return number

    def row(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A row with exactly these columns (missing ones empty), each value a :meth:`cell`."""
        return {c: self.cell(c, values.get(c)) for c in self.columns}

    def normalise(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with exactly these columns and their dtypes (see the module documentation)."""
        df = df.reindex(columns=list(self.columns))
        data: dict[str, Any] = {}
        for c in self.columns:
            cells = [self.cell(c, v) for v in df[c].tolist()]
            if c in self.text:
                data[c] = pd.array(cells, dtype=TEXT_DTYPE)
            elif c in self.integer:
                data[c] = pd.array(cells, dtype=INTEGER_DTYPE)
            else:
                data[c] = np.asarray(cells, dtype=np.float64)
        return pd.DataFrame(data, columns=list(self.columns))

    def frame(self, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """A table of these columns from row dicts."""
        return self.normalise(pd.DataFrame([self.row(r) for r in rows], columns=list(self.columns)))


def _template(kind: str, include_identifiers: bool) -> Analysis:
    names = CEPH_LANDMARKS if kind == "ceph" else SPINE_LANDMARKS
    n = len(names)
    pred = Prediction(names, np.zeros((n, 2)), np.ones(n), (1, 1), None, "", "")
    ids = dict.fromkeys(IDENTIFIER_FIELDS, "") if include_identifiers else {}
    return Analysis(kind=kind, image="", pseudonym="", prediction=pred, identifiers=ids)


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@lru_cache(maxsize=8)
def row_schema(kind: str, include_identifiers: bool = False) -> TableSchema:
    """The schema of a cohort row: :meth:`Analysis.to_row`'s keys (with every ``dicom_*``
    column when ``include_identifiers``); the ceph ``*_type`` columns hold type numbers."""
    row = _template(check_kind(kind), include_identifiers).to_row()
    text = frozenset(k for k, v in row.items() if isinstance(v, str))
    integer = frozenset(k for k, v in row.items() if _is_integer(v) or (kind == "ceph" and k.endswith("_type")))
    return TableSchema(tuple(row), text, integer)


@lru_cache(maxsize=8)
def landmark_schema(kind: str) -> TableSchema:
    """The schema of the long landmark table (:meth:`Analysis.landmarks_dataframe`)."""
    df = _template(check_kind(kind), False).landmarks_dataframe()
    text = frozenset(str(c) for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]))
    integer = frozenset(str(c) for c in df.columns if pd.api.types.is_integer_dtype(df[c]))
    return TableSchema(tuple(str(c) for c in df.columns), text, integer)


def row_columns(kind: str, include_identifiers: bool = False) -> tuple[tuple[str, ...], frozenset[str]]:
    """The columns of a cohort row and the subset holding text (see :func:`row_schema`)."""
    schema = row_schema(kind, include_identifiers)
    return schema.columns, schema.text


def landmark_columns(kind: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The columns of the long landmark table and the subset holding text (see
    :func:`landmark_schema`)."""
    schema = landmark_schema(kind)
    return schema.columns, schema.text


def schema_of(columns: Sequence[str], text: Iterable[str] = (), integer: Iterable[str] = ()) -> TableSchema:
    """A :class:`TableSchema` from column names and the names of its text and integer columns."""
    return TableSchema(tuple(columns), frozenset(text), frozenset(integer))
