"""The eight cephalometric measures of the ISBI 2015 challenge and their anatomical types.

Definitions follow the challenge's classification script (see ``docs/concepts/measures.md``),
with points in millimetres (pixels × spacing), image axes, y down. Primitives:
``v(P, Q) = Q − P``; ``ang(u, w)`` the unsigned angle between two vectors in [0°, 180°];
``cross(u, w) = u.x·w.y − u.y·w.x``.

- SNA = ang(v(N, S), v(N, A)); SNB = ang(v(N, S), v(N, B)); ANB = SNA − SNB (degrees).
- ODI = ang(v(Me, Go), v(B, A)) + pal, with pal = ang(v(Po, Or), v(PNS, ANS)) negated
  when cross(v(Po, Or), v(PNS, ANS)) < 0 (degrees).
- APDI = ang(v(Or, Po), v(N, Pog)) + ab + pal, with ab = ang(v(N, Pog), v(A, B)) negated
  when cross(v(N, Pog), v(A, B)) > 0 (degrees).
- FHI = |S − Go| / |N − Me| (ratio).
- FMA = ang(v(S, N), v(Go, Gn)): the challenge's FMA measures S–N against Go–Gn (degrees).
- MW = |UIT − LIT|, negated when x(UIT) < x(LIT) (mm).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS
from cephspine.errors import LandmarkError, SpacingError
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS, MEASURE_UNITS, MeasureNorm, measure_key
from cephspine.prediction import Prediction
from cephspine.radiograph import Spacing, as_spacing, spacing_xy_mm

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MEASURE_LANDMARKS",
    "CephClassification",
    "CephMeasures",
    "CephType",
    "ceph_measures",
    "ceph_measures_batch",
    "ceph_types",
    "classify_ceph",
]

Facing = Literal["right", "left"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_N = len(CEPH_LANDMARKS)
_IDX = {abbr: i for i, abbr in enumerate(CEPH_ABBREVIATIONS)}

# The vectors (from, to) each measure measures; their lengths must not be zero.
_VECTORS: dict[str, tuple[tuple[str, str], ...]] = {
    "ANB": (("N", "S"), ("N", "A"), ("N", "B")),
    "SNB": (("N", "S"), ("N", "B")),
    "SNA": (("N", "S"), ("N", "A")),
    "ODI": (("Me", "Go"), ("B", "A"), ("Po", "Or"), ("PNS", "ANS")),
    "APDI": (("Or", "Po"), ("N", "Pog"), ("A", "B"), ("PNS", "ANS")),
    "FHI": (("N", "Me"),),  # the denominator; S = Go gives a defined ratio of 0
    "FMA": (("S", "N"), ("Go", "Gn")),
    "MW": (),  # coincident incisor tips are a defined 0 mm ("edge to edge")
}

MEASURE_LANDMARKS: dict[str, tuple[str, ...]] = {
    "ANB": ("S", "N", "A", "B"),
    "SNB": ("S", "N", "B"),
    "SNA": ("S", "N", "A"),
    "ODI": ("Me", "Go", "B", "A", "Po", "Or", "PNS", "ANS"),
    "APDI": ("Or", "Po", "N", "Pog", "A", "B", "PNS", "ANS"),
    "FHI": ("S", "Go", "N", "Me"),
    "FMA": ("S", "N", "Go", "Gn"),
    "MW": ("UIT", "LIT"),
}
"""The landmarks (abbreviations, see :data:`cephspine.anatomy.CEPH_ABBREVIATIONS`) each measure uses."""

# A vector shorter than this fraction of the image's landmark extent counts as zero length.
_DEGENERATE_REL = 1e-9


# --------------------------------------------------------------------------- helpers


def _ang(u: FloatArray, w: FloatArray) -> FloatArray:
    """Unsigned angle between vectors ``(..., 2)``, degrees in [0, 180] (atan2 of |cross| and dot)."""
    return np.degrees(np.arctan2(np.abs(_cross(u, w)), np.sum(u * w, axis=-1)))


def _cross(u: FloatArray, w: FloatArray) -> FloatArray:
    return np.asarray(u[..., 0] * w[..., 1] - u[..., 1] * w[..., 0], dtype=np.float64)


def _where(idx: npt.NDArray[np.intp], single: bool) -> str:
    if single:
        return ""
    shown = ", ".join(str(int(i)) for i in idx[:10])
    more = f" and {idx.size - 10} more" if idx.size > 10 else ""
    return f" in image(s) {shown}{more}"


def _requested(measures: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(measures, str):
        measures = (measures,)
    keys = {measure_key(m) for m in measures}
    if not keys:
        raise ValueError("measures must name at least one measure")
    return tuple(m for m in CEPH_MEASURES if m in keys)


def _batch_spacing(spacing: Any, n_images: int) -> FloatArray | None:
    """``(x_mm, y_mm)`` multipliers of shape ``(2,)`` or ``(M, 1, 2)``, or ``None``."""
    return spacing_xy_mm(spacing, n_images)


def _left_mask(facing: Facing | Sequence[str], n_images: int) -> npt.NDArray[np.bool_]:
    values = np.asarray([facing] if isinstance(facing, str) else list(facing), dtype=object)
    bad = [f for f in values if f not in ("right", "left")]
    if bad:
        raise ValueError(f"facing must be 'right' or 'left', got {bad[0]!r}")
    if values.size == 1:
        return np.full(n_images, values[0] == "left")
    if values.size != n_images:
        raise ValueError(f"facing must be one value or one per image ({n_images}), got {values.size}")
    return np.asarray(values == "left", dtype=bool)


def _compute(
    xy: FloatArray,
    scale: FloatArray | None,
    names: tuple[str, ...],
    *,
    integer_pixels: bool,
    left: npt.NDArray[np.bool_],
    single: bool,
) -> dict[str, FloatArray]:
    """The requested measures of ``(M, 19, 2)`` pixel landmarks, each an ``(M,)`` array."""
    pts = np.trunc(xy) if integer_pixels else xy.copy()
    # missing (NaN) or infinite landmarks, named per measure
    for m in names:
        needed = MEASURE_LANDMARKS[m]
        bad = ~np.all(np.isfinite(pts[:, [_IDX[a] for a in needed], :]), axis=2)  # (M, k)
        if bad.any():
            missing = [a for a, col in zip(needed, bad.T) if col.any()]
            raise LandmarkError(
                f"{m} is undefined: landmark(s) {', '.join(missing)} missing (NaN or infinite)"
                f"{_where(np.flatnonzero(bad.any(axis=1)), single)}"
            )
    mm = pts if scale is None else pts * scale
    mm[left, :, 0] *= -1.0  # a left-facing image is measured as its mirror image
    used = sorted({_IDX[a] for m in names for a in MEASURE_LANDMARKS[m]})
    extent = np.ptp(mm[:, used, :], axis=1).max(axis=1)  # (M,)

    def p(abbr: str) -> FloatArray:
        return np.asarray(mm[:, _IDX[abbr], :])

    def v(a: str, b: str) -> FloatArray:
        return p(b) - p(a)

    for m in names:
        for a, b in _VECTORS[m]:
            length = np.hypot(*v(a, b).T)
            bad = length <= _DEGENERATE_REL * extent
            if bad.any():
                raise LandmarkError(
                    f"{m} is undefined: {CEPH_LANDMARKS[_IDX[a]]} ({a}) and {CEPH_LANDMARKS[_IDX[b]]} ({b}) "
                    f"coincide{_where(np.flatnonzero(bad), single)}"
                )

    out: dict[str, FloatArray] = {}

    def pal() -> FloatArray:
        fh, pp = v("Po", "Or"), v("PNS", "ANS")
        angle = _ang(fh, pp)
        return np.where(_cross(fh, pp) < 0, -angle, angle)

    sna = snb = None
    if "SNA" in names or "ANB" in names:
        sna = _ang(v("N", "S"), v("N", "A"))
    if "SNB" in names or "ANB" in names:
        snb = _ang(v("N", "S"), v("N", "B"))
    for m in names:
        if m == "ANB":
            assert sna is not None and snb is not None
            out[m] = sna - snb
        elif m == "SNB":
            assert snb is not None
            out[m] = snb
        elif m == "SNA":
            assert sna is not None
            out[m] = sna
        elif m == "ODI":
            out[m] = _ang(v("Me", "Go"), v("B", "A")) + pal()
        elif m == "APDI":
            npog, ab_vec = v("N", "Pog"), v("A", "B")
            ab = _ang(npog, ab_vec)
            ab = np.where(_cross(npog, ab_vec) > 0, -ab, ab)
            out[m] = _ang(v("Or", "Po"), npog) + ab + pal()
        elif m == "FHI":
            out[m] = np.hypot(*v("Go", "S").T) / np.hypot(*v("Me", "N").T)
        elif m == "FMA":
            out[m] = _ang(v("S", "N"), v("Go", "Gn"))
        elif m == "MW":
            d = v("LIT", "UIT")
            dist = np.hypot(*d.T)
            out[m] = np.where(d[:, 0] < 0, -dist, dist)  # x(UIT) < x(LIT): upper tip behind
    return {m: np.asarray(out[m], dtype=np.float64) for m in names}


def _check_spacing(names: tuple[str, ...], scale: FloatArray | None) -> None:
    if "MW" in names and scale is None:
        raise SpacingError(
            "MW is a distance in mm and needs the pixel spacing: pass spacing= (the ISBI 2015 images "
            "have 0.1 mm) or leave MW out with measures=[...]"
        )


# --------------------------------------------------------------------------- measures


def ceph_measures_batch(
    xy: npt.ArrayLike,
    *,
    spacing: Spacing | float | Sequence[Any] | None = None,
    measures: str | Sequence[str] = CEPH_MEASURES,
    integer_pixels: bool = False,
    facing: Facing | Sequence[str] = "right",
) -> dict[str, FloatArray]:
    """The measures of many cephalograms at once (vectorised).

    Args:
        xy: ``(M, 19, 2)`` ``(x, y)`` landmarks in pixels, ISBI 2015 order.
        spacing: mm per pixel: one number (square pixels), one :class:`Spacing`, or a
            length-``M`` sequence of per-image spacings. ``None`` computes in pixels,
            which is fine for angles and FHI on square pixels but not for MW.
        measures: which measures to compute (default all eight); names or column names.
        integer_pixels: truncate coordinates to integer pixels first, as the challenge's
            script does (default ``False``: float coordinates).
        facing: ``"right"`` (anterior = +x, the ISBI images) or ``"left"``, one for all or
            one per image; a left-facing image is measured as its mirror image.

    Returns:
        ``{measure: (M,) array}`` in the order ANB, SNB, SNA, ODI, APDI, FHI, FMA, MW (the
        requested ones), degrees / ratio / mm; ``pandas.DataFrame(result)`` makes a table.

    Raises:
        LandmarkError: wrong shape, a needed landmark is NaN, or coincident landmarks
            make a measure undefined (the message names the measure and the images).
        SpacingError: MW requested without a spacing, or an invalid spacing.
    """
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (_N, 2):
        raise LandmarkError(f"cephalometric measures need landmarks of shape (M, {_N}, 2), got {arr.shape}")
    names = _requested(measures)
    scale = _batch_spacing(spacing, arr.shape[0])
    _check_spacing(names, scale)
    left = _left_mask(facing, arr.shape[0])
    return _compute(arr, scale, names, integer_pixels=integer_pixels, left=left, single=False)


@dataclass(frozen=True, eq=False)
class CephMeasures(Mapping[str, float]):
    """The measures of one cephalogram: a mapping ``{"ANB": …, …, "MW": …}``.

    Attributes:
        by_measure: measure → value, degrees (ANB, SNB, SNA, ODI, APDI, FMA), ratio (FHI), mm (MW).
        spacing: the spacing used, or ``None`` when measured in pixels.
        integer_pixels: whether coordinates were truncated to integer pixels first.
        facing: ``"right"`` or ``"left"``, the profile direction assumed.
        source: the image the landmarks came from, when known.
    """

    by_measure: Mapping[str, float]
    spacing: Spacing | None = None
    integer_pixels: bool = False
    facing: str = "right"
    source: str | None = None

    def __getitem__(self, key: str) -> float:
        return self.by_measure[measure_key(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_measure)

    def __len__(self) -> int:
        return len(self.by_measure)

    def to_row(self) -> dict[str, float]:
        """One table row: ``{"anb_deg": …, "fhi_ratio": …, "mw_mm": …}`` (unit-suffixed columns)."""
        return {f"{m.lower()}_{MEASURE_UNITS[m]}": float(x) for m, x in self.by_measure.items()}

    def to_dataframe(self) -> pd.DataFrame:
        """A tidy table: one row per measure with columns ``measure, value, unit``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "measure": list(self.by_measure),
                "value": [float(x) for x in self.by_measure.values()],
                "unit": [MEASURE_UNITS[m] for m in self.by_measure],
            }
        )

    def classify(self) -> CephClassification:
        """The anatomical types of these measures (:func:`classify_ceph`)."""
        return classify_ceph(self)

    def __repr__(self) -> str:
        parts = []
        for m, x in self.by_measure.items():
            unit = MEASURE_UNITS[m]
            parts.append(f"{m}={x:.2f}" + ("°" if unit == "deg" else " mm" if unit == "mm" else ""))
        return f"CephMeasures({', '.join(parts)})"


def _prediction_points(pred: Prediction) -> FloatArray:
    missing = [n for n in CEPH_LANDMARKS if n not in pred.names]
    if missing:
        raise LandmarkError(
            f"the prediction ({pred.model}) lacks the cephalometric landmark(s) {missing}; "
            "cephalometric measures need the 19 ISBI 2015 landmarks"
        )
    return np.stack([pred.point(n) for n in CEPH_LANDMARKS])


def ceph_measures(
    xy: npt.ArrayLike | Prediction,
    *,
    spacing: Spacing | float | Sequence[float] | None = None,
    measures: str | Sequence[str] = CEPH_MEASURES,
    integer_pixels: bool = False,
    facing: Facing | None = None,
) -> CephMeasures:
    """The eight cephalometric measures of the ISBI 2015 challenge on one cephalogram.

    Args:
        xy: ``(19, 2)`` ``(x, y)`` landmarks in pixels in the ISBI 2015 order, or a
            :class:`~cephspine.Prediction` (landmarks taken by name).
        spacing: mm per pixel (a number, a ``(row_mm, col_mm)`` pair or a
            :class:`Spacing`); default: the prediction's spacing, or ``None`` for arrays.
            An explicit value overrides the prediction's. Without a spacing the
            geometry is in pixels (square pixels assumed) and MW cannot be computed.
        measures: the measures to compute (default all eight).
        integer_pixels: truncate coordinates to integer pixels first, as the challenge's
            script does, for exact reproduction (default ``False``).
        facing: ``"right"`` (anterior = +x, as the ISBI images) or ``"left"``; a
            left-facing profile is measured as its mirror image, which matters for the
            signed parts of ODI, APDI and MW. Default: ``"left"`` for a prediction made
            on a mirrored image (``meta["mirrored"]``), otherwise ``"right"``.

    Returns:
        A :class:`CephMeasures` mapping, keyed ``"ANB", "SNB", "SNA", "ODI", "APDI",
        "FHI", "FMA", "MW"``.

    Raises:
        LandmarkError: not 19 landmarks, a needed landmark is NaN, or coincident
            landmarks make a measure undefined (the message names the measure).
        SpacingError: MW requested without a spacing.

    Example::

        from cephspine import IsbiDataset
        from cephspine.geometry import ceph_measures

        rec = IsbiDataset("isbi2015")["001"]
        m = ceph_measures(rec.landmarks, spacing=0.1)
        m["ANB"], m.classify()["ANB"].label      # value in degrees, e.g. "Class III skeletal"
        row = m.to_row()                           # {"anb_deg": ..., "mw_mm": ...}
    """
    source = None
    if isinstance(xy, Prediction):
        pts = _prediction_points(xy)
        if spacing is None:
            spacing = xy.spacing
        if facing is None:
            facing = "left" if xy.meta.get("mirrored") else "right"
        source = xy.source
    else:
        pts = np.asarray(xy, dtype=np.float64)
        if pts.shape != (_N, 2):
            raise LandmarkError(f"cephalometric measures need {_N} landmarks of shape ({_N}, 2), got {pts.shape}")
    sp = as_spacing(spacing, plausible=False)
    names = _requested(measures)
    scale = sp.xy_mm if sp is not None else None
    _check_spacing(names, scale)
    fac: Facing = facing or "right"
    values = _compute(pts[None], scale, names, integer_pixels=integer_pixels, left=_left_mask(fac, 1), single=True)
    return CephMeasures(
        {m: float(x[0]) for m, x in values.items()},
        spacing=sp,
        integer_pixels=integer_pixels,
        facing=fac,
        source=source,
    )


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class CephType:
    """The anatomical type of one measure's value.

    Attributes:
        measure: ``"ANB"`` … ``"MW"``.
        value: the measure's value, in :attr:`unit`.
        type: the type number (1 = normal; the others per measure, as in the challenge).
        label: readable label, e.g. ``"Class II skeletal"``.
        norm: the norm and rule used (:data:`~cephspine.geometry.norms.CEPH_NORMS`).
    """

    measure: str
    value: float
    type: int
    label: str
    norm: MeasureNorm = field(repr=False)

    @property
    def unit(self) -> str:
        return self.norm.unit

    @property
    def normal_low(self) -> float:
        return self.norm.normal_low

    @property
    def normal_high(self) -> float:
        return self.norm.normal_high

    @property
    def normal_range(self) -> str:
        """The normal (type 1) range as text, e.g. ``"3.2–5.7°"``."""
        return self.norm.normal_range

    @property
    def is_normal(self) -> bool:
        return self.type == 1


@dataclass(frozen=True, eq=False)
class CephClassification(Mapping[str, CephType]):
    """The anatomical types of a set of measures: a mapping measure → :class:`CephType`."""

    entries: Mapping[str, CephType]

    def __getitem__(self, key: str) -> CephType:
        return self.entries[measure_key(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def types(self) -> dict[str, int]:
        """Measure → type number."""
        return {m: e.type for m, e in self.entries.items()}

    @property
    def labels(self) -> dict[str, str]:
        """Measure → readable label."""
        return {m: e.label for m, e in self.entries.items()}

    @property
    def norms(self) -> dict[str, MeasureNorm]:
        """Measure → the norm used."""
        return {m: e.norm for m, e in self.entries.items()}

    def to_row(self) -> dict[str, int]:
        """One table row of type numbers: ``{"anb_type": 3, …}``."""
        return {f"{m.lower()}_type": e.type for m, e in self.entries.items()}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per measure: ``measure, value, unit, type, label, normal_low, normal_high, normal_range``."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "measure": m,
                    "value": e.value,
                    "unit": e.unit,
                    "type": e.type,
                    "label": e.label,
                    "normal_low": e.normal_low,
                    "normal_high": e.normal_high,
                    "normal_range": e.normal_range,
                }
                for m, e in self.entries.items()
            ]
        )

    def __repr__(self) -> str:
        return "CephClassification(" + ", ".join(f"{m}={e.type} ({e.label})" for m, e in self.entries.items()) + ")"


def _measure_items(values: Any) -> list[tuple[str, Any]]:
    """``(measure, value)`` pairs of the keys of ``values`` that name a measure, in the papers' order."""
    found: dict[str, Any] = {}
    for key in list(values.keys()):
        try:
            m = measure_key(str(key))
        except KeyError:
            continue
        if m in found:
            raise ValueError(f"measure {m} is given twice (as {m!r} and as a column name)")
        found[m] = values[key]
    if not found:
        raise KeyError(f"no cephalometric measure among the keys {list(values.keys())}; known: {list(CEPH_MEASURES)}")
    return [(m, found[m]) for m in CEPH_MEASURES if m in found]


def classify_ceph(measures: Mapping[str, float]) -> CephClassification:
    """The anatomical type of each measure, numbered as in the ISBI 2015 challenge.

    Type 1 is normal (closed interval); the other numbers are per measure — e.g. ANB:
    2 = Class II (> 5.7°), 3 = Class III (< 3.2°); SNB: 2 = retrognathic (< 74.6°).
    The norms are in :data:`cephspine.geometry.norms.CEPH_NORMS`.

    Args:
        measures: measure → value, e.g. a :class:`CephMeasures` or a dict; keys are
            measure names (``"ANB"``) or column names (``"anb_deg"``); other keys are
            ignored.

    Returns:
        A :class:`CephClassification` with value, type number, label and norm per measure.

    Raises:
        LandmarkError: a value is NaN or infinite.
        KeyError: no key names a measure.

    Example:
        >>> c = classify_ceph({"ANB": 6.1, "SNB": 73.0})
        >>> c["ANB"].type, c["ANB"].label, c["SNB"].label, c["SNB"].normal_range
        (2, 'Class II skeletal', 'retrognathic mandible', '74.6–78.7°')
    """
    entries: dict[str, CephType] = {}
    for m, value in _measure_items(measures):
        norm = CEPH_NORMS[m]
        x = float(value)
        t = int(norm.classify(x))
        entries[m] = CephType(m, x, t, norm.label(t), norm)
    return CephClassification(entries)


def ceph_types(values: Mapping[str, npt.ArrayLike] | pd.DataFrame) -> dict[str, IntArray]:
    """Type numbers for cohorts (vectorised :func:`classify_ceph`).

    Args:
        values: measure → ``(M,)`` values, e.g. the result of
            :func:`ceph_measures_batch`, or a DataFrame with measure columns (``"ANB"`` or
            ``"anb_deg"``); other keys/columns are ignored.

    Returns:
        ``{measure: (M,) int array}`` in the papers' order.

    Raises:
        LandmarkError: a value is NaN or infinite (the message names the measure).
        KeyError: no key names a measure.
    """
    return {m: CEPH_NORMS[m].classify(np.asarray(x, dtype=np.float64)) for m, x in _measure_items(values)}
