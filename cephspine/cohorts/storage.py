"""Durable, resumable cohort tables (``.csv`` or ``.parquet``) and their settings record.

* CSV: one complete line per image, appended then flushed and ``fsync``-ed. On resume a
  trailing incomplete line (a write cut short by a kill) is truncated before appending.
* Parquet: each finished image is a separate part file in the hidden sidecar folder
  ``.<name>.parts/`` next to the table, each written to a temporary name and renamed into
  place (so a part is either complete or absent). At the end the previous table and the
  parts are consolidated into the table through a temporary file and :func:`os.replace`,
  and the sidecar folder is removed.
* Settings: ``<name>.settings.json`` next to the table records the settings its rows were
  made with (:func:`~cephspine.cohorts.settings.cohort_settings`). A table that has rows
  is resumed only with the same settings; otherwise :class:`CohortSettingsError`.
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
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

from cephspine.cohorts.columns import TableSchema
from cephspine.cohorts.settings import settings_changes
from cephspine.errors import CohortSettingsError, InvalidArgumentError, MissingDependencyError, OutputError

log = logging.getLogger("cephspine.cohorts")

OUTPUT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
"""Accepted suffixes of cohort tables."""

SETTINGS_SUFFIX = ".settings.json"
"""Suffix added to a table's file name for its settings record."""


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


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


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
        OutputError: the table is being written by another run, or is not a readable table.

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
        if self.format == "parquet":
            pyarrow_modules()
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
        if self.format == "csv":
            self._append_bytes(self._csv_lines(cells))
        else:
            self._append_part(cells)
        status_i = self.columns.index("status") if "status" in self.columns else None
        key_i = self.columns.index(self.key)
        for r in cells:
            status = r[status_i] if status_i is not None else None
            self._status.setdefault(str(r[key_i]), str(status or ""))

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
        """The whole table as written (each image once), with the dtypes of
        :mod:`cephspine.cohorts.columns`."""
        if self.format == "csv":
            df = pd.read_csv(self.path, dtype=str, keep_default_na=False, encoding="utf-8")
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
        if self._part_files():
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
            changes = settings_changes(saved, self.settings)
            if changes:
                raise CohortSettingsError(
                    f"{self.path}: its rows were made with other settings than this run: {'; '.join(changes)}. "
                    "Run again with the settings it was made with to resume it, or start over: delete "
                    f"{self.path.name} and {record.name}, or write to another file"
                )
            return
        if saved != self.settings:
            from cephspine import __version__

            data = {
                "cephspine_cohort_settings": 1,
                "table": self.path.name,
                "settings": self.settings,
                "software_version": __version__,
                "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            _write_atomic(record, (json.dumps(data, indent=1) + "\n").encode("utf-8"))

    # ------------------------------------------------------------------ csv
    def _csv_lines(self, cells: Sequence[Sequence[Any]]) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for r in cells:
            writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in r])
        return buf.getvalue().encode("utf-8")

    def _open_csv(self) -> None:
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the whole run
        _lock(fh, self.path)
        self._fh = fh
        self._check_settings()
        self._check_header()
        self._truncate_partial_line()
        if os.fstat(fh.fileno()).st_size == 0:
            self._append_bytes(self._csv_lines([self.columns]))
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
                if next(reader, None) is not None:
                    raise _other_columns(self.path)
                # a header without rows (a table started with other settings): start afresh
                assert self._fh is not None
                self._fh.truncate(0)
                self._append_bytes(self._csv_lines([self.columns]))
                return None
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
            dst.write(self._csv_lines([next(reader)]))
            for i, rec in enumerate(reader):
                if i in keep:
                    dst.write(self._csv_lines([rec]))
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

    # ------------------------------------------------------------------ parquet
    @property
    def parts_dir(self) -> Path:
        """Parquet: the hidden folder holding the parts written so far."""
        return self.path.with_name(f".{self.path.name}.parts")

    def _part_files(self) -> list[Path]:
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
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.parts_dir / "lock", "a")  # noqa: SIM115
        _lock(self._lock_fh, self.path)
        for tmp in self.parts_dir.glob("*.tmp"):  # a part whose write was interrupted
            tmp.unlink()
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
        parts = self._part_files()
        self._next_part = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0

    def _to_arrow(self, df: pd.DataFrame) -> Any:
        pa, _ = pyarrow_modules()
        return pa.Table.from_pandas(self.schema.normalise(df), schema=self._arrow_schema(), preserve_index=False)

    def _append_part(self, cells: Sequence[Sequence[Any]]) -> None:
        _, pq = pyarrow_modules()
        table = self._to_arrow(pd.DataFrame(list(cells), columns=list(self.columns)))
        part = self.parts_dir / f"part-{self._next_part:08d}.parquet"
        tmp = part.with_name(part.name + ".tmp")
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, part)
        _fsync_dir(self.parts_dir)
        self._next_part += 1

    def _read_parts(self) -> pd.DataFrame:
        frames = [self.schema.normalise(pd.read_parquet(p)) for p in self._part_files()]
        if not frames:
            return self.schema.normalise(pd.DataFrame(columns=list(self.columns)))
        return pd.concat(frames, ignore_index=True)

    def _consolidate(self) -> None:
        _, pq = pyarrow_modules()
        parts = self._part_files()
        if self.path.exists() and not parts:
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            return
        old = self.schema.normalise(pd.read_parquet(self.path)) if self.path.exists() else None
        new = self._read_parts()
        if old is not None:
            new = new[~new[self.key].isin(set(old[self.key]))]  # already consolidated before
            df = pd.concat([old, new], ignore_index=True) if len(new) else old
        else:
            df = new
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as fh:
            pq.write_table(self._to_arrow(df), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
