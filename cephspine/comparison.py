"""Comparing two cephalograms of one patient (before and after treatment, or growth).

::

    import cephspine

    before = cephspine.analyze("2023.dcm")
    after = cephspine.analyze("2025.dcm", landmarks="2025_corrected.csv")
    cmp = cephspine.compare(before, after)
    cmp.to_dataframe()            # key, measure, analysis, before, after, change, unit
    cmp.landmarks_dataframe()     # landmark, …, dx_mm, dy_mm, distance_mm
    cmp.to_pdf("compare.pdf")     # both tracings superimposed, and the change tables

The films are superimposed on S–N registered at S (``domain.md`` §5): each film's
landmarks, in millimetres (pixels × its own spacing), are moved rigidly (rotation and
translation, no scaling; a film whose profile faces the other way is also mirrored, so
that menton lies on the positive side) into one frame, the **S–N frame**:

- the origin is sella (S);
- ``x`` runs along S → N (nasion at ``x = |S–N|``, ``y = 0``);
- ``y`` is perpendicular to S–N, **positive toward menton** (Me): for a film shown the
  usual way, x points forward and y down, whichever way the profile faces.

Because the frame is built from the anatomy alone, a rigid motion or a mirror image of the
whole head changes no coordinate, and films taken at different pixel spacings, or facing
different ways, compare directly. Each landmark's displacement is ``after − before`` in
that frame: ``dx_mm`` along S → N (positive: forward), ``dy_mm`` perpendicular (positive:
toward menton) and ``distance_mm``.

Every measure is computed on each film's superimposed landmarks (so a motion or mirror of
the head cannot change it either): the eight ISBI 2015 measures
(:func:`~cephspine.geometry.ceph_measures`, key the cohort column, e.g. ``anb_deg``) and
the measures of the named analyses the ISBI landmarks allow
(:func:`~cephspine.geometry.ceph_analyses`). ``change`` is ``after − before``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cephspine.analysis import Analysis
from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS
from cephspine.errors import InvalidArgumentError, LandmarkError, SpacingError
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS, MEASURE_UNITS

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ISBI_ANALYSIS",
    "LANDMARK_CHANGE_COLUMNS",
    "MEASURE_CHANGE_COLUMNS",
    "Comparison",
    "MeasureChange",
    "compare",
    "sn_frame",
]

FloatArray = npt.NDArray[np.float64]

ISBI_ANALYSIS = "ISBI 2015"
"""The ``analysis`` of the eight ISBI 2015 measures in a comparison table."""

MEASURE_CHANGE_COLUMNS: tuple[str, ...] = ("key", "measure", "analysis", "before", "after", "change", "unit")
"""The columns of :meth:`Comparison.to_dataframe`."""

LANDMARK_CHANGE_COLUMNS: tuple[str, ...] = (
    "landmark",
    "abbreviation",
    "before_x_mm",
    "before_y_mm",
    "after_x_mm",
    "after_y_mm",
    "dx_mm",
    "dy_mm",
    "distance_mm",
)
"""The columns of :meth:`Comparison.landmarks_dataframe` (positions in the S–N frame)."""

_S, _N, _ME = (CEPH_ABBREVIATIONS.index(a) for a in ("S", "N", "Me"))
_DEGENERATE_REL = 1e-9  # a length below this fraction of the landmarks' extent counts as zero


def sn_frame(xy_mm: npt.ArrayLike) -> FloatArray:
    """Cephalometric landmarks in the S–N frame: sella at the origin, ``x`` along S → N,
    ``y`` perpendicular to it, positive toward menton (a rigid motion, no scaling, with a
    mirror image for a profile facing the other way).

    Args:
        xy_mm: ``(19, 2)`` landmarks in millimetres (ISBI 2015 order), any orientation
            and facing.

    Returns:
        ``(19, 2)`` positions in the frame, mm. The result does not change when the input
        is rotated, translated or mirrored.

    Raises:
        LandmarkError: not 19 landmarks; sella, nasion or menton missing; S and N
            coincide; or menton lies on the line S–N (the perpendicular has no side).
    """
    xy = np.asarray(xy_mm, dtype=np.float64)
    if xy.shape != (len(CEPH_LANDMARKS), 2):
        raise LandmarkError(f"the S–N frame needs the 19 cephalometric landmarks, shape (19, 2); got {xy.shape}")
    if not np.isfinite(xy[[_S, _N, _ME]]).all():
        raise LandmarkError("the S–N frame needs sella, nasion and menton; one of them is missing (NaN)")
    finite = xy[np.isfinite(xy).all(axis=1)]
    tol = _DEGENERATE_REL * float(np.ptp(finite, axis=0).max())
    sn = xy[_N] - xy[_S]
    length = math.hypot(sn[0], sn[1])
    if length <= tol:
        raise LandmarkError("the S–N frame is undefined: sella and nasion coincide")
    e1 = sn / length
    e2 = np.array([-e1[1], e1[0]])
    side = float((xy[_ME] - xy[_S]) @ e2)
    if abs(side) <= tol:
        raise LandmarkError("the S–N frame is undefined: menton lies on the line S–N")
    if side < 0:
        e2 = -e2
    rel = xy - xy[_S]
    return np.stack([rel @ e1, rel @ e2], axis=1)


@dataclass(frozen=True)
class MeasureChange:
    """One measure on both films.

    Attributes:
        key: the measure's key: the cohort-table column (``"anb_deg"``,
            ``"saddle_angle_deg"``).
        measure: its name as shown.
        analysis: ``"ISBI 2015"`` or the named analysis it is listed under (``"Downs"``).
        unit: ``"deg"``, ``"mm"``, ``"ratio"`` or ``"%"``.
        before: its value on the first film (NaN when it cannot be computed).
        after: its value on the second film.
    """

    key: str
    measure: str
    analysis: str
    unit: str
    before: float
    after: float

    @property
    def change(self) -> float:
        """``after − before``."""
        return self.after - self.before


def _film_mm(a: Analysis, which: str) -> FloatArray:
    if not isinstance(a, Analysis):
        raise InvalidArgumentError(f"compare() takes two Analysis objects (cephspine.analyze); {which} is a "
                                   f"{type(a).__name__}")  # fmt: skip
    if a.kind != "ceph":
        raise InvalidArgumentError(f"{a.image}: compare() superimposes cephalograms; this is a {a.kind} analysis")
    mm = a.prediction.xy_mm
    if mm is None:
        raise SpacingError(
            f"{a.image}: pixel spacing unknown; comparing two films superimposes them in millimetres and needs "
            "the spacing of both (analyze(..., spacing=...), or --spacing)"
        )
    try:
        return np.stack([mm[a.prediction.names.index(n)] for n in CEPH_LANDMARKS])
    except ValueError:
        raise LandmarkError(f"{a.image}: the analysis lacks some of the 19 cephalometric landmarks") from None


def _isbi_measures(frame: FloatArray) -> dict[str, float]:
    """The eight measures on S–N-frame landmarks (mm, facing forward); NaN where undefined."""
    from cephspine.geometry import ceph_measures

    try:
        m = ceph_measures(frame, spacing=1.0, facing="right")
    except LandmarkError:  # coincident points: measure by measure, to keep the defined ones
        out = {}
        for name in CEPH_MEASURES:
            try:
                out[name] = ceph_measures(frame, spacing=1.0, facing="right", measures=[name])[name]
            except LandmarkError:
                out[name] = math.nan
        return out
    return {name: float(m[name]) for name in CEPH_MEASURES}


def _analyses_measures(frame: FloatArray) -> list[tuple[str, str, str, str, float]]:
    """``(key, measure, analysis, unit, value)`` of the named analyses' computable measures."""
    from cephspine.geometry.analyses import ceph_analyses

    table = ceph_analyses(frame, 1.0)
    table = table[table["status"] != "not available"]
    return [
        (str(r["key"]), str(r["measure"]), str(r["analysis"]), str(r["unit"]), float(r["value"]))
        for r in table.to_dict("records")
    ]


def _isbi_name(m: str) -> str:
    name = CEPH_NORMS[m].name
    return name if name.startswith(m) else f"{m}, {name}"


def _measure_changes(before: FloatArray, after: FloatArray) -> tuple[MeasureChange, ...]:
    b, a = _isbi_measures(before), _isbi_measures(after)
    rows = [
        MeasureChange(f"{m.lower()}_{MEASURE_UNITS[m]}", _isbi_name(m), ISBI_ANALYSIS, MEASURE_UNITS[m], b[m], a[m])
        for m in CEPH_MEASURES
    ]
    after_by_key = {r[0]: r for r in _analyses_measures(after)}
    for key, name, analysis, unit, value in _analyses_measures(before):
        rows.append(MeasureChange(key, name, analysis, unit, value, after_by_key[key][4]))
    return tuple(rows)


@dataclass(frozen=True, eq=False)
class Comparison:
    """Two cephalograms of one patient superimposed on S–N registered at S (see the
    module documentation for the frame). Made by :func:`compare`.

    Attributes:
        before: the analysis of the first (earlier) film.
        after: the analysis of the second film.
        before_sn_mm: ``(19, 2)`` landmarks of ``before`` in the S–N frame, mm.
        after_sn_mm: ``(19, 2)`` landmarks of ``after`` in the S–N frame, mm.
        measures: every measure on both films (:class:`MeasureChange`), the eight ISBI
            2015 measures first, then those of the named analyses.
    """

    before: Analysis
    after: Analysis
    before_sn_mm: FloatArray
    after_sn_mm: FloatArray
    measures: tuple[MeasureChange, ...]

    def __eq__(self, other: object) -> bool:
        """Equal when both analyses are (everything else is computed from them)."""
        if not isinstance(other, Comparison):
            return NotImplemented
        return self.before == other.before and self.after == other.after

    __hash__ = None  # type: ignore[assignment]  # equal by value, and holds arrays

    @property
    def displacement_mm(self) -> FloatArray:
        """``(19, 2)`` displacement ``after − before`` of each landmark in the S–N frame:
        ``(dx, dy)``, mm."""
        return np.asarray(self.after_sn_mm - self.before_sn_mm, dtype=np.float64)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per measure: ``key, measure, analysis, before, after, change, unit``
        (the eight ISBI 2015 measures, then the named analyses' measures)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "key": m.key,
                    "measure": m.measure,
                    "analysis": m.analysis,
                    "before": m.before,
                    "after": m.after,
                    "change": m.change,
                    "unit": m.unit,
                }
                for m in self.measures
            ],
            columns=list(MEASURE_CHANGE_COLUMNS),
        )

    def landmarks_dataframe(self) -> pd.DataFrame:
        """One row per landmark: its name and abbreviation, its position on each film in
        the S–N frame (``before_x_mm`` … ``after_y_mm``), and its displacement ``dx_mm``
        (along S → N, positive forward), ``dy_mm`` (perpendicular, positive toward menton)
        and ``distance_mm``."""
        import pandas as pd

        d = self.displacement_mm
        return pd.DataFrame(
            {
                "landmark": list(CEPH_LANDMARKS),
                "abbreviation": list(CEPH_ABBREVIATIONS),
                "before_x_mm": self.before_sn_mm[:, 0],
                "before_y_mm": self.before_sn_mm[:, 1],
                "after_x_mm": self.after_sn_mm[:, 0],
                "after_y_mm": self.after_sn_mm[:, 1],
                "dx_mm": d[:, 0],
                "dy_mm": d[:, 1],
                "distance_mm": np.hypot(d[:, 0], d[:, 1]),
            },
            columns=list(LANDMARK_CHANGE_COLUMNS),
        )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of both analyses; :meth:`from_dict` rebuilds an equal comparison."""
        return {"before": self.before.to_dict(), "after": self.after.to_dict()}

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON (``kwargs`` go to :func:`json.dumps`, e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        """Rebuild a comparison from :meth:`to_dict` output (everything is recomputed)."""
        try:
            before, after = d["before"], d["after"]
        except (KeyError, TypeError):
            raise InvalidArgumentError("not a cephspine comparison dict (needs 'before' and 'after')") from None
        return compare(Analysis.from_dict(before), Analysis.from_dict(after))

    @classmethod
    def from_json(cls, text: str) -> Comparison:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def to_pdf(self, path: str | os.PathLike[str]) -> Path:
        """Write the comparison report (:func:`cephspine.reports.write_compare_report`)."""
        from cephspine.reports.compare import write_compare_report

        return write_compare_report(self, path)

    def __repr__(self) -> str:
        by_key = {m.key: m for m in self.measures}
        parts = []
        for m in ("ANB", "SNA", "SNB"):
            c = by_key[f"{m.lower()}_deg"].change
            parts.append(f"{m} {c:+.2f}°" if math.isfinite(c) else f"{m} n/a")
        dist = np.hypot(*self.displacement_mm.T)
        i = int(np.nanargmax(dist)) if np.isfinite(dist).any() else None
        largest = f", largest displacement {dist[i]:.1f} mm ({CEPH_ABBREVIATIONS[i]})" if i is not None else ""
        return f"Comparison({self.before.image} → {self.after.image}: {', '.join(parts)}{largest})"


def compare(before: Analysis, after: Analysis) -> Comparison:
    """Compare two cephalograms of one patient, superimposed on S–N registered at S.

    Args:
        before: the analysis of the first (earlier) film (:func:`~cephspine.analyze`,
            detected or with supplied ``landmarks=``).
        after: the analysis of the second film.

    Returns:
        A :class:`Comparison`: :meth:`~Comparison.to_dataframe` (each measure before,
        after and its change), :meth:`~Comparison.landmarks_dataframe` (each landmark's
        displacement ``dx_mm`` along S → N, ``dy_mm`` perpendicular, positive toward
        menton, and ``distance_mm``), :meth:`~Comparison.to_pdf`.

    Raises:
        InvalidArgumentError: an argument is not a cephalogram :class:`~cephspine.Analysis`.
        SpacingError: a film without pixel spacing (the message names it).
        LandmarkError: a film whose S–N frame is undefined (sella and nasion coincide, or
            menton lies on S–N).

    Example::

        cmp = cephspine.compare(cephspine.analyze("t0.dcm"), cephspine.analyze("t1.dcm"))
        cmp.to_dataframe().set_index("key").loc["anb_deg", "change"]
    """
    frames = []
    for a, which in ((before, "before"), (after, "after")):
        mm = _film_mm(a, which)
        try:
            frames.append(sn_frame(mm))
        except LandmarkError as exc:
            raise LandmarkError(f"{a.image}: {exc}") from None
    return Comparison(before, after, frames[0], frames[1], _measure_changes(frames[0], frames[1]))
