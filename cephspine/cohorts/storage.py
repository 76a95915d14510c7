"""Durable, resumable cohort tables (``.csv`` or ``.parquet``) and their settings record.

* CSV: one complete line per row, an image's rows appended together, then ``fsync``-ed.
  Text cells that a spreadsheet would evaluate as a formula are written with a leading
  apostrophe and read back without it (:mod:`cephspine._csvcells`). On resume a trailing
  incomplete line (a write cut short by a kill) is truncated before appending.
* Parquet: the rows are journalled in the hidden sidecar folder ``.<name>.parts/`` next
  to the table, in ``rows.jsonl``: a header line naming the columns, then one JSON line
  per image holding its rows, appended and ``fsync``-ed like a CSV line (so an image is
  in it completely or, after a kill, as a last incomplete line that is truncated on
  resume). A journal line takes about as many bytes as the CSV line of the row, not a
  Parquet file per image. At the end the previous table and the journal are consolidated
  into the table through a temporary file and :func:`os.replace`, and the sidecar folder
  is removed. Part files (``part-*.parquet``) left there by an interrupted run of an
  earlier version are read and consolidated too.
* Settings: ``<name>.settings.json`` next to the table records the settings its rows were
  made with (:func:`~cephspine.cohorts.settings.cohort_settings`). A table that has rows
  is resumed only with the same settings; otherwise :class:`CohortSettingsError`.
* Failures: an ``OSError`` while writing (a full disk, no permission) is an
  :class:`OutputError` naming the file and the cause. An append that fails is cut back
  off the file at once, and a temporary file of a failed rewrite, consolidation or
  settings record is removed (one left by a killed run is removed when the table is next
  opened), so a failed run leaves only what a resume reads.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

from cephspine._atomic import fsync_dir, output_error, write_atomic
from cephspine._csvcells import escape_cell, unescape_cell, unescape_frame
from cephspine.cohorts.columns import TableSchema
from cephspine.cohorts.settings import format_change, merged_settings, new_spacings, settings_changes
from cephspine.errors import CohortSettingsError, InvalidArgumentError, MissingDependencyError, OutputError

log = logging.getLogger("cephspine.cohorts")

OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
"""Accepted suffixes of cohort tables."""

SETTINGS_SUFFIX = ".settings.json"
"""Suffix added to a table's file name for its settings record."""

JOURNAL_NAME = "rows.jsonl"
"""Parquet: the journal of the rows written so far, in the table's sidecar folder."""

_JOURNAL_FORMAT = "cephspine_cohort_journal"
_TABLE = "cohort table"
_SETTINGS = "cohort settings record"


def settings_path(table: str | os.PathLike[str]) -> Path:
    """The settings record of a table: ``results.csv`` → ``results.csv.settings.json``."""
    p = Path(table)
    return p.with_name(p.name + SETTINGS_SUFFIX)


def read_settings(table: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings recorded for a table (``None`` when there is no record).

    Raises:
        CohortSettingsError: the record exists but cannot be read.
    """
    path = settings_path(table)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CohortSettingsError(f"{path}: unreadable settings record ({exc})") from None
    settings = data.get("settings") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        raise CohortSettingsError(f"{path}: not a cohort settings record")
    return settings


def _output_error(exc: OSError, path: Path, what: str = _TABLE) -> OutputError:
    """``exc`` as the :class:`OutputError` naming ``path`` (an ``OutputError`` as it is)."""
    if isinstance(exc, OutputError):
        return exc
    return output_error(path, what, exc.strerror or str(exc), exc.errno)


def _append(fh: IO[bytes], data: bytes, path: Path) -> None:
    """Append ``data`` to ``fh`` (unbuffered, opened for appending) and flush it to disk.
    When that fails (a full disk), the file is cut back to its size before, so that no
    part of ``data`` stays, and an :class:`OutputError` naming ``path`` is raised."""
    fd = fh.fileno()
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise _output_error(exc, path) from exc


def _truncate_partial_line(fh: IO[bytes], path: Path) -> None:
    """Cut off a last line without its newline (a write cut short by a kill)."""
    fd = fh.fileno()
    size = os.fstat(fd).st_size
    if size == 0:
        return
    fh.seek(size - 1)
    if fh.read(1) == b"\n":
        return
    pos, cut = size, 0
    while pos > 0:  # find the last newline, reading backwards in blocks
        start = max(0, pos - 65536)
        fh.seek(start)
        block = fh.read(pos - start)
        i = block.rfind(b"\n")
        if i >= 0:
            cut = start + i + 1
            break
        pos = start
    log.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run", path, size - cut)
    os.ftruncate(fd, cut)
    os.fsync(fd)


def _remove_stale_temporaries(table: Path) -> None:
    """Remove the temporary files of ``table`` and of its settings record left beside it by
    a killed run (called with the table locked, so no other run is writing them)."""
    name = re.compile(rf"\.{re.escape(table.name)}(?:{re.escape(SETTINGS_SUFFIX)})?(?:\.[0-9a-f]{{12}})?\.tmp")
    with contextlib.suppress(OSError):
        for p in table.parent.iterdir():
            if name.fullmatch(p.name):
                with contextlib.suppress(OSError):
                    p.unlink()


def _json_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _lock(fh: IO[Any], path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise OutputError(f"{path}: in use by another cohort run (one run per output file)") from None


def pyarrow_modules() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``.

    Raises:
        MissingDependencyError: pyarrow is not installed.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(
            "writing .parquet needs pyarrow: pip install 'cephspine[parquet]' (or write .csv)"
        ) from None
    return pa, pq


def _other_columns(path: Path) -> CohortSettingsError:
    return CohortSettingsError(
        f"{path}: existing table has other columns than this run writes (another kind, "
        "include_identifiers setting or software version?); write to another file or remove it"
    )


class CohortWriter:
    """An append-only, resumable results table (``.csv`` or ``.parquet``) keyed by image.

    Args:
        path: the table file; its suffix chooses the format.
        columns: the columns, in order (an existing table must have exactly these).
        text_columns: the columns holding text.
        integer_columns: the columns holding integers (the others hold floats).
        key: the column naming the image.
        rows_per_image: rows each image contributes (1 for the cohort table, the number of
            landmarks for the landmark table); images with another count in an existing
            CSV (a block cut short by a kill) are removed on opening.
        settings: the settings the rows are made with (JSON-ready). When given, they are
            recorded next to the table (:func:`settings_path`) before any row is written,
            and a table that already has rows must have been made with the same settings.

    Raises:
        InvalidArgumentError: unknown suffix, or ``key`` is not a column.
        CohortSettingsError: an existing table with other columns, or with rows made with
            other settings (or without a settings record) than ``settings``.
        MissingDependencyError: ``.parquet`` without pyarrow (``cephspine[parquet]``).
        OutputError: the table is being written by another run, is not a readable table,
            or cannot be written (the message names the file and the cause).

    Use :meth:`done` for the images already written, :meth:`write` (one row) or
    :meth:`write_rows` (one image's rows, together) as images finish, then :meth:`close`
    and :meth:`read`. Each write is durable when it returns; one that fails (a full disk)
    raises :class:`OutputError` and leaves the table as it was before it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str],
        text_columns: Iterable[str] = (),
        *,
        integer_columns: Iterable[str] = (),
        key: str = "image",
        rows_per_image: int = 1,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.schema = TableSchema(tuple(columns), frozenset(text_columns), frozenset(integer_columns))
        self.columns = self.schema.columns
        self.text_columns = self.schema.text
        self.key = key
        self.rows_per_image = rows_per_image
        self.settings = json.loads(json.dumps(dict(settings))) if settings is not None else None
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise InvalidArgumentError(f"{self.path}: output must end in {' or '.join(OUTPUT_SUFFIXES)}")
        if key not in self.columns:
            raise InvalidArgumentError(f"key column {key!r} is not among the columns")
        self.format = suffix[1:]
        self._status: dict[str, str] = {}
        self._fh: IO[bytes] | None = None
        self._lock_fh: IO[Any] | None = None
        self._closed = False
        self._resumed_from: dict[str, Any] | None = None
        if self.format == "parquet":
            pyarrow_modules()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.format == "csv":
                self._open_csv()
            else:
                self._open_parquet()
            self._record_additions()
        except BaseException as exc:
            self._release()
            if isinstance(exc, OSError):
                raise _output_error(exc, self.path) from exc
            raise

    # ------------------------------------------------------------------ public
    @property
    def settings_path(self) -> Path:
        """The settings record of this table."""
        return settings_path(self.path)

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
            raise OutputError(f"{self.path}: writer is closed")
        if not rows:
            return
        cells = [[self.schema.cell(c, r.get(c)) for c in self.columns] for r in rows]
        assert self._fh is not None
        data = self._csv_lines(cells) if self.format == "csv" else self._journal_line(cells)
        fd = self._fh.fileno()
        size = os.fstat(fd).st_size
        try:
            _append(self._fh, data, self.path)
        finally:
            # the rows are written once all their bytes are in the file, also when a Ctrl-C comes
            # after that (in the flush to disk), so that done() counts exactly the rows on disk
            if os.fstat(fd).st_size >= size + len(data):
                status_i = self.columns.index("status") if "status" in self.columns else None
                key_i = self.columns.index(self.key)
                for r in cells:
                    status = r[status_i] if status_i is not None else None
                    self._status.setdefault(str(r[key_i]), str(status or ""))

    def close(self) -> None:
        """Finish the table (Parquet: consolidate the journal into ``path``) and release it.

        Raises:
            OutputError: the consolidated table cannot be written (the journal stays, for
                a resumed run to consolidate).
        """
        if self._closed:
            return
        try:
            if self.format == "parquet":
                self._consolidate()
        finally:
            self._release()

    def abort(self) -> None:
        """Release the table without finishing it; what was written stays for a resume."""
        if not self._closed:
            self._release()

    def read(self) -> pd.DataFrame:
        """The whole table as written (each image once), with the dtypes of
        :mod:`cephspine.cohorts.columns`."""
        if self.format == "csv":
            df = pd.read_csv(self.path, dtype=str, keep_default_na=False, encoding="utf-8")
            df = unescape_frame(df, self.schema.text)
        elif self.path.exists():
            df = pd.read_parquet(self.path)
        else:
            df = self._read_parts()
        df = self.schema.normalise(df)
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

    # ------------------------------------------------------------------ settings
    def _has_rows(self) -> bool:
        if self.format == "csv":
            with open(self.path, "rb") as fh:
                fh.readline()  # the header
                return bool(fh.read(1))
        if self._part_files() or self._journal_has_rows():
            return True
        if not self.path.exists():
            return False
        _, pq = pyarrow_modules()
        try:
            return bool(pq.read_metadata(self.path).num_rows)
        except Exception:  # unreadable: not empty as far as we can tell
            return True

    def _check_settings(self) -> None:
        """Refuse a table with rows made with other settings; record the settings of a
        table without rows. Called with the table locked, before it is changed."""
        if self.settings is None:
            return
        record = self.settings_path
        saved = read_settings(self.path)
        if self._has_rows():
            if saved is None:
                raise CohortSettingsError(
                    f"{self.path}: has rows but no record of the settings they were made with ({record.name} "
                    "is missing: written by an older cephspine, or removed), so a resumed run could mix "
                    f"rows made with other settings; start over (delete {self.path.name}) or write to another file"
                )
            moved = format_change(saved, self.settings)
            if moved:
                raise CohortSettingsError(
                    f"{self.path}: {moved}; write a new table: delete {self.path.name} and {record.name}, "
                    "or write to another file"
                )
            changes = settings_changes(saved, self.settings)
            if changes:
                raise CohortSettingsError(
                    f"{self.path}: its rows were made with other settings than this run: {'; '.join(changes)}. "
                    "Run again with the settings it was made with to resume it, or start over: delete "
                    f"{self.path.name} and {record.name}, or write to another file"
                )
            self._resumed_from = saved  # recorded with this run's additions once the rows are known
            return
        if saved != self.settings:
            self._record(self.settings)

    def _record_additions(self) -> None:
        """Record the per-image spacings this run adds to a resumed table (images new to
        it); refuse one for an image that already has a row, made without it. Called once
        the images written are known (:meth:`done`), before any row is added."""
        saved = self._resumed_from
        if saved is None or self.settings is None:
            return
        given = [k for k in new_spacings(saved, self.settings) if k in self._status]
        if given:
            shown = ", ".join(given[:5]) + (f" and {len(given) - 5} more" if len(given) > 5 else "")
            raise CohortSettingsError(
                f"{self.path}: its rows were made with other settings than this run: spacing: the file's own → "
                f"a spacing of the table for {shown} (this run). Run again with the settings it was made with to "
                f"resume it, or start over: delete {self.path.name} and {self.settings_path.name}, or write to "
                "another file"
            )
        merged = merged_settings(saved, self.settings)
        if merged != saved:
            self._record(merged)

    def _record(self, settings: Mapping[str, Any]) -> None:
        """Write the settings record of this table (atomically)."""
        from cephspine import __version__

        data = {
            "cephspine_cohort_settings": 1,
            "table": self.path.name,
            "settings": settings,
            "software_version": __version__,
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        text = (json.dumps(data, indent=1) + "\n").encode("utf-8")
        write_atomic(self.settings_path, lambda fh: fh.write(text), _SETTINGS)

    # ------------------------------------------------------------------ csv
    def _csv_lines(self, rows: Sequence[Sequence[Any]], *, escape: bool = True) -> bytes:
        """CSV lines of ``rows`` (cells in column order); ``escape``: the text cells escaped
        for spreadsheets (rows as stored, not the header or records read back)."""
        text = [i for i, c in enumerate(self.columns) if c in self.schema.text] if escape else []
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for r in rows:
            cells = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in r]
            for i in text:
                cells[i] = escape_cell(cells[i])
            writer.writerow(cells)
        return buf.getvalue().encode("utf-8")

    def _open_csv(self) -> None:
        fh = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - held open for the whole run
        _lock(fh, self.path)
        self._fh = fh
        _remove_stale_temporaries(self.path)
        self._check_settings()
        self._check_header()
        _truncate_partial_line(fh, self.path)
        if os.fstat(fh.fileno()).st_size == 0:
            _append(fh, self._csv_lines([self.columns], escape=False), self.path)
            return
        keep = self._scan_csv()
        if keep is not None:
            self._rewrite_csv(keep)

    def _check_header(self) -> None:
        """Refuse a table with rows under other columns, before anything is changed."""
        with open(self.path, encoding="utf-8", newline="") as fh:
            first = fh.readline()
            has_rows = bool(fh.read(1))
        if not first.endswith("\n") or not has_rows:
            return  # a header cut short, or no rows: the table is started afresh
        if tuple(next(csv.reader([first]))) != self.columns:
            raise _other_columns(self.path)

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
                if next(reader, None) is not None:
                    raise _other_columns(self.path)
                # a header without rows (a table started with other settings): start afresh
                assert self._fh is not None
                os.ftruncate(self._fh.fileno(), 0)
                _append(self._fh, self._csv_lines([self.columns], escape=False), self.path)
                return None
            for i, rec in enumerate(reader):
                if len(rec) != len(self.columns) or not rec[key_i]:
                    bad += 1
                    continue
                key = unescape_cell(rec[key_i])
                lines_of.setdefault(key, []).append(i)
                if key not in self._status:
                    self._status[key] = unescape_cell(rec[status_i]) if status_i is not None else ""
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
        def render(dst: IO[bytes]) -> None:
            with open(self.path, encoding="utf-8", newline="") as src:
                reader = csv.reader(src)
                dst.write(self._csv_lines([next(reader)], escape=False))
                for i, rec in enumerate(reader):
                    if i in keep:
                        dst.write(self._csv_lines([rec], escape=False))  # as stored: escaped already

        write_atomic(self.path, render, _TABLE)
        assert self._fh is not None
        self._fh.close()
        self._fh = open(self.path, "a+b", buffering=0)  # noqa: SIM115
        _lock(self._fh, self.path)

    # ------------------------------------------------------------------ parquet
    @property
    def parts_dir(self) -> Path:
        """Parquet: the hidden folder holding the journal of the rows written so far."""
        return self.path.with_name(f".{self.path.name}.parts")

    @property
    def journal_path(self) -> Path:
        """Parquet: the journal of the rows written so far (:data:`JOURNAL_NAME`)."""
        return self.parts_dir / JOURNAL_NAME

    def _part_files(self) -> list[Path]:
        """Part files of an interrupted run of an earlier version (one per image)."""
        if not self.parts_dir.is_dir():
            return []
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def _arrow_schema(self) -> Any:
        pa, _ = pyarrow_modules()
        fields = []
        for c in self.columns:
            kind = pa.string() if c in self.schema.text else pa.int64() if c in self.schema.integer else pa.float64()
            fields.append((c, kind))
        return pa.schema(fields)

    def _open_parquet(self) -> None:
        _, pq = pyarrow_modules()
        if not self.parts_dir.is_dir():
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.parts_dir.parent)  # the folder survives a power cut, not only a kill
        self._lock_fh = open(self.parts_dir / "lock", "a")  # noqa: SIM115
        _lock(self._lock_fh, self.path)
        for tmp in self.parts_dir.glob("*.tmp"):  # a write that was interrupted
            tmp.unlink()
        _remove_stale_temporaries(self.path)
        self._check_settings()
        wanted = [self.key] + (["status"] if "status" in self.columns else [])
        sources: list[Path] = [self.path] if self.path.exists() else []
        for src in sources + self._part_files():
            try:
                names = tuple(pq.read_schema(src).names)
                table = pq.read_table(src, columns=wanted).to_pydict() if names == self.columns else None
            except Exception as exc:
                if src == self.path:
                    raise OutputError(f"{self.path}: not a readable Parquet table ({exc})") from None
                log.warning("%s: dropping an unreadable part (%s)", src, exc)
                src.unlink()
                continue
            if table is None:
                raise _other_columns(src)
            statuses = table.get("status", [""] * len(table[self.key]))
            for k, s in zip(table[self.key], statuses):
                self._status.setdefault(str(k), str(s or ""))
        self._open_journal()

    # the journal: a header line, then one JSON line per image: the list of its rows, each
    # the list of its cells in column order (null for a missing value)
    def _journal_header(self) -> bytes:
        header = {_JOURNAL_FORMAT: 1, "columns": list(self.columns)}
        return (json.dumps(header, separators=(",", ":")) + "\n").encode("ascii")

    def _journal_line(self, cells: Sequence[Sequence[Any]]) -> bytes:
        block = [[None if isinstance(v, float) and math.isnan(v) else v for v in r] for r in cells]
        return (json.dumps(block, separators=(",", ":")) + "\n").encode("ascii")

    def _journal_has_rows(self) -> bool:
        try:
            with open(self.journal_path, "rb") as fh:
                fh.readline()  # the header
                return bool(fh.read(1))
        except FileNotFoundError:
            return False

    def _is_block(self, block: Any) -> bool:
        key_i = self.columns.index(self.key)
        return (
            isinstance(block, list)
            and bool(block)
            and all(isinstance(r, list) and len(r) == len(self.columns) for r in block)
            and all(isinstance(r[key_i], str) and r[key_i] for r in block)
        )

    def _journal_blocks(self) -> Iterator[tuple[int, Any]]:
        """``(line number, block)`` of each line of the journal after its header (``None``
        for a line that is not JSON)."""
        if not self.journal_path.exists():
            return
        with open(self.journal_path, "rb") as fh:
            fh.readline()
            for i, line in enumerate(fh):
                yield i, _json_line(line)

    def _open_journal(self) -> None:
        new = not self.journal_path.exists()
        fh = open(self.journal_path, "a+b", buffering=0)  # noqa: SIM115 - held open for the whole run
        self._fh = fh
        if new:
            fsync_dir(self.parts_dir)
        _truncate_partial_line(fh, self.journal_path)
        if os.fstat(fh.fileno()).st_size:
            with open(self.journal_path, "rb") as first:
                header = _json_line(first.readline())
            if not (isinstance(header, dict) and header.get(_JOURNAL_FORMAT) == 1):
                log.warning("%s: dropping an unreadable journal", self.journal_path)
                os.ftruncate(fh.fileno(), 0)
            elif tuple(header.get("columns") or ()) != self.columns:
                raise _other_columns(self.journal_path)
        if os.fstat(fh.fileno()).st_size == 0:
            _append(fh, self._journal_header(), self.path)
            return
        status_i = self.columns.index("status") if "status" in self.columns else None
        key_i = self.columns.index(self.key)
        bad: set[int] = set()
        for i, block in self._journal_blocks():
            if not self._is_block(block):
                bad.add(i)
                continue
            for r in block:
                status = r[status_i] if status_i is not None else None
                self._status.setdefault(r[key_i], str(status or ""))
        if bad:
            log.warning("%s: removing %d unreadable line(s)", self.journal_path, len(bad))
            self._rewrite_journal(bad)

    def _rewrite_journal(self, bad: set[int]) -> None:
        def render(dst: IO[bytes]) -> None:
            with open(self.journal_path, "rb") as src:
                dst.write(src.readline())
                for i, line in enumerate(src):
                    if i not in bad:
                        dst.write(line)

        write_atomic(self.journal_path, render, _TABLE)
        assert self._fh is not None
        self._fh.close()
        self._fh = open(self.journal_path, "a+b", buffering=0)  # noqa: SIM115

    def _to_arrow(self, df: pd.DataFrame) -> Any:
        pa, _ = pyarrow_modules()
        return pa.Table.from_pandas(self.schema.normalise(df), schema=self._arrow_schema(), preserve_index=False)

    def _read_parts(self) -> pd.DataFrame:
        """The rows of the journal (after those of earlier versions' part files)."""
        frames = [self.schema.normalise(pd.read_parquet(p)) for p in self._part_files()]
        rows = [r for _, block in self._journal_blocks() if self._is_block(block) for r in block]
        if rows:
            frames.append(self.schema.normalise(pd.DataFrame(rows, columns=list(self.columns))))
        if not frames:
            return self.schema.normalise(pd.DataFrame(columns=list(self.columns)))
        return pd.concat(frames, ignore_index=True)

    def _consolidate(self) -> None:
        _, pq = pyarrow_modules()
        if self.path.exists() and not self._part_files() and not self._journal_has_rows():
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            return
        old = self.schema.normalise(pd.read_parquet(self.path)) if self.path.exists() else None
        new = self._read_parts()
        if old is not None:
            new = new[~new[self.key].isin(set(old[self.key]))]  # already consolidated before
            df = pd.concat([old, new], ignore_index=True) if len(new) else old
        else:
            df = new
        table = self._to_arrow(df)
        write_atomic(self.path, lambda fh: pq.write_table(table, fh), _TABLE)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
