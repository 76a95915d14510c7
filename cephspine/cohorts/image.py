"""The work of one image in a cohort: its row and landmark rows, never an exception.

Every engine runs :func:`analyze_image` on each file; a bad image (unreadable, corrupt,
unsupported, or any other failure while analysing it) gives an error row. Warnings issued
while analysing an image go to its ``warnings`` column, and texts are scrubbed of the
file's DICOM identifier values unless identifiers are wanted.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cephspine.analysis import Analysis, analyze, read_identifiers
from cephspine.cohorts.columns import escape_key, landmark_schema, one_line, row_schema
from cephspine.errors import is_out_of_memory

if TYPE_CHECKING:
    from cephspine.detector import Detector


@dataclass(frozen=True)
class ImageResult:
    """What one image gives: its cohort ``row`` and its ``landmarks`` (long-table rows;
    empty for an error row). Missing cells are ``None`` (text, integers) or ``NaN``."""

    row: dict[str, Any]
    landmarks: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """Not an error row (``status`` ``"ok"`` or ``"wrong_anatomy"``: the image was analysed)."""
        return bool(self.row.get("status") != "error")


class OutOfMemory(RuntimeError):
    """The machine ran out of memory while analysing an image: a failure of the machinery,
    not of the image, so it never becomes the image's error row (the engines leave the
    image without a row, for a resumed run to analyse)."""


def image_key(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """The ``image`` column of a file: its path relative to ``root`` (``/``-separated), or
    its file name when ``root`` is ``None``, escaped to one unambiguous line by
    :func:`~cephspine.cohorts.columns.escape_key` (a line break, tab, backslash or other
    control character in the name is written as a backslash escape: a file whose name has
    a line break between ``new`` and ``line.png`` is keyed ``new\\nline.png``, apart from
    ``new line.png``); :func:`~cephspine.cohorts.columns.unescape_key` gives the name back."""
    p = Path(path)
    name = p.name if root is None else p.relative_to(Path(root)).as_posix()
    return escape_key(name)


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
        An :class:`ImageResult`; ``row`` has exactly the columns of
        :func:`~cephspine.cohorts.row_columns`, with warnings issued while analysing this
        image in ``warnings`` (not printed).
    """
    path = Path(path)
    key = image_key(path, root)
    schema = row_schema(kind, include_identifiers)
    analysis: Analysis | None = None
    failure: Exception | None = None
    with captured_warnings() as caught:
        try:
            analysis = analyze(path, kind, detector=detector, spacing=spacing, include_identifiers=include_identifiers)
        except Exception as exc:  # one bad image never ends a cohort
            if is_out_of_memory(exc):
                raise OutOfMemory(f"{key}: out of memory ({type(exc).__name__})") from exc
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
        s = s.replace(str(path), key)
        shown = escape_key(path.name)
        if shown != path.name:  # a name with a line break or control character: as its key writes it
            s = s.replace(path.name, shown)
        if key != shown and s.startswith(f"{shown}:"):  # name the image as its row does
            s = key + s[len(shown) :]
        return str(scrub(one_line(s)))

    row: dict[str, Any] = {}
    landmarks: list[dict[str, Any]] = []
    if analysis is not None:
        try:
            row = schema.row(analysis.to_row())
            row["image"] = key
            lm = analysis.landmarks_dataframe()
            lm["image"] = key
            lm_schema = landmark_schema(kind)
            landmarks = [lm_schema.row({str(k): v for k, v in r.items()}) for r in lm.to_dict("records")]
        except Exception as exc:
            analysis, failure, landmarks = None, exc, []
    if analysis is None:
        row = error_row(kind, include_identifiers, key, tidy(f"{type(failure).__name__}: {failure}"))
    cleaned = [tidy(m) for m in messages]
    row["warnings"] = " | ".join(cleaned) or None
    row["n_warnings"] = len(cleaned) if (cleaned or analysis is not None) else None
    return ImageResult(row, landmarks)


def error_row(kind: str, include_identifiers: bool, key: str, error: str) -> dict[str, Any]:
    """The cohort row of an image that could not be analysed: empty cells, ``status="error"``."""
    return row_schema(kind, include_identifiers).row({"image": key, "kind": kind, "status": "error", "error": error})


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


# ---------------------------------------------------------------------------- warnings
_THREAD = threading.local()


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the messages of the warnings issued inside the block (not shown).

    Under :func:`warning_router` (several images analysed by threads at once) each thread
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
def warning_router() -> Iterator[None]:
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


def routed_call(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with this thread's warnings routed to its own list (see
    :func:`warning_router`)."""
    _THREAD.routed = True
    try:
        return fn(*args)
    finally:
        _THREAD.routed = False


__all__ = ["ImageResult", "analyze_image", "analyze_row", "error_row", "image_key"]
