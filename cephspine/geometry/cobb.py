"""Cobb angles from the 68 vertebra corners of a spinal AP radiograph.

The default, ``method="reference"``, reproduces the AASCE/BoostNet dataset's own
reference program step by step, quirks included (see ``docs/concepts/cobb.md``): it is what
the published comparisons (the AASCE challenge's SMAPE, the seed paper) use on both the
predicted and the ground-truth landmarks. Vertebrae are numbered 0 (T1) … 16 (L5); point
``k`` of the 68 is vertebra ``k // 4``, corner ``k % 4`` in the order TL, TR, BL, BR.

``method="endplates"`` is a cleaner clinical variant measured between endplate lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from cephspine.anatomy import SPINE_LANDMARKS, VERTEBRAE
from cephspine.errors import LandmarkError
from cephspine.geometry.ceph import _where
from cephspine.geometry.norms import cobb_severity
from cephspine.prediction import Prediction

if TYPE_CHECKING:
    import pandas as pd
    import shapely

__all__ = [
    "COBB_CURVES",
    "CobbAngles",
    "CobbAnglesBatch",
    "CobbCurve",
    "angle_matrix",
    "cobb_angles",
    "cobb_angles_batch",
    "curve_region",
    "vertebra_polygons",
    "vertebra_validity",
]

CobbMethod = Literal["reference", "endplates"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

COBB_CURVES: tuple[str, ...] = ("pt", "mt", "tl")
"""The three angles, named as the dataset names them (``pt_deg, mt_deg, tl_deg``).

In the reference algorithm the first ("PT") is the largest angle between any two
vertebrae and the other two are found relative to it; they are not anatomical regions.
"""

_NV = len(VERTEBRAE)
_NP = len(SPINE_LANDMARKS)
_COS_DECIMALS = 8  # the reference program rounds the cosines to 8 decimals


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CobbCurve:
    """One of the three angles with its end vertebrae.

    Attributes:
        name: ``"pt"``, ``"mt"`` or ``"tl"``.
        angle_deg: the angle, degrees (non-negative; above 90° possible in the reference
            algorithm when corners are out of order).
        upper_vertebra: index (0 = T1 … 16 = L5) of the upper end vertebra.
        lower_vertebra: index of the lower end vertebra (``>= upper_vertebra``).
    """

    name: str
    angle_deg: float
    upper_vertebra: int
    lower_vertebra: int

    @property
    def upper_name(self) -> str:
        """The upper end vertebra's name, e.g. ``"T5"``."""
        return VERTEBRAE[self.upper_vertebra]

    @property
    def lower_name(self) -> str:
        return VERTEBRAE[self.lower_vertebra]

    @property
    def severity(self) -> str:
        """Display band: ``"normal"`` (< 10°), ``"mild"``, ``"moderate"`` or ``"severe"`` (> 40°)."""
        return cobb_severity(self.angle_deg)

    @property
    def region(self) -> str:
        """The part of the spine between the end vertebrae (:func:`curve_region`), e.g.
        ``"thoracic"``; unlike :attr:`name`, an anatomical region."""
        return curve_region(self.upper_vertebra, self.lower_vertebra)

    @property
    def number(self) -> int:
        """1, 2 or 3: the place of the curve in :data:`COBB_CURVES` (1 is the largest
        angle in the reference algorithm)."""
        return COBB_CURVES.index(self.name) + 1 if self.name in COBB_CURVES else 0


def curve_region(upper_vertebra: int, lower_vertebra: int) -> str:
    """Where a curve runs, from its end vertebrae alone (indices 0 = T1 … 16 = L5):
    ``"thoracic"`` when both are thoracic (T1–T12), ``"lumbar"`` when both are lumbar
    (L1–L5), ``"thoracic to lumbar"`` when it runs from a thoracic to a lumbar vertebra.

    A description of the span, not the SRS curve type, which goes by the apex (a
    thoracolumbar curve has its apex at T12–L1): a T3–L3 curve is "thoracic to lumbar".

    Example:
        >>> curve_region(0, 4), curve_region(9, 13), curve_region(12, 16)
        ('thoracic', 'thoracic to lumbar', 'lumbar')
    """
    lumbar = [VERTEBRAE[k].startswith("L") for k in (upper_vertebra, lower_vertebra)]
    return "lumbar" if all(lumbar) else "thoracic to lumbar" if any(lumbar) else "thoracic"


@dataclass(frozen=True, eq=False)
class CobbAngles:
    """The three Cobb angles of one radiograph.

    Attributes:
        curves: the three :class:`CobbCurve` in the order pt, mt, tl.
        method: ``"reference"`` or ``"endplates"``.
        s_curve: the reference algorithm's S-curve decision (``None`` for ``"endplates"``).
        image_height: the image height used (reference algorithm), pixels.
        invalid_vertebrae: vertebrae whose corners do not make a proper quadrilateral in
            TL, TR, BR, BL order (:func:`vertebra_validity`) — usually corners out of
            order. The reference algorithm still measures them (that is how angles above
            90° arise).
    """

    curves: tuple[CobbCurve, CobbCurve, CobbCurve]
    method: str
    s_curve: bool | None
    image_height: float | None
    invalid_vertebrae: tuple[str, ...] = ()

    @property
    def pt(self) -> float:
        """The first angle (the largest curve in the reference algorithm), degrees."""
        return self.curves[0].angle_deg

    @property
    def mt(self) -> float:
        """The second angle, degrees."""
        return self.curves[1].angle_deg

    @property
    def tl(self) -> float:
        """The third angle, degrees."""
        return self.curves[2].angle_deg

    @property
    def angles_deg(self) -> FloatArray:
        """``(3,)`` array ``(pt, mt, tl)``, degrees (the layout of ``angles.csv``)."""
        return np.array([c.angle_deg for c in self.curves], dtype=np.float64)

    @property
    def severity(self) -> dict[str, str]:
        """Curve name → display band."""
        return {c.name: c.severity for c in self.curves}

    def to_row(self) -> dict[str, Any]:
        """One table row: ``pt_deg, mt_deg, tl_deg``, the end vertebrae (``pt_upper`` …) and ``s_curve``."""
        row: dict[str, Any] = {f"{c.name}_deg": c.angle_deg for c in self.curves}
        for c in self.curves:
            row[f"{c.name}_upper"] = c.upper_name
            row[f"{c.name}_lower"] = c.lower_name
        row["s_curve"] = self.s_curve
        return row

    def to_dataframe(self) -> pd.DataFrame:
        """One row per curve: ``curve, angle_deg, upper_vertebra, lower_vertebra, severity``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "curve": [c.name for c in self.curves],
                "angle_deg": [c.angle_deg for c in self.curves],
                "upper_vertebra": [c.upper_name for c in self.curves],
                "lower_vertebra": [c.lower_name for c in self.curves],
                "severity": [c.severity for c in self.curves],
            }
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name.upper()} {c.angle_deg:.1f}° ({c.upper_name}–{c.lower_name})" for c in self.curves)
        extra = f", {len(self.invalid_vertebrae)} invalid vertebra(e)" if self.invalid_vertebrae else ""
        return f"CobbAngles({self.method}: {parts}{extra})"


@dataclass(frozen=True, eq=False)
class CobbAnglesBatch:
    """Cobb angles of ``M`` radiographs (vectorised result of :func:`cobb_angles_batch`).

    Attributes:
        angles_deg: ``(M, 3)`` angles ``(pt, mt, tl)``, degrees.
        end_vertebrae: ``(M, 3, 2)`` ``(upper, lower)`` vertebra indices of each curve.
        s_curve: ``(M,)`` S-curve decisions (reference method), or ``None``.
        valid_vertebrae: ``(M, 17)`` whether each vertebra's quadrilateral is valid.
        method: ``"reference"`` or ``"endplates"``.
        image_heights: ``(M,)`` image heights used, pixels, or ``None``.
    """

    angles_deg: FloatArray
    end_vertebrae: IntArray
    s_curve: BoolArray | None
    valid_vertebrae: BoolArray
    method: str
    image_heights: FloatArray | None

    def __len__(self) -> int:
        return int(self.angles_deg.shape[0])

    @property
    def pt(self) -> FloatArray:
        return self.angles_deg[:, 0]

    @property
    def mt(self) -> FloatArray:
        return self.angles_deg[:, 1]

    @property
    def tl(self) -> FloatArray:
        return self.angles_deg[:, 2]

    def __getitem__(self, i: int) -> CobbAngles:
        """The result of image ``i`` as a :class:`CobbAngles`."""
        ends = self.end_vertebrae[i]
        c = [
            CobbCurve(name, float(self.angles_deg[i, j]), int(ends[j, 0]), int(ends[j, 1]))
            for j, name in enumerate(COBB_CURVES)
        ]
        return CobbAngles(
            (c[0], c[1], c[2]),
            self.method,
            None if self.s_curve is None else bool(self.s_curve[i]),
            None if self.image_heights is None else float(self.image_heights[i]),
            tuple(VERTEBRAE[k] for k in np.flatnonzero(~self.valid_vertebrae[i])),
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per image: ``pt_deg, mt_deg, tl_deg``, end vertebrae names, ``s_curve``, ``n_invalid_vertebrae``."""
        import pandas as pd

        names = np.asarray(VERTEBRAE, dtype=object)
        data: dict[str, Any] = {f"{c}_deg": self.angles_deg[:, j] for j, c in enumerate(COBB_CURVES)}
        for j, c in enumerate(COBB_CURVES):
            data[f"{c}_upper"] = names[self.end_vertebrae[:, j, 0]]
            data[f"{c}_lower"] = names[self.end_vertebrae[:, j, 1]]
        data["s_curve"] = self.s_curve if self.s_curve is not None else [None] * len(self)
        data["n_invalid_vertebrae"] = (~self.valid_vertebrae).sum(axis=1)
        return pd.DataFrame(data)

    def __repr__(self) -> str:
        return f"CobbAnglesBatch({self.method}, {len(self)} images)"


# --------------------------------------------------------------------------- input checks


def _spine_points(xy: npt.ArrayLike, *, batch: bool) -> FloatArray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != (3 if batch else 2) or arr.shape[-2:] != (_NP, 2):
        shape = f"(M, {_NP}, 2)" if batch else f"({_NP}, 2)"
        raise LandmarkError(f"Cobb angles need the {_NP} vertebra corners as shape {shape}, got {arr.shape}")
    return arr


def _check_points(pts: FloatArray, single: bool) -> None:
    bad = ~np.all(np.isfinite(pts), axis=-1)  # (M, 68)
    if bad.any():
        names = [SPINE_LANDMARKS[k] for k in np.flatnonzero(bad.any(axis=0))]
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        raise LandmarkError(
            f"Cobb angles are undefined: corner(s) {shown} missing (NaN or infinite)"
            f"{_where(np.flatnonzero(bad.any(axis=1)), single)}"
        )


def _check_lengths(d: FloatArray, single: bool, measure: str, points: str) -> None:
    """Raise :class:`LandmarkError` naming the vertebrae whose vectors ``d`` ``(M, 17, 2)`` have zero length."""
    zero = np.hypot(d[..., 0], d[..., 1]) == 0
    if zero.any():
        names = [VERTEBRAE[k] for k in np.flatnonzero(zero.any(axis=0))]
        raise LandmarkError(
            f"{measure} are undefined: {points} of {', '.join(names)} coincide"
            f"{_where(np.flatnonzero(zero.any(axis=1)), single)}"
        )


def _heights(image_heights: Any, n: int) -> FloatArray:
    h = np.asarray(image_heights, dtype=np.float64)
    if h.ndim == 0:
        h = np.full(n, float(h))
    if h.shape != (n,):
        raise ValueError(f"image_heights must be one value or one per image ({n}), got shape {h.shape}")
    if not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError("image heights must be positive and finite (pixels)")
    return h


# --------------------------------------------------------------------------- geometry


def vertebra_polygons(xy68: npt.ArrayLike) -> list[shapely.Polygon]:
    """The 17 vertebrae as shapely polygons, ring TL → TR → BR → BL.

    Args:
        xy68: ``(68, 2)`` corners, pixels.

    Returns:
        17 :class:`shapely.Polygon`, T1 first. A vertebra whose corners are out of order
        gives a self-intersecting (invalid) polygon.
    """
    import shapely

    pts = _spine_points(xy68, batch=False)
    rings = pts.reshape(_NV, 4, 2)[:, [0, 1, 3, 2, 0], :]
    return list(shapely.polygons(rings))


def vertebra_validity(xy: npt.ArrayLike) -> BoolArray:
    """Whether each vertebra's corners make a proper quadrilateral in the expected order.

    The quadrilateral TL → TR → BR → BL must be a valid (not self-intersecting) polygon
    of positive area, traversed clockwise as seen on the image (y down; counter-clockwise
    in y-up terms). Corners out of order make it self-intersecting or reverse its
    orientation; coincident corners make it degenerate. Vectorised with shapely.

    Args:
        xy: ``(68, 2)`` or ``(M, 68, 2)`` corners, pixels.

    Returns:
        ``(17,)`` or ``(M, 17)`` booleans (``False`` also where a corner is NaN).
    """
    import shapely

    arr = np.asarray(xy, dtype=np.float64)
    if arr.shape[-2:] != (_NP, 2) or arr.ndim not in (2, 3):
        raise LandmarkError(f"vertebra corners must have shape ({_NP}, 2) or (M, {_NP}, 2), got {arr.shape}")
    rings = arr.reshape(arr.shape[:-2] + (_NV, 4, 2))[..., [0, 1, 3, 2, 0], :]
    finite = np.all(np.isfinite(rings), axis=(-1, -2))
    safe = np.where(finite[..., None, None], rings, 0.0)
    polys = shapely.polygons(safe.reshape(-1, 5, 2))
    ok = shapely.is_valid(polys) & (shapely.area(polys) > 0) & shapely.is_ccw(shapely.get_exterior_ring(polys))
    return np.asarray(ok.reshape(finite.shape) & finite, dtype=bool)


def _axes(pts: FloatArray, single: bool) -> FloatArray:
    """Vertebra axes ``(M, 17, 2)``: left-side midpoint → right-side midpoint."""
    v = pts.reshape(-1, _NV, 4, 2)
    left = (v[:, :, 0] + v[:, :, 2]) / 2.0
    right = (v[:, :, 1] + v[:, :, 3]) / 2.0
    ax = right - left
    _check_lengths(ax, single, "Cobb angles", "the left and right side midpoints")
    return np.asarray(ax, dtype=np.float64)


def angle_matrix(xy: npt.ArrayLike) -> FloatArray:
    """The reference algorithm's angle matrix between vertebra axes, degrees.

    ``A[i, j]`` is the arc-cosine of the normalised dot product of the axes of vertebrae
    ``i`` and ``j`` (left-side midpoint → right-side midpoint), the cosine rounded to 8
    decimals first; not folded to 90°, so it lies in [0°, 180°].

    Args:
        xy: ``(68, 2)`` or ``(M, 68, 2)`` corners, pixels.

    Returns:
        ``(17, 17)`` or ``(M, 17, 17)``, degrees.

    Raises:
        LandmarkError: wrong shape, NaN corners, or a vertebra with a zero-length axis.
    """
    arr = np.asarray(xy, dtype=np.float64)
    single = arr.ndim == 2
    pts = _spine_points(arr[None] if single else arr, batch=True)
    _check_points(pts, single)
    a = _angle_matrix(_axes(pts, single))
    return a[0] if single else a


def _angle_matrix(ax: FloatArray) -> FloatArray:
    dot = np.einsum("mid,mjd->mij", ax, ax)
    norm = np.hypot(ax[..., 0], ax[..., 1])
    cos = np.round(dot / (norm[:, :, None] * norm[:, None, :]), _COS_DECIMALS)
    return np.asarray(np.degrees(np.arccos(cos)), dtype=np.float64)


def _is_s_curve(pts: FloatArray) -> BoolArray:
    """The reference S-curve test on the 34 endplate midpoints, vectorised.

    ``d_i = (y_i − y_33)/(y_0 − y_33) − (x_i − x_33)/(x_0 − x_33)`` for i = 0…31; S when
    ``Σ d_i d_j ≠ Σ |d_i d_j|``. Kept as that comparison (not a sign test) so that the
    non-finite values of a spine whose top and bottom midpoints share x (division by 0)
    behave as in the reference program: a NaN sum differs from everything, so S.
    """
    v = pts.reshape(-1, _NV, 4, 2)
    mid = np.empty((v.shape[0], 2 * _NV, 2))
    mid[:, 0::2] = (v[:, :, 0] + v[:, :, 1]) / 2.0
    mid[:, 1::2] = (v[:, :, 2] + v[:, :, 3]) / 2.0
    last = mid[:, -1:, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (mid[:, : 2 * _NV - 2, :] - last) / (mid[:, :1, :] - last)
        d = rel[..., 1] - rel[..., 0]
        prod = d[:, :, None] * d[:, None, :]
        signed = prod.sum(axis=(1, 2))
        absolute = np.abs(prod).sum(axis=(1, 2))
    return np.asarray(signed != absolute, dtype=bool)


def _masked_argmax(rows: FloatArray, mask: BoolArray) -> tuple[FloatArray, IntArray]:
    """Max and first argmax of each row over the ``True`` entries of ``mask`` (``(M, K)``)."""
    masked = np.where(mask, rows, -np.inf)
    k = np.argmax(masked, axis=1)
    return masked[np.arange(len(k)), k], k.astype(np.int64)


def _reference(pts: FloatArray, heights: FloatArray, single: bool) -> tuple[FloatArray, IntArray, BoolArray]:
    m = np.arange(pts.shape[0])
    a = _angle_matrix(_axes(pts, single))  # (M, 17, 17)
    col_max = a.max(axis=1)  # per column, the max over rows
    col_arg = a.argmax(axis=1)  # the row attaining it (first on ties)
    u = col_max.argmax(axis=1)  # the column with the largest max (first on ties)
    lo = col_arg[m, u]
    first = col_max[m, u]
    s = _is_s_curve(pts)
    v = pts.reshape(-1, _NV, 4, 2)
    bottom_y = (v[:, :, 2, 1] + v[:, :, 3, 1]) / 2.0  # bottom endplate midpoints, (M, 17)
    upper_half = bottom_y[m, u] + bottom_y[m, lo] < heights
    j = np.arange(_NV)[None, :]
    row_u, row_l = a[m, u], a[m, lo]
    second, k = _masked_argmax(row_u, j <= u[:, None])  # S curve: max of A[u, 0..u]
    third_up, k_up = _masked_argmax(row_l, j >= lo[:, None])  # S, upper half: max of A[l, l..16]
    row_k = a[m, k]
    third_low, k_low = _masked_argmax(row_k, j <= k[:, None])  # S otherwise: max of A[k, 0..k]

    angles = np.empty((len(m), 3))
    ends = np.empty((len(m), 3, 2), dtype=np.int64)
    angles[:, 0] = first
    ends[:, 0, 0], ends[:, 0, 1] = np.minimum(u, lo), np.maximum(u, lo)
    # not an S curve: A[0, u] and A[16, l]
    ns = ~s
    angles[ns, 1] = a[m, 0, u][ns]
    angles[ns, 2] = a[m, _NV - 1, lo][ns]
    ends[ns, 1] = np.stack([np.zeros_like(u), u], axis=1)[ns]
    ends[ns, 2] = np.stack([lo, np.full_like(lo, _NV - 1)], axis=1)[ns]
    # S curve
    angles[s, 1] = second[s]
    ends[s, 1] = np.stack([k, u], axis=1)[s]
    su, sl = s & upper_half, s & ~upper_half
    angles[su, 2] = third_up[su]
    ends[su, 2] = np.stack([lo, k_up], axis=1)[su]
    angles[sl, 2] = third_low[sl]
    ends[sl, 2] = np.stack([k_low, k], axis=1)[sl]
    return angles, np.sort(ends, axis=2), s


def _endplate_tilts(pts: FloatArray, single: bool) -> tuple[FloatArray, FloatArray]:
    """Tilts of the superior and inferior endplates ``(M, 17)``, degrees in [-90, 90]."""
    v = pts.reshape(-1, _NV, 4, 2)
    out = []
    for name, d in (("superior", v[:, :, 1] - v[:, :, 0]), ("inferior", v[:, :, 3] - v[:, :, 2])):
        _check_lengths(d, single, "Cobb angles (endplates)", f"the {name} endplate corners")
        # the line's direction, pointing right: the corner order within an endplate is
        # irrelevant, and a mirror image gives exactly the negated tilts
        d = np.where((d[..., :1] < 0), -d, d)
        out.append(np.degrees(np.arctan2(d[..., 1], d[..., 0])))
    return out[0], out[1]


def _endplates(pts: FloatArray, single: bool) -> tuple[FloatArray, IntArray]:
    sup, inf = _endplate_tilts(pts, single)
    n = pts.shape[0]
    m = np.arange(n)
    c = np.abs(sup[:, :, None] - inf[:, None, :])  # C[a, b]: superior endplate of a vs inferior endplate of b
    i, j = np.meshgrid(np.arange(_NV), np.arange(_NV), indexing="ij")
    below = (i < j)[None]

    def best(mask: BoolArray) -> tuple[FloatArray, IntArray, BoolArray]:
        flat = np.where(mask, c, -np.inf).reshape(n, -1)
        idx = np.argmax(flat, axis=1)
        value = flat[m, idx]
        a, b = np.divmod(idx, _NV)
        none = ~np.isfinite(value)  # no pair available (the end vertebra is T1 or L5)
        return np.where(none, 0.0, value), np.stack([a, b], axis=1).astype(np.int64), none

    main, main_ends, _ = best(below)
    upper_end, lower_end = main_ends[:, 0], main_ends[:, 1]
    above, above_ends, no_above = best(below & (j <= upper_end[:, None, None]))
    under, under_ends, no_under = best(below & (i >= lower_end[:, None, None]))
    # without a pair, the curve is 0° at the end vertebra itself
    above_ends[no_above] = upper_end[no_above, None]
    under_ends[no_under] = lower_end[no_under, None]
    angles = np.stack([main, above, under], axis=1)
    ends = np.stack([main_ends, above_ends, under_ends], axis=1)
    return angles, ends


def _batch(pts: FloatArray, image_heights: Any, method: CobbMethod, single: bool) -> CobbAnglesBatch:
    _check_points(pts, single)
    if method == "reference":
        if image_heights is None:
            raise ValueError(
                "the reference Cobb algorithm needs the image height (image_height=, in pixels); "
                "a Prediction carries it"
            )
        heights: FloatArray | None = _heights(image_heights, pts.shape[0])
        assert heights is not None
        angles, ends, s = _reference(pts, heights, single)
        s_curve: BoolArray | None = s
    elif method == "endplates":
        heights = None if image_heights is None else _heights(image_heights, pts.shape[0])
        angles, ends = _endplates(pts, single)
        s_curve = None
    else:
        raise ValueError(f"method must be 'reference' or 'endplates', got {method!r}")
    return CobbAnglesBatch(
        angles_deg=np.asarray(angles, dtype=np.float64),
        end_vertebrae=np.asarray(ends, dtype=np.int64),
        s_curve=s_curve,
        valid_vertebrae=vertebra_validity(pts),
        method=method,
        image_heights=heights,
    )


# --------------------------------------------------------------------------- public API


def cobb_angles_batch(
    xy: npt.ArrayLike,
    image_heights: float | Sequence[float] | npt.ArrayLike | None = None,
    *,
    method: CobbMethod = "reference",
) -> CobbAnglesBatch:
    """Cobb angles of many radiographs at once (vectorised over images).

    Args:
        xy: ``(M, 68, 2)`` vertebra corners, pixels (T1 TL … L5 BR).
        image_heights: the height in pixels of each image the landmarks are on (one
            value for all, or ``(M,)``); required by the reference algorithm.
        method: ``"reference"`` (default; the dataset's program) or ``"endplates"``.

    Returns:
        A :class:`CobbAnglesBatch`; ``result.angles_deg`` is ``(M, 3)`` like ``angles.csv``.

    Raises:
        LandmarkError: wrong shape, NaN corners, or a vertebra whose axis (or, for
            ``"endplates"``, an endplate) has zero length; the message names the images.
        ValueError: missing or invalid image heights, or an unknown method.
    """
    pts = _spine_points(xy, batch=True)
    return _batch(pts, image_heights, method, single=False)


def cobb_angles(
    xy68: npt.ArrayLike | Prediction,
    *,
    image_height: float | None = None,
    method: CobbMethod = "reference",
) -> CobbAngles:
    """The three Cobb angles of one spinal AP radiograph, with their end vertebrae.

    The default reproduces the AASCE dataset's reference program (angles between
    vertebra axes, the largest first, the S-curve test and the image-height condition;
    see ``docs/concepts/cobb.md``); it reproduces ``angles.csv`` from the ground-truth
    landmarks. ``method="endplates"`` measures between endplate lines instead.

    Args:
        xy68: ``(68, 2)`` vertebra corners in pixels, or a spine
            :class:`~cephspine.Prediction` (corners taken by name).
        image_height: height of the image in pixels; default: the prediction's. Needed
            by the reference algorithm.
        method: ``"reference"`` (default) or ``"endplates"``.

    Returns:
        A :class:`CobbAngles` with ``.pt``, ``.mt``, ``.tl`` (degrees) and ``.curves``.

    Raises:
        LandmarkError: not 68 corners, NaN corners, or a zero-length vertebra axis.
        ValueError: the reference method without an image height.

    Example:
        >>> import numpy as np
        >>> xy = np.zeros((68, 2))
        >>> for k in range(17):  # straight spine, T12 (index 11) tilted by 20 degrees
        ...     t = np.radians(20.0 if k == 11 else 0.0)
        ...     c, s = np.cos(t), np.sin(t)
        ...     for j, (dx, dy) in enumerate([(-20, -8), (20, -8), (-20, 8), (20, 8)]):
        ...         xy[4 * k + j] = (100 + c * dx - s * dy, 30 + 40 * k + s * dx + c * dy)
        >>> r = cobb_angles(xy, image_height=800)
        >>> round(r.pt, 3), r.curves[0].upper_name, r.curves[0].lower_name
        (20.0, 'T1', 'T12')
    """
    if isinstance(xy68, Prediction):
        missing = [n for n in SPINE_LANDMARKS if n not in xy68.names]
        if missing:
            raise LandmarkError(
                f"the prediction ({xy68.model}) lacks {len(missing)} vertebra corner(s), e.g. {missing[:3]}; "
                f"Cobb angles need the {_NP} corners T1_TL … L5_BR"
            )
        pts = np.stack([xy68.point(n) for n in SPINE_LANDMARKS])
        if image_height is None:
            image_height = float(xy68.image_shape[0])
    else:
        pts = _spine_points(xy68, batch=False)
    return _batch(pts[None], image_height, method, single=True)[0]
