"""The settings a cohort row depends on, and how two sets of them differ.

A cohort table written with ``out`` records the settings of the run that made it (see
:class:`~cephspine.cohorts.CohortWriter`); a run that would resume it with other settings
is refused, since its new rows could not be compared with the old ones.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cephspine.errors import CephspineError
from cephspine.radiograph import as_spacing
from cephspine.registry import read_card, resolve

if TYPE_CHECKING:
    from cephspine.detector import Detector

ModelRef = tuple[str, dict[str, Any]]
"""A model name or directory and the options of :meth:`~cephspine.Detector.from_pretrained`."""

LOAD_DEFAULTS: dict[str, Any] = {"register": "auto", "end_prior": True, "refine_flip": True}
"""Defaults of the :meth:`~cephspine.Detector.from_pretrained` options that change results."""

LABELS: dict[str, str] = {
    "kind": "kind",
    "include_identifiers": "include_identifiers",
    "model": "model",
    "model_version": "model version",
    "weights": "model weights (model.safetensors)",
    "register": "registration mode (register)",
    "end_prior": "end prior (end_prior)",
    "refine_flip": "mirror refinement (refine_flip)",
    "spacing": "spacing",
    "row_format": "row format",
}
"""The settings recorded with a cohort table, with the words used for them in messages."""

ROW_FORMAT = 2
"""The version of what a row holds for an image and settings, recorded with a table
(``row_format``). It is raised when the rows of this version differ from those of the one
before; a table of another version is not resumed, since its rows could not be compared
with new ones. Version 2: a ``wrong_anatomy`` row has no measures, types or classes, and a
per-image spacing is recorded. A record without ``row_format`` is of version 1."""


def cohort_settings(
    kind: str, include_identifiers: bool, spacing: Any, model: ModelRef | Detector
) -> dict[str, Any]:  # fmt: skip
    """The settings the rows of a cohort run depend on.

    Args:
        kind: ``"ceph"`` or ``"spine"``.
        include_identifiers: whether the ``dicom_*`` columns are written.
        spacing: the run's ``spacing`` (``None``: each file's own), or the spacing of
            each image given one, by image key (a per-image table).
        model: the detector that analyses the images, or the name or directory (with the
            load options) of the model that the workers load.

    Returns:
        A JSON-ready dict with the keys of :data:`LABELS` (``row_format``: :data:`ROW_FORMAT`).
    """
    directory: Path | None
    if isinstance(model, tuple):
        path, options = model
        try:
            directory = resolve(path)
            card: dict[str, Any] = read_card(directory)
            name, version = str(card["name"]), str(card["version"])
        except CephspineError:  # a model only the (Ray) workers can read: known by what was given
            directory, card, name, version = None, {}, str(path), None
    else:
        options = dict(model.load_options)
        directory, card, name, version = model.directory, model.card, model.name, model.version
    spine = card.get("anatomy") == "spine"
    if isinstance(spacing, Mapping):  # per image: recorded image by image, so a change is seen
        shown: Any = {str(k): [float(v[0]), float(v[1])] for k, v in sorted(spacing.items())}
    else:
        sp = as_spacing(spacing)
        shown = [sp.row_mm, sp.col_mm] if sp is not None else None
    return {
        "kind": kind,
        "include_identifiers": bool(include_identifiers),
        "model": name,
        "model_version": version,
        "weights": weights_digest(directory),
        # the decoding options change only spine models' results
        **{k: options.get(k, default) if spine or k == "register" else None for k, default in LOAD_DEFAULTS.items()},
        "spacing": shown,
        "row_format": ROW_FORMAT,
    }


def weights_digest(directory: str | Path | None) -> str | None:
    """The first 16 hex digits of the SHA-256 of a model directory's ``model.safetensors``
    (two trainings with the same card name and version differ here), or ``None``."""
    if directory is None:
        return None
    f = Path(directory) / "model.safetensors"
    try:
        st = f.stat()
    except OSError:
        return None
    return _digest(str(f.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _show(key: str, value: Any) -> str:
    if key == "spacing":
        if value is None:
            return "each file's own"
        if isinstance(value, Mapping):
            return f"per image ({len(value)} image(s) given one, the others their file's own)"
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            return repr(value)
        return f"{row:g} mm" if row == col else f"{row:g} × {col:g} mm"
    if value is None:
        return "not recorded"
    return repr(value) if isinstance(value, str) else str(value)


def row_format(settings: Mapping[str, Any]) -> Any:
    """The :data:`ROW_FORMAT` a settings record was written with (1 for a record without it)."""
    return settings.get("row_format", 1)


def format_change(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Why a table whose record is ``saved`` cannot take the rows of this run (``current``)
    whatever its other settings: its rows are of another :data:`ROW_FORMAT` (written by an
    earlier or a later version of cephspine); ``None`` when they are of the same one."""
    old, new = row_format(saved), row_format(current)
    if _same(_comparable(old), _comparable(new)):
        return None
    when = "an earlier" if isinstance(old, int) and isinstance(new, int) and old < new else "another"
    return (
        f"its rows were written by {when} version of cephspine (row format {old}; this version writes {new}), "
        "so new rows could not be compared with them"
    )


def new_spacings(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The images this run gives a per-image spacing that the ``saved`` record has none
    for (images new to the table, or left to their file's own spacing before)."""
    old, new = saved.get("spacing"), current.get("spacing")
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return []
    return sorted(str(k) for k in new if k not in old)


def merged_settings(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a table resumed by this run: ``current``, with the per-image spacings
    of ``saved`` that this run does not give kept (the rows made with them stay)."""
    merged = dict(current)
    old, new = saved.get("spacing"), current.get("spacing")
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        merged["spacing"] = {k: (new[k] if k in new else old[k]) for k in sorted({*old, *new})}
    return merged


def settings_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between the ``saved`` settings of a table and those of this run, one
    ``"<setting>: <saved> → <current>"`` text per setting (empty when they agree). A
    setting the saved record does not have (written before it was recorded), or that this
    run cannot know (``None`` weights of a model only the workers can read), is not
    compared, nor is ``row_format`` (see :func:`format_change`). Of two per-image
    spacings, only the images both give one are compared: an image only this run gives
    one is new to the table (see :func:`new_spacings`), and one only the record has is
    not analysed again."""
    changes = []
    for key in list(current) + [k for k in saved if k not in current]:
        if key not in saved or key == "row_format" or (key == "weights" and current.get(key) is None):
            continue
        old, new = saved.get(key), current.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            old, new = ({k: v[k] for k in v if k in old and k in new} for v in (old, new))
        if not _same(_comparable(old), _comparable(new)):
            shown_old, shown_new = _show(key, old), _show(key, new)
            if shown_old == shown_new and isinstance(old, Mapping) and isinstance(new, Mapping):
                diff = sorted(
                    k for k in old.keys() | new.keys() if not _same(_comparable(old.get(k)), _comparable(new.get(k)))
                )
                shown_new = f"other spacings for {', '.join(diff[:5])}" + (
                    f" and {len(diff) - 5} more" if len(diff) > 5 else ""
                )
            elif shown_old == shown_new:
                shown_old, shown_new = repr(old), repr(new)
            changes.append(f"{LABELS.get(key, key)}: {shown_old} → {shown_new} (this run)")
    return changes


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)  # e.g. a float32 0.1 is the same spacing
    return bool(a == b)


def _comparable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value
