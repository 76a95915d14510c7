"""Norms of the eight cephalometric measures and the Cobb severity bands, as data.

The anatomical types follow the ISBI 2015 challenge's classification script (Wang et
al., IEEE TMI 2015; Medical Image Analysis 2016): type 1 is normal and its interval is
closed; the other type numbers are **per measure** (for SNB and APDI type 2 is the low
side). MW keeps the challenge's coded rule: exactly 0 mm is type 2 ("edge to edge"),
every other value below 2 mm is type 3 ("anterior cross bite"), above 4.5 mm type 4.

The Cobb severity bands are for display only (see ``docs/concepts/cobb.md`` for their source).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from cephspine.errors import LandmarkError

__all__ = [
    "CEPH_MEASURES",
    "CEPH_NORMS",
    "COBB_SEVERITY_BANDS",
    "MEASURE_UNITS",
    "CobbSeverityBand",
    "MeasureNorm",
    "clinical_note",
    "cobb_severity",
    "measure_key",
]

CEPH_MEASURES: Final[tuple[str, ...]] = ("ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW")
"""The eight cephalometric measures of the ISBI 2015 challenge, in the papers' order."""

MEASURE_UNITS: Final[dict[str, str]] = {
    "ANB": "deg",
    "SNB": "deg",
    "SNA": "deg",
    "ODI": "deg",
    "APDI": "deg",
    "FHI": "ratio",
    "FMA": "deg",
    "MW": "mm",
}
"""Unit of each measure, as used in column suffixes (``anb_deg``, ``fhi_ratio``, ``mw_mm``)."""

_UNIT_SYMBOL = {"deg": "°", "mm": " mm", "ratio": ""}


@dataclass(frozen=True)
class MeasureNorm:
    """The normal range of one measure and the rule that numbers its anatomical types.

    A value ``v`` is type 1 when ``normal_low <= v <= normal_high``; type ``above`` when
    ``v > normal_high``; type ``below`` when ``v < normal_low``, except that a value of
    exactly 0 is type ``exactly_zero`` when that is set (MW only).

    Attributes:
        measure: the measure's short name (``"ANB"``).
        name: a readable name.
        unit: ``"deg"``, ``"mm"`` or ``"ratio"``.
        normal_low: lower bound of type 1 (inclusive).
        normal_high: upper bound of type 1 (inclusive).
        above: type number of values above the normal range.
        below: type number of values below the normal range.
        labels: type number → readable label.
        exactly_zero: type number of a value of exactly 0, or ``None``.
        mean: population mean the range was derived from, when the source gives one.
        sd: the matching standard deviation.
    """

    measure: str
    name: str
    unit: str
    normal_low: float
    normal_high: float
    above: int
    below: int
    labels: Mapping[int, str] = field(default_factory=dict)
    exactly_zero: int | None = None
    mean: float | None = None
    sd: float | None = None

    @property
    def type_numbers(self) -> tuple[int, ...]:
        """All type numbers of this measure, ascending (``(1, 2, 3)``; MW ``(1, 2, 3, 4)``)."""
        return tuple(sorted(self.labels))

    @property
    def normal_range(self) -> str:
        """The type-1 range as text, e.g. ``"3.2–5.7°"``, ``"0.65–0.75"``, ``"2–4.5 mm"``."""
        sym = _UNIT_SYMBOL[self.unit]
        return f"{self.normal_low:g}–{self.normal_high:g}{sym}"

    def label(self, type_number: int) -> str:
        """The readable label of a type number.

        Raises:
            KeyError: for a number this measure does not have.
        """
        try:
            return self.labels[int(type_number)]
        except KeyError:
            raise KeyError(f"{self.measure} has no type {type_number}; types: {self.type_numbers}") from None

    def classify(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Type numbers of an array of values (vectorised).

        Args:
            values: measure values of any shape, in :attr:`unit`.

        Returns:
            Integer type numbers, same shape as ``values``.

        Raises:
            LandmarkError: a value is NaN or infinite (its type is undefined).
        """
        v = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
            raise LandmarkError(f"{self.measure}: {bad} value(s) are NaN or infinite; their type is undefined")
        conditions = []
        choices = []
        if self.exactly_zero is not None:
            conditions.append(v == 0.0)
            choices.append(self.exactly_zero)
        conditions += [v > self.normal_high, v < self.normal_low]
        choices += [self.above, self.below]
        return np.asarray(np.select(conditions, choices, default=1), dtype=np.int64)


def _norm(
    measure: str,
    name: str,
    low: float,
    high: float,
    *,
    above: int,
    below: int,
    labels: dict[int, str],
    exactly_zero: int | None = None,
    mean: float | None = None,
    sd: float | None = None,
) -> MeasureNorm:
    return MeasureNorm(measure, name, MEASURE_UNITS[measure], low, high, above, below, labels, exactly_zero, mean, sd)


CEPH_NORMS: Final[dict[str, MeasureNorm]] = {
    "ANB": _norm(
        "ANB", "ANB angle (A point–nasion–B point)", 3.2, 5.7, above=2, below=3,
        labels={1: "Class I skeletal", 2: "Class II skeletal", 3: "Class III skeletal"},
    ),
    "SNB": _norm(
        "SNB", "SNB angle (sella–nasion–B point)", 74.6, 78.7, above=3, below=2,
        labels={1: "normal mandible", 2: "retrognathic mandible", 3: "prognathic mandible"},
    ),
    "SNA": _norm(
        "SNA", "SNA angle (sella–nasion–A point)", 79.4, 83.2, above=2, below=3,
        labels={1: "normal maxilla", 2: "prognathic maxilla", 3: "retrognathic maxilla"},
    ),
    "ODI": _norm(
        "ODI", "overbite depth indicator", 68.4, 80.5, above=2, below=3,
        labels={1: "normal", 2: "deep bite tendency", 3: "open bite tendency"},
        mean=74.5, sd=6.07,
    ),
    "APDI": _norm(
        "APDI", "anteroposterior dysplasia indicator", 77.6, 85.2, above=3, below=2,
        labels={1: "normal", 2: "Class II tendency", 3: "Class III tendency"},
        mean=81.4, sd=3.8,
    ),
    "FHI": _norm(
        "FHI", "facial height index (posterior / anterior face height)", 0.65, 0.75, above=2, below=3,
        labels={1: "normal", 2: "short face tendency", 3: "long face tendency"},
    ),
    "FMA": _norm(
        "FMA", "FMA (ISBI): S–N to Go–Gn, not Tweed's FMA", 26.8, 31.4, above=2, below=3,
        labels={1: "normal", 2: "high angle tendency", 3: "low angle tendency"},
    ),
    "MW": _norm(
        "MW", "MW as in the challenge: signed distance between the incisor tips", 2.0, 4.5, above=4, below=3,
        labels={1: "normal", 2: "edge to edge", 3: "anterior cross bite", 4: "large overjet"},
        exactly_zero=2,
    ),
}  # fmt: skip
"""The norms and type rules of the eight measures, keyed by measure (ISBI 2015 challenge)."""

_COLUMN_TO_MEASURE = {f"{m.lower()}_{MEASURE_UNITS[m]}": m for m in CEPH_MEASURES}


def clinical_note(measure: str, value: float) -> str:
    """Where the ISBI 2015 definition or type rule of ``measure`` differs from clinical
    usage at ``value``, a one-sentence note saying so (``""`` elsewhere), for display next
    to the value:

    - ANB from 0° to below 3.2°: the ISBI rule calls it Class III, while it is within 2°
      of Steiner's clinical norm of 2° (Steiner 1953);
    - MW above 0 and below 2 mm: the ISBI rule labels it "anterior cross bite", while the
      upper incisor tip is ahead of the lower one;
    - FMA (always): the ISBI "FMA" is S–N to Go–Gn, not Tweed's Frankfort–mandibular plane
      angle (``fh_mp_deg`` of the named analyses);
    - FHI (always): the same ratio in percent is the Jarabak ratio, whose norm (62–65 %)
      is not the ISBI normal range (0.65–0.75), so the two can disagree.

    Example:
        >>> clinical_note("ANB", 2.92)[:30]
        'ISBI rule: every ANB below 3.2'
        >>> clinical_note("ANB", -1.0)
        ''
    """
    v = float(value)
    if not math.isfinite(v):
        return ""
    if measure == "ANB" and 0.0 <= v < CEPH_NORMS["ANB"].normal_low:
        return (
            "ISBI rule: every ANB below 3.2° is 'Class III'; this value is within 2° of Steiner's clinical norm of 2°."
        )
    if measure == "MW" and 0.0 < v < CEPH_NORMS["MW"].normal_low:
        return (
            "ISBI rule: every MW below 2 mm but 0 is 'anterior cross bite', positive ones too; here the upper "
            "incisor tip is ahead of the lower one (a cross bite proper has MW below 0)."
        )
    if measure == "FMA":
        return (
            "The ISBI 'FMA' is S–N to Go–Gn (Steiner's SN–GoGn), not Tweed's FMA (Frankfort horizontal to "
            "Go–Me), which the named analyses give."
        )
    if measure == "FHI":
        return (
            "ISBI normal range 0.65–0.75; the same ratio in percent is the Jarabak ratio, whose norm 62–65 % "
            "(named analyses) can flag it where this range does not."
        )
    return ""


def measure_key(key: str) -> str:
    """The measure name for a key given as ``"ANB"`` or as a column name (``"anb_deg"``).

    Raises:
        KeyError: for anything else, listing the known measures.
    """
    if key in CEPH_NORMS:
        return key
    if key in _COLUMN_TO_MEASURE:
        return _COLUMN_TO_MEASURE[key]
    raise KeyError(f"unknown cephalometric measure {key!r}; known: {list(CEPH_MEASURES)}")


# --------------------------------------------------------------------------- Cobb severity


@dataclass(frozen=True)
class CobbSeverityBand:
    """One display band of Cobb angles.

    Attributes:
        label: ``"normal"``, ``"mild"``, ``"moderate"`` or ``"severe"``.
        low_deg: lower bound, degrees.
        high_deg: upper bound, degrees (``inf`` for the last band).
        low_inclusive: whether ``low_deg`` itself belongs to the band.
        high_inclusive: whether ``high_deg`` itself belongs to the band.
    """

    label: str
    low_deg: float
    high_deg: float
    low_inclusive: bool
    high_inclusive: bool

    def contains(self, angle_deg: float) -> bool:
        lo = angle_deg >= self.low_deg if self.low_inclusive else angle_deg > self.low_deg
        hi = angle_deg <= self.high_deg if self.high_inclusive else angle_deg < self.high_deg
        return bool(lo and hi)

    @property
    def text(self) -> str:
        """The band as text, e.g. ``"10–25°"`` or ``"> 40°"``."""
        if math.isinf(self.high_deg):
            return f"> {self.low_deg:g}°"
        if self.low_deg == 0:
            return f"< {self.high_deg:g}°"
        return f"{self.low_deg:g}–{self.high_deg:g}°"


COBB_SEVERITY_BANDS: Final[tuple[CobbSeverityBand, ...]] = (
    CobbSeverityBand("normal", 0.0, 10.0, True, False),
    CobbSeverityBand("mild", 10.0, 25.0, True, False),
    CobbSeverityBand("moderate", 25.0, 40.0, True, True),
    CobbSeverityBand("severe", 40.0, math.inf, False, False),
)
"""Display bands: < 10° normal (no scoliosis), 10–25° mild, 25–40° moderate, > 40° severe.

The common clinical convention (Scoliosis Research Society: scoliosis is a Cobb angle of
10° or more). 25° belongs to "moderate" and 40° to "moderate"; see ``docs/concepts/cobb.md``.
"""


def cobb_severity(angle_deg: float) -> str:
    """The display band of a Cobb angle: ``"normal"``, ``"mild"``, ``"moderate"`` or ``"severe"``.

    Raises:
        LandmarkError: the angle is NaN, infinite or negative.

    Example:
        >>> cobb_severity(12.0), cobb_severity(40.0), cobb_severity(40.5)
        ('mild', 'moderate', 'severe')
    """
    a = float(angle_deg)
    if not math.isfinite(a) or a < 0:
        raise LandmarkError(f"Cobb angle must be finite and non-negative, got {angle_deg!r}")
    for band in COBB_SEVERITY_BANDS:
        if band.contains(a):
            return band.label
    raise AssertionError("the severity bands cover [0, inf)")  # pragma: no cover
