"""The settings a cohort row depends on, and how two sets of them differ.

A cohort table written with ``out`` records the settings of the run that made it (see
:class:`~cephspine.cohorts.CohortWriter`); a run that would resume it with other settings
is refused, since its new rows could not be compared with the old ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

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
    "register": "registration mode (register)",
    "end_prior": "end prior (end_prior)",
    "refine_flip": "mirror refinement (refine_flip)",
    "spacing": "spacing",
}
"""The settings recorded with a cohort table, with the words used for them in messages."""


def cohort_settings(
    kind: str, include_identifiers: bool, spacing: Any, model: ModelRef | Detector
) -> dict[str, Any]:  # fmt: skip
    """The settings the rows of a cohort run depend on.

    Args:
        kind: ``"ceph"`` or ``"spine"``.
        include_identifiers: whether the ``dicom_*`` columns are written.
        spacing: the run's ``spacing`` (``None``: each file's own).
        model: the detector that analyses the images, or the name or directory (with the
            load options) of the model that the workers load.

    Returns:
        A JSON-ready dict with the keys of :data:`LABELS`.
    """
    if isinstance(model, tuple):
        path, options = model
        card = read_card(resolve(path))
        name, version = str(card["name"]), str(card["version"])
    else:
        options = dict(model.load_options)
        name, version = model.name, model.version
    sp = as_spacing(spacing)
    return {
        "kind": kind,
        "include_identifiers": bool(include_identifiers),
        "model": name,
        "model_version": version,
        **{k: options.get(k, default) for k, default in LOAD_DEFAULTS.items()},
        "spacing": [sp.row_mm, sp.col_mm] if sp is not None else None,
    }


def _show(key: str, value: Any) -> str:
    if key == "spacing":
        if value is None:
            return "each file's own"
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            return repr(value)
        return f"{row:g} mm" if row == col else f"{row:g} × {col:g} mm"
    if value is None:
        return "not recorded"
    return repr(value) if isinstance(value, str) else str(value)


def settings_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between the ``saved`` settings of a table and those of this run, one
    ``"<setting>: <saved> → <current>"`` text per setting (empty when they agree)."""
    changes = []
    for key in list(current) + [k for k in saved if k not in current]:
        old, new = saved.get(key), current.get(key)
        if _comparable(old) != _comparable(new):
            changes.append(f"{LABELS.get(key, key)}: {_show(key, old)} → {_show(key, new)} (this run)")
    return changes


def _comparable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value
