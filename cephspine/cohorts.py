"""``cohort()``: analyse a folder (or list) of radiographs into one table, one row per image.

::

    import cephspine
    df = cephspine.cohort("scans/", kind="ceph", out="results.csv", landmarks_out="landmarks.csv")
    df.groupby("anb_class")["anb_deg"].describe()
    df[df["status"] == "error"][["image", "error"]]

Every image gives exactly one row with the columns of :meth:`Analysis.to_row`. A bad image
(unreadable, corrupt, unsupported, or any other failure of that one image) gives a row with
``status="error"`` and a one-line ``error``; it never ends the run.

**Incremental output and resume.** With ``out`` (``.csv`` or ``.parquet``) each finished
image is written durably as soon as it is done. Running the same call again after an
interruption (Ctrl-C, a crash, a killed job) skips the images already in ``out`` and
processes only the rest, so the final table holds every image exactly once:

* CSV: one complete line per image, appended then flushed and ``fsync``-ed. On resume a
  trailing incomplete line (a write cut short by a kill) is truncated before appending.
* Parquet: each finished image is a separate part file in the hidden sidecar folder
  ``.<name>.parts/`` next to ``out``, each written to a temporary name and renamed into
  place (so a part is either complete or absent). At the end the previous table and the
  parts are consolidated into ``out`` through a temporary file and :func:`os.replace`, and
  the sidecar folder is removed.

Rows with ``status="error"`` are results too: a resumed run keeps them and does not retry
those images (delete the rows, or use another ``out``, to retry). ``landmarks_out`` (the
long table of :meth:`Analysis.landmarks_dataframe`, every ok image) follows the same rules;
an image's landmarks are written before its cohort row, so an image whose row is on disk
has its complete landmark block too, and an incomplete block left by a kill is removed on
resume (the image is then processed again).

**Privacy.** By default no DICOM patient identifier appears in any output: not in the
rows, the files, the progress bar or the log (error and warning texts are scrubbed of the
file's identifier values). With ``include_identifiers=True`` the ``dicom_*`` columns of
:data:`~cephspine.analysis.IDENTIFIER_FIELDS` are added.

Inputs are opened read-only and never modified. Only one image's pixels are in memory at a
time; the rows kept for the returned table are small dicts.

The per-image work (:func:`analyze_row` / :func:`analyze_image`) and the output handling
(:class:`CohortWriter`) are independent of the engine that schedules the images.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cephspine.analysis import IDENTIFIER_FIELDS, Analysis, analyze, check_kind, default_detector, read_identifiers
from cephspine.anatomy import CEPH_LANDMARKS, SPINE_LANDMARKS
from cephspine.prediction import Prediction
from cephspine.radiograph import as_spacing

if TYPE_CHECKING:
    from cephspine.detector import Detector

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "ray")

DEFAULT_LOCAL_WORKERS = min(2, os.cpu_count() or 1)
"""Threads of the ``"local"`` engine when ``workers`` is not given. Two threads analyse
3.3 ceph images/s on a 2-core CPU against 2.3 for one (``benchmarks/throughput.py``):
one image is decoded and measured while the network runs on another."""
"""Accepted values of ``cohort(engine=...)``."""

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".jp2", ".j2k", ".dcm", ".dicom"}
)
"""File suffixes (lower case) taken from a folder. Files without a suffix, or with a purely
numeric one (DICOM files named by UID, ``1.2.840.….7``), are taken too, since
:func:`~cephspine.load_image` recognises images by content."""

OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")

_SKIPPED_NAMES = frozenset({"DICOMDIR"})  # a DICOM media directory index, not an image


# ---------------------------------------------------------------------------- columns
def _template(kind: str, include_identifiers: bool) -> Analysis:
    names = CEPH_LANDMARKS if kind == "ceph" else SPINE_LANDMARKS
    n = len(names)
    pred = Prediction(names, np.zeros((n, 2)), np.ones(n), (1, 1), None, "", "")
    ids = dict.fromkeys(IDENTIFIER_FIELDS, "") if include_identifiers else {}
    return Analysis(kind=kind, image="", pseudonym="", prediction=pred, identifiers=ids)


@lru_cache(maxsize=8)
def row_columns(kind: str, include_identifiers: bool = False) -> tuple[tuple[str, ...], frozenset[str]]:
    """The columns of a cohort row (exactly :meth:`Analysis.to_row`'s keys, with every
    ``dicom_*`` column when ``include_identifiers``) and the subset holding text."""
    row = _template(check_kind(kind), include_identifiers).to_row()
    return tuple(row), frozenset(k for k, v in row.items() if isinstance(v, str))


@lru_cache(maxsize=8)
def landmark_columns(kind: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The columns of the long landmark table (:meth:`Analysis.landmarks_dataframe`) and
    the subset holding text."""
    df = _template(check_kind(kind), False).landmarks_dataframe()
    text = frozenset(str(c) for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]))
    return tuple(str(c) for c in df.columns), text


def _one_line(text: str) -> str:
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


def _cell(value: Any, text: bool) -> Any:
    """A value as stored: text on one line ("" for missing), numbers as Python scalars."""
    if isinstance(value, np.generic):
        value = value.item()
    if text:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return _one_line(str(value))
    if value is None or value == "":
        return math.nan
    return value


def _normalise(df: pd.DataFrame, columns: Sequence[str], text: frozenset[str]) -> pd.DataFrame:
    """Same columns and dtypes whether rows come from memory, CSV or Parquet."""
    df = df.reindex(columns=list(columns))
    for c in columns:
        if c in text:
            df[c] = df[c].map(lambda v: _cell(v, True)).astype(object)
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce")
            if df[c].dtype == object:  # no values at all
                df[c] = df[c].astype(np.float64)
    return df.reset_index(drop=True)


# ---------------------------------------------------------------------------- one image
@dataclass(frozen=True)
class ImageResult:
    """What one image gives: its cohort ``row`` and its ``landmarks`` (long-table rows;
    empty for an error row)."""

    row: dict[str, Any]
    landmarks: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return bool(self.row.get("status") == "ok")


def image_key(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """The ``image`` column of a file: its path relative to ``root`` (``/``-separated), or
    its file name when ``root`` is ``None``."""
    p = Path(path)
    if root is None:
        return p.name
    return p.relative_to(Path(root)).as_posix()


def _scrubber(path: Path, include_identifiers: bool) -> Any:
    """A function removing the file's DICOM identifier values from a text (identity when
    identifiers are wanted or the file has none)."""
    if include_identifiers:
        return lambda s: s
    values: set[str] = set()
    for value in read_identifiers(path).values():
        values.add(value)
        values.update(value.replace("^", " ").split())
        values.add(value.replace("^", " ").strip())
    secrets = sorted((v for v in values if len(v) >= 3), key=len, reverse=True)
    if not secrets:
        return lambda s: s

    def scrub(text: str) -> str:
        for v in secrets:
            text = text.replace(v, "<redacted>")
        return text

    return scrub


def analyze_image(
    path: str | os.PathLike[str],
    kind: str,
    detector: Detector,
    spacing: Any = None,
    include_identifiers: bool = False,
    root: str | os.PathLike[str] | None = None,
) -> ImageResult:
    """Analyse one image file into its cohort row and landmark rows. Never raises for a
    bad image: any exception from it becomes an error row.

    Args:
        path: the image file.
        kind: ``"ceph"`` or ``"spine"``.
        detector: a loaded detector for ``kind``.
        spacing: pixel spacing in mm overriding the file's (number or ``(row, col)``).
        include_identifiers: add the ``dicom_*`` columns (otherwise no identifier value
            appears in any text of the result).
        root: the cohort folder; the ``image`` column is the path relative to it (the
            file name when ``None``).

    Returns:
        An :class:`ImageResult`; ``row`` has exactly the columns of :func:`row_columns`,
        with warnings issued while analysing this image in ``warnings`` (not printed).
    """
    path = Path(path)
    key = image_key(path, root)
    columns, text = row_columns(kind, include_identifiers)
    analysis: Analysis | None = None
    failure: Exception | None = None
    with _captured_warnings() as caught:
        try:
            analysis = analyze(path, kind, detector=detector, spacing=spacing, include_identifiers=include_identifiers)
        except Exception as exc:  # one bad image never ends a cohort
            failure = exc
    messages: list[str] = list(analysis.warnings) if analysis is not None else []
    for m in caught:
        if m not in messages:
            messages.append(m)

    scrub: Any = None

    def tidy(s: str) -> str:
        nonlocal scrub
        if scrub is None:  # only read the file's identifiers when there is text to clean
            try:
                scrub = _scrubber(path, include_identifiers)
            except Exception:  # identifiers unreadable: keep no text that could hold one
                scrub = (lambda t: t) if include_identifiers else (lambda t: "<redacted>" if t else t)
        if key != path.name and s.startswith(f"{path.name}:"):  # name the image as its row does
            s = key + s[len(path.name) :]
        return str(scrub(_one_line(s.replace(str(path), key))))

    row: dict[str, Any] = {}
    landmarks: list[dict[str, Any]] = []
    if analysis is not None:
        try:
            full = analysis.to_row()
            row = {c: _cell(full.get(c, "" if c in text else math.nan), c in text) for c in columns}
            row["image"] = key
            lm = analysis.landmarks_dataframe()
            lm["image"] = key
            lm_cols, lm_text = landmark_columns(kind)
            landmarks = [{c: _cell(r.get(c), c in lm_text) for c in lm_cols} for r in lm.to_dict("records")]
        except Exception as exc:
            analysis, failure, landmarks = None, exc, []
    if analysis is None:
        row = _error_row(kind, include_identifiers, key, tidy(f"{type(failure).__name__}: {failure}"))
    cleaned = [tidy(m) for m in messages]
    row["warnings"] = " | ".join(cleaned)
    row["n_warnings"] = len(cleaned) if (cleaned or analysis is not None) else math.nan
    return ImageResult(row, landmarks)


def _error_row(kind: str, include_identifiers: bool, key: str, error: str) -> dict[str, Any]:
    """The cohort row of an image that could not be analysed: empty cells, ``status="error"``."""
    columns, text = row_columns(kind, include_identifiers)
    row: dict[str, Any] = {c: ("" if c in text else math.nan) for c in columns}
    row.update(image=key, kind=kind, status="error", error=error)
    return row


def analyze_row(
    path: str | os.PathLike[str],
    kind: str,
    detector: Detector,
    spacing: Any = None,
    include_identifiers: bool = False,
    root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The cohort row of one image (:func:`analyze_image` without the landmarks).
    Never raises for a bad image."""
    return analyze_image(path, kind, detector, spacing, include_identifiers, root).row


# ---------------------------------------------------------------------------- inputs
def _is_candidate(p: Path) -> bool:
    if p.name.startswith(".") or p.name in _SKIPPED_NAMES:
        return False
    suffix = p.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix == "" or suffix[1:].isdigit()


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """The candidate image files of a folder in a deterministic (sorted) order; hidden
    files and folders are skipped. See :data:`IMAGE_SUFFIXES`."""
    root = Path(folder)
    found: list[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(Path(dirpath) / f for f in filenames)
    else:
        found = list(root.iterdir())
    files = [p for p in found if _is_candidate(p) and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).parts)


def _collect(images: Any, recursive: bool) -> tuple[list[Path], Path | None]:
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            return list_images(p, recursive), p
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such folder or file")
        return [p], None
    if not isinstance(images, Iterable):
        raise TypeError(f"images must be a folder or an iterable of paths, got {type(images).__name__}")
    paths: list[Path] = []
    seen: set[Path] = set()
    names: dict[str, Path] = {}
    for item in images:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"images must hold file paths, got {type(item).__name__}")
        p = Path(item)
        ident = Path(os.path.abspath(p))
        if ident in seen:
            continue
        seen.add(ident)
        if p.name in names:
            raise ValueError(
                f"two images named {p.name!r} ({names[p.name]} and {p}); rows are keyed by file name, "
                "so pass their common folder (recursive=True) instead of a list"
            )
        names[p.name] = p
        paths.append(p)
    return paths, None


# ---------------------------------------------------------------------------- output
def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _lock(fh: IO[Any], path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise OSError(f"{path}: in use by another cohort run (one run per output file)") from None


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("writing .parquet needs pyarrow: pip install 'cephspine[parquet]' (or write .csv)") from None
    return pa, pq


class CohortWriter:
    """An append-only, resumable results table (``.csv`` or ``.parquet``) keyed by image.

    Args:
        path: the table file; its suffix chooses the format.
        columns: the columns, in order (an existing table must have exactly these).
        text_columns: the columns holding text (the others are numeric).
        key: the column naming the image.
        rows_per_image: rows each image contributes (1 for the cohort table, the number of
            landmarks for the landmark table); images with another count in an existing
            CSV (a block cut short by a kill) are removed on opening.

    Raises:
        ValueError: unknown suffix, or an existing table with other columns.
        ImportError: ``.parquet`` without pyarrow (install ``cephspine[parquet]``).
        OSError: the table is being written by another run.

    Use :meth:`done` for the images already written, :meth:`write` (one row) or
    :meth:`write_rows` (one image's rows, together) as images finish, then :meth:`close`
    and :meth:`read`. Each write is durable when it returns.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str],
        text_columns: Iterable[str] = (),
        *,
        key: str = "image",
        rows_per_image: int = 1,
    ) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self.text_columns = frozenset(text_columns)
        self.key = key
        self.rows_per_image = rows_per_image
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"{self.path}: output must end in {' or '.join(OUTPUT_SUFFIXES)}")
        if key not in self.columns:
            raise ValueError(f"key column {key!r} is not among the columns")
        self.format = suffix[1:]
        self._status: dict[str, str] = {}
        self._fh: IO[bytes] | None = None
        self._lock_fh: IO[Any] | None = None
        self._closed = False
        if self.format == "parquet":
            _pyarrow()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.format == "csv":
                self._open_csv()
            else:
                self._open_parquet()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ public
    def done(self) -> set[str]:
        """The images already written (complete)."""
        return set(self._status)

    def status(self, image: str) -> str:
        """The ``status`` of an image's row (``""`` when absent or the table has none)."""
        return self._status.get(image, "")

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row durably."""
        self.write_rows([row])

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append the rows of one image durably, as one unit."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if not rows:
            return
        cells = [[_cell(r.get(c), c in self.text_columns) for c in self.columns] for r in rows]
        if self.format == "csv":
            self._append_csv(cells)
        else:
            self._append_part(cells)
        status_i = self.columns.index("status") if "status" in self.columns else None
        key_i = self.columns.index(self.key)
        for r in cells:
            self._status.setdefault(str(r[key_i]), str(r[status_i]) if status_i is not None else "")

    def close(self) -> None:
        """Finish the table (Parquet: consolidate the parts into ``path``) and release it."""
        if self._closed:
            return
        if self.format == "parquet":
            self._consolidate()
        self._release()

    def abort(self) -> None:
        """Release the table without finishing it; what was written stays for a resume."""
        if not self._closed:
            self._release()

    def read(self) -> pd.DataFrame:
        """The whole table as written (each image once), with consistent dtypes."""
        if self.format == "csv":
            numeric = [c for c in self.columns if c not in self.text_columns]
            df = pd.read_csv(
                self.path,
                dtype=dict.fromkeys(self.text_columns, str),
                keep_default_na=False,
                na_values=dict.fromkeys(numeric, ["", "nan", "NaN"]),
                encoding="utf-8",
            )
        elif self.path.exists():
            df = pd.read_parquet(self.path)
        else:
            df = self._read_parts()
        df = _normalise(df, self.columns, self.text_columns)
        if self.rows_per_image == 1:
            df = df.drop_duplicates(subset=[self.key], keep="first").reset_index(drop=True)
        return df

    def __enter__(self) -> CohortWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _release(self) -> None:
        for fh in (self._fh, self._lock_fh):
            if fh is not None:
                fh.close()
        self._fh = self._lock_fh = None
        self._closed = True

    # ------------------------------------------------------------------ csv
    def _csv_line(self, cells: Sequence[Sequence[Any]]) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for r in cells:
            writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in r])
        return buf.getvalue().encode("utf-8")

    def _open_csv(self) -> None:
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the whole run
        _lock(fh, self.path)
        self._fh = fh
        self._truncate_partial_line()
        if os.fstat(fh.fileno()).st_size == 0:
            self._append_bytes(self._csv_line([self.columns]))
            return
        keep = self._scan_csv()
        if keep is not None:
            self._rewrite_csv(keep)

    def _truncate_partial_line(self) -> None:
        assert self._fh is not None
        fd = self._fh.fileno()
        size = os.fstat(fd).st_size
        if size == 0:
            return
        self._fh.seek(size - 1)
        if self._fh.read(1) == b"\n":
            return
        pos, cut = size, 0
        while pos > 0:  # find the last newline, reading backwards in blocks
            start = max(0, pos - 65536)
            self._fh.seek(start)
            block = self._fh.read(pos - start)
            i = block.rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            pos = start
        log.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run", self.path, size - cut)
        self._fh.truncate(cut)
        self._fh.flush()
        os.fsync(fd)

    def _scan_csv(self) -> set[int] | None:
        """Read keys and statuses of an existing CSV; return the data line numbers to keep
        when some must go (malformed lines, duplicates, incomplete blocks), else ``None``."""
        status_i = self.columns.index("status") if "status" in self.columns else None
        key_i = self.columns.index(self.key)
        lines_of: dict[str, list[int]] = {}
        bad = 0
        with open(self.path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(header) != self.columns:
                raise ValueError(
                    f"{self.path}: existing table has other columns than this run writes (another kind, "
                    "include_identifiers setting or software version?); write to another file or remove it"
                )
            for i, rec in enumerate(reader):
                if len(rec) != len(self.columns) or not rec[key_i]:
                    bad += 1
                    continue
                lines_of.setdefault(rec[key_i], []).append(i)
                if rec[key_i] not in self._status:
                    self._status[rec[key_i]] = rec[status_i] if status_i is not None else ""
        keep: set[int] = set()
        dropped: list[str] = []
        for k, lines in lines_of.items():
            if self.rows_per_image == 1:
                keep.add(lines[0])
                bad += len(lines) - 1
            elif len(lines) == self.rows_per_image:
                keep.update(lines)
            else:
                dropped.append(k)
                bad += len(lines)
        for k in dropped:
            del self._status[k]
        if not bad:
            return None
        log.warning("%s: removing %d malformed, duplicate or incomplete line(s)", self.path, bad)
        return keep

    def _rewrite_csv(self, keep: set[int]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(self.path, encoding="utf-8", newline="") as src, open(tmp, "wb") as dst:
            reader = csv.reader(src)
            dst.write(self._csv_line([next(reader)]))
            for i, rec in enumerate(reader):
                if i in keep:
                    dst.write(self._csv_line([rec]))
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        assert self._fh is not None
        self._fh.close()
        self._fh = open(self.path, "a+b")  # noqa: SIM115
        _lock(self._fh, self.path)

    def _append_bytes(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _append_csv(self, cells: Sequence[Sequence[Any]]) -> None:
        self._append_bytes(self._csv_line(cells))

    # ------------------------------------------------------------------ parquet
    @property
    def parts_dir(self) -> Path:
        """Parquet: the hidden folder holding the parts written so far."""
        return self.path.with_name(f".{self.path.name}.parts")

    def _part_files(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def _open_parquet(self) -> None:
        _, pq = _pyarrow()
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.parts_dir / "lock", "a")  # noqa: SIM115
        _lock(self._lock_fh, self.path)
        for tmp in self.parts_dir.glob("*.tmp"):  # a part whose write was interrupted
            tmp.unlink()
        wanted = [self.key] + (["status"] if "status" in self.columns else [])
        sources: list[Path] = [self.path] if self.path.exists() else []
        for src in sources + self._part_files():
            try:
                names = tuple(pq.read_schema(src).names)
                table = pq.read_table(src, columns=wanted).to_pydict() if names == self.columns else None
            except Exception as exc:
                if src == self.path:
                    raise ValueError(f"{self.path}: not a readable Parquet table ({exc})") from None
                log.warning("%s: dropping an unreadable part (%s)", src, exc)
                src.unlink()
                continue
            if table is None:
                raise ValueError(
                    f"{src}: existing table has other columns than this run writes (another kind, "
                    "include_identifiers setting or software version?); write to another file or remove it"
                )
            statuses = table.get("status", [""] * len(table[self.key]))
            for k, s in zip(table[self.key], statuses):
                self._status.setdefault(str(k), str(s or ""))
        parts = self._part_files()
        self._next_part = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0

    def _append_part(self, cells: Sequence[Sequence[Any]]) -> None:
        pa, pq = _pyarrow()
        df = _normalise(pd.DataFrame(list(cells), columns=list(self.columns)), self.columns, self.text_columns)
        part = self.parts_dir / f"part-{self._next_part:08d}.parquet"
        tmp = part.with_name(part.name + ".tmp")
        with open(tmp, "wb") as fh:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, part)
        _fsync_dir(self.parts_dir)
        self._next_part += 1

    def _read_parts(self) -> pd.DataFrame:
        frames = [pd.read_parquet(p) for p in self._part_files()]
        if not frames:
            return pd.DataFrame(columns=list(self.columns))
        return pd.concat([_normalise(f, self.columns, self.text_columns) for f in frames], ignore_index=True)

    def _consolidate(self) -> None:
        pa, pq = _pyarrow()
        parts = self._part_files()
        if self.path.exists() and not parts:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            return
        old = _normalise(pd.read_parquet(self.path), self.columns, self.text_columns) if self.path.exists() else None
        new = self._read_parts()
        if old is not None:
            new = new[~new[self.key].isin(set(old[self.key]))]  # already consolidated before
            df = pd.concat([old, new], ignore_index=True) if len(new) else old
        else:
            df = new
        df = _normalise(df, self.columns, self.text_columns)
        schema = pa.schema(
            [(c, pa.string() if c in self.text_columns else pa.from_numpy_dtype(df[c].dtype)) for c in self.columns]
        )
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as fh:
            pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        shutil.rmtree(self.parts_dir, ignore_errors=True)


# ---------------------------------------------------------------------------- warnings
_THREAD = threading.local()


@contextlib.contextmanager
def _captured_warnings() -> Iterator[list[str]]:
    """Collect the messages of the warnings issued inside the block (not shown).

    Under :func:`_warning_router` (several images analysed by threads at once) each thread
    collects its own warnings; otherwise :func:`warnings.catch_warnings` is used.
    """
    if getattr(_THREAD, "routed", False):
        sink: list[str] = []
        _THREAD.sink = sink
        try:
            yield sink
        finally:
            _THREAD.sink = None
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out: list[str] = []
        yield out
    out.extend(str(w.message) for w in caught)


@contextlib.contextmanager
def _warning_router() -> Iterator[None]:
    """Route every warning to the list of the thread that issued it, for the duration of
    a multi-threaded run (``warnings.catch_warnings`` is not thread-safe)."""

    def show(message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None) -> None:
        sink = getattr(_THREAD, "sink", None)
        if sink is not None:
            sink.append(str(message))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def _routed_call(fn: Any, *args: Any) -> Any:
    _THREAD.routed = True
    try:
        return fn(*args)
    finally:
        _THREAD.routed = False


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------- engines
Task = tuple[Path, str, bool, bool]
"""(path, image key, row wanted, landmarks wanted)."""


def _run_local(
    todo: Sequence[Task], kind: str, det: Detector, spacing: Any, include_identifiers: bool, root: Path | None,
    workers: int,
) -> Iterator[tuple[Task, ImageResult]]:  # fmt: skip
    """Analyse ``todo`` in this process, in order; with ``workers > 1`` that many images
    are analysed at once by threads sharing the one model (each with its share of the
    CPU's torch threads), at most ``2 × workers`` images in flight."""
    if workers <= 1:
        for task in todo:
            yield task, analyze_image(task[0], kind, det, spacing, include_identifiers, root)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    per_worker = max(1, (os.cpu_count() or 1) // workers)
    with _warning_router(), _torch_threads(per_worker), ThreadPoolExecutor(workers, "cephspine-cohort") as pool:
        pending: deque[tuple[Task, Any]] = deque()
        for task in todo:
            args = (analyze_image, task[0], kind, det, spacing, include_identifiers, root)
            pending.append((task, pool.submit(_routed_call, *args)))
            if len(pending) >= 2 * workers:
                t, fut = pending.popleft()
                yield t, fut.result()
        while pending:
            t, fut = pending.popleft()
            yield t, fut.result()


ModelRef = tuple[str, dict[str, Any]]
"""What Ray actors load: a model name or directory and the options of
:meth:`~cephspine.Detector.from_pretrained`."""


class _RayWorker:
    """One Ray actor: a detector loaded once, analysing one image per call."""

    def __init__(self, kind: str, model: str, device: str, threads: int, options: dict[str, Any]) -> None:
        import torch

        from cephspine.detector import Detector

        torch.set_num_threads(threads)
        self.kind = kind
        self.detector = Detector.from_pretrained(model, device=device, **options)

    def run(
        self, path: str, spacing: Any, include_identifiers: bool, root: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        r = analyze_image(path, self.kind, self.detector, spacing, include_identifiers, root)
        return r.row, r.landmarks


_RAY_POOLS: dict[tuple[Any, ...], list[Any]] = {}


def _ray_pool(
    kind: str, model: ModelRef, device: str, workers: int | None, address: str | None
) -> list[Any]:  # fmt: skip
    """Ray actors for ``(kind, model)``, started once per process and reused."""
    try:
        import ray
    except ImportError:
        raise ImportError("engine='ray' needs Ray: pip install 'cephspine[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    path, options = model
    key = (kind, path, tuple(sorted(options.items())), device, n, address)
    if key not in _RAY_POOLS:
        actor = ray.remote(num_cpus=1, max_restarts=1)(_RayWorker)
        _RAY_POOLS[key] = [actor.remote(kind, path, device, 1, options) for _ in range(n)]
    return _RAY_POOLS[key]


def _run_ray(
    todo: Sequence[Task], kind: str, model: ModelRef, spacing: Any, include_identifiers: bool, root: Path | None,
    workers: int | None, address: str | None, device: str,
) -> Iterator[tuple[Task, ImageResult]]:  # fmt: skip
    """Analyse ``todo`` on Ray actors (one model each), yielding results as they finish;
    each actor has at most two images queued. A worker that dies turns its image into an
    error row."""
    import ray

    actors = _ray_pool(kind, model, device, workers, address)
    queue = list(reversed(todo))
    running: dict[Any, tuple[Task, int]] = {}
    load = [0] * len(actors)
    root_s = str(root) if root is not None else None

    def submit(i: int) -> None:
        task = queue.pop()
        ref = actors[i].run.remote(str(task[0]), spacing, include_identifiers, root_s)
        running[ref] = (task, i)
        load[i] += 1

    for i in range(len(actors)):
        for _ in range(2):
            if queue:
                submit(i)
    while running:
        done, _ = ray.wait(list(running), num_returns=1)
        task, i = running.pop(done[0])
        load[i] -= 1
        try:
            row, landmarks = ray.get(done[0])
            result = ImageResult(row, landmarks)
        except Exception as exc:  # the worker died (e.g. out of memory): an error row
            message = _one_line(str(exc)).replace(str(task[0]), task[1])[:500]
            result = ImageResult(_error_row(kind, include_identifiers, task[1], f"{type(exc).__name__}: {message}"), [])
        if queue:
            submit(i)
        yield task, result


# ---------------------------------------------------------------------------- cohort
def _check_detector(kind: str, det: Any) -> None:
    want = len(CEPH_LANDMARKS) if kind == "ceph" else len(SPINE_LANDMARKS)
    if len(det.names) != want:
        raise ValueError(f"kind={kind!r} needs a {kind} detector; got {det!r}")


def _model_ref(kind: str, model: str | os.PathLike[str] | None, detector: Detector | None) -> ModelRef:
    """``model``, the given detector's directory and load options, or the shipped model."""
    if model is not None:
        return str(model), {}
    if detector is not None:
        if detector.directory is None:
            raise ValueError("engine='ray' needs a detector loaded from a directory (or give model=)")
        return str(detector.directory), dict(detector.load_options)
    return kind, {}


def _output_path(value: str | os.PathLike[str] | None, what: str) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"{what} must end in .csv or .parquet, got {p}")
    return p


def cohort(
    images: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    kind: str = "ceph",
    *,
    out: str | os.PathLike[str] | None = None,
    landmarks_out: str | os.PathLike[str] | None = None,
    detector: Detector | None = None,
    spacing: Any = None,
    include_identifiers: bool = False,
    progress: bool = True,
    recursive: bool = False,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """Analyse many radiographs into one table, one row per image.

    Args:
        images: a folder (its image files, sorted; see :data:`IMAGE_SUFFIXES`), or an
            iterable of file paths (distinct file names).
        kind: ``"ceph"`` or ``"spine"``.
        out: ``.csv`` or ``.parquet`` file written as images finish; a re-run resumes
            (see the module documentation).
        landmarks_out: ``.csv`` or ``.parquet`` file for the long landmark table of the
            ok images, written and resumed in the same way.
        detector: a loaded :class:`~cephspine.Detector` (default: the shipped model of
            ``kind``, loaded once).
        spacing: pixel spacing in mm for every image, overriding the files' (number or
            ``(row_mm, col_mm)``).
        include_identifiers: add the DICOM patient identifiers as ``dicom_*`` columns.
            Off by default: no identifier appears in any output.
        progress: show a progress bar on stderr (when it is a terminal).
        recursive: include the sub-folders of a folder.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray actors, one model each, on
            the cluster at ``address`` or on a local Ray started for the purpose; needs
            ``cephspine[ray]``; the image paths must be readable by the workers).
        workers: ``"local"``: images analysed at once by threads sharing the model
            (default :data:`DEFAULT_LOCAL_WORKERS`: 2 on a machine with 2 or more CPUs,
            where decoding one image overlaps the network on another); ``"ray"``: number
            of actors (default: one per CPU of the cluster).
        address: ``"ray"``: the cluster address (default: start or reuse a local Ray).
        model: model name or directory (default: ``detector``'s directory, else the
            shipped model of ``kind``); for ``"ray"``, each actor loads it.
        device: device of the default or ``model`` detector (``"auto"``, ``"cpu"``, ...).

    Returns:
        The table (columns of :meth:`Analysis.to_row`): previous rows of ``out`` and the
        new ones, each image once, in input order (rows of ``out`` for images not among
        ``images`` come last). ``status`` is ``"ok"`` or ``"error"`` with the reason in
        ``error``; warnings about an image are in its ``warnings`` column.

    Raises:
        ValueError: unknown ``engine`` or ``kind``, a detector for another kind, a bad
            output suffix, or an existing ``out`` with other columns.
        SpacingError: ``spacing`` is not a positive number or pair.
        ImportError: a ``.parquet`` output without pyarrow (``cephspine[parquet]``).
        FileNotFoundError: ``images`` does not exist.
        OSError: ``out`` or ``landmarks_out`` is being written by another run.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(repr(e) for e in ENGINES)}; got {engine!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if engine == "local" and address is not None:
        raise ValueError("address is an option of engine='ray'")
    check_kind(kind)
    as_spacing(spacing)
    out_path = _output_path(out, "out")
    lm_path = _output_path(landmarks_out, "landmarks_out")
    if out_path is not None and lm_path is not None and os.path.abspath(out_path) == os.path.abspath(lm_path):
        raise ValueError("out and landmarks_out must be different files")
    if detector is not None:
        _check_detector(kind, detector)
    paths, root = _collect(images, recursive)
    columns, text = row_columns(kind, include_identifiers)
    lm_columns, lm_text = landmark_columns(kind)

    writers: list[CohortWriter] = []
    try:
        writer = CohortWriter(out_path, columns, text) if out_path is not None else None
        if writer is not None:
            writers.append(writer)
        n_landmarks = len(CEPH_LANDMARKS) if kind == "ceph" else len(SPINE_LANDMARKS)
        lm_writer = (
            CohortWriter(lm_path, lm_columns, lm_text, rows_per_image=n_landmarks) if lm_path is not None else None
        )
        if lm_writer is not None:
            writers.append(lm_writer)
        rows_done = writer.done() if writer is not None else set()
        lm_done = lm_writer.done() if lm_writer is not None else set()

        keys = [image_key(p, root) for p in paths]
        todo: list[tuple[Path, str, bool, bool]] = []
        for p, k in zip(paths, keys):
            need_row = k not in rows_done
            need_lm = (
                lm_writer is not None and k not in lm_done and (need_row or writer is None or writer.status(k) == "ok")
            )
            if need_row or need_lm:
                todo.append((p, k, need_row, need_lm))
        log.info(
            "cohort: %d image(s), %d already in the output, %d to analyse",
            len(paths),
            len(paths) - len(todo),
            len(todo),
        )
        if engine == "ray":
            results = _run_ray(
                todo, kind, _model_ref(kind, model, detector), spacing, include_identifiers, root, workers, address,
                device,
            )  # fmt: skip
        else:
            det = detector
            if det is None and todo:
                if model is not None:
                    from cephspine.detector import Detector

                    det = Detector.from_pretrained(model, device=device)
                else:
                    det = default_detector(kind, device)
            if det is not None:
                _check_detector(kind, det)
            local_workers = workers or DEFAULT_LOCAL_WORKERS
            results = _run_local(todo, kind, det, spacing, include_identifiers, root, local_workers)  # type: ignore[arg-type]

        new_rows: list[dict[str, Any]] = []
        n_errors = 0
        from tqdm import tqdm

        with tqdm(
            total=len(todo), desc=f"cohort {kind}", unit="image", disable=None if progress else True, file=sys.stderr
        ) as bar:
            for (_p, _k, need_row, need_lm), result in results:
                if lm_writer is not None and need_lm and result.landmarks:
                    lm_writer.write_rows(result.landmarks)
                if writer is not None and need_row:
                    writer.write(result.row)
                if need_row:
                    new_rows.append(result.row)
                    n_errors += not result.ok
                bar.set_postfix(errors=n_errors, refresh=False)
                bar.update()
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    log.info("cohort: %d analysed, %d error row(s)", len(new_rows), n_errors)

    df = (
        writer.read()
        if writer is not None
        else _normalise(pd.DataFrame(new_rows, columns=list(columns)), columns, text)
    )
    order = {k: i for i, k in enumerate(keys)}
    rank = df["image"].map(lambda k: order.get(k, len(order)))
    return df.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


__all__ = [
    "ENGINES",
    "IMAGE_SUFFIXES",
    "CohortWriter",
    "ImageResult",
    "analyze_image",
    "analyze_row",
    "cohort",
    "image_key",
    "landmark_columns",
    "list_images",
    "row_columns",
]
