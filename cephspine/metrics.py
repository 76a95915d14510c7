"""Landmark accuracy metrics: radial error, MRE, SD, SDR and paper-format tables.

All functions are pure numpy over arrays of ``(x, y)`` pixel coordinates, as defined in
the ISBI 2015 challenge papers and the seed paper:

* radial error ``R = ‖pred − true‖`` in mm (pixel differences × spacing);
* MRE = mean of R over all points of all images, SD its standard deviation;
* SDR(r) = percentage of points with ``R ≤ r`` (cephalograms: r = 2, 2.5, 3, 4 mm;
  spine: 2, 3, 4, 6 mm with the L4–L5 = 35 mm scale of :func:`spine_mm_scale`).

Classification and angle metrics:

* SCR (successful classification rate) of the cephalometric anatomical types, in the two
  conventions of the literature (:func:`scr`, :func:`scr_table`);
* SMAPE of the three Cobb angles as the AASCE 2019 challenge defines it (:func:`smape`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from cephspine.anatomy import SPINE_LANDMARKS
from cephspine.errors import InvalidArgumentError, LandmarkError
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS
from cephspine.radiograph import Spacing, spacing_xy_mm

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CEPH_RADII_MM",
    "SPINE_L4_L5_MM",
    "SPINE_RADII_MM",
    "SCR_CONVENTIONS",
    "landmark_table",
    "mre",
    "radial_errors",
    "scr",
    "scr_table",
    "sd",
    "sdr",
    "smape",
    "spine_mm_scale",
]

CEPH_RADII_MM: tuple[float, ...] = (2.0, 2.5, 3.0, 4.0)
"""SDR radii for cephalograms (ISBI 2015), mm."""

SPINE_RADII_MM: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0)
"""SDR radii for the spine (seed paper), mm under the L4–L5 = 35 mm scale."""

SPINE_L4_L5_MM = 35.0
"""Assumed distance between the centres of L4 and L5, mm (seed paper)."""

NanPolicy = Literal["raise", "omit"]
FloatArray = npt.NDArray[np.float64]


def _points(a: npt.ArrayLike, what: str) -> FloatArray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim not in (2, 3) or arr.shape[-1] != 2:
        raise LandmarkError(f"{what} must have shape (N, 2) or (M, N, 2), got {arr.shape}")
    return arr


def _spacing_xy(spacing: Any, n_images: int | None) -> FloatArray:
    """Spacing as ``(x_mm, y_mm)`` multipliers: shape ``(2,)``, or ``(M, 1, 2)`` per image."""
    xy = spacing_xy_mm(spacing, n_images)
    return np.ones(2) if xy is None else xy


def radial_errors(
    pred: npt.ArrayLike,
    true: npt.ArrayLike,
    spacing: Spacing | float | Sequence[Any] | npt.ArrayLike | None = None,
) -> FloatArray:
    """Euclidean distance between predicted and true points.

    Args:
        pred: ``(N, 2)`` or ``(M, N, 2)`` predicted ``(x, y)`` positions, pixels.
        true: same shape as ``pred``, true positions, pixels.
        spacing: ``None`` for errors in pixels; otherwise mm per pixel as one number
            (square pixels), a :class:`Spacing` (row_mm, col_mm), or — for a single
            image — a ``(row_mm, col_mm)`` pair. For ``(M, N, 2)`` inputs a sequence of
            ``M`` per-image spacings (numbers, pairs or :class:`Spacing`) or an ``(M,)``
            / ``(M, 2)`` array is accepted too; a length-``M`` sequence is always read
            per image. x differences are scaled by ``col_mm``, y by ``row_mm``.

    Returns:
        ``(N,)`` or ``(M, N)`` radial errors, mm (or pixels when ``spacing`` is None).
        NaN where an input point is NaN.

    Raises:
        LandmarkError: shapes differ or are not ``(…, 2)``.
        SpacingError: a spacing is not positive and finite, or per-image spacing has the
            wrong length.

    Example:
        >>> radial_errors([[0, 0], [3, 4]], [[0, 0], [0, 0]], spacing=0.1)
        array([0. , 0.5])
    """
    p = _points(pred, "pred")
    t = _points(true, "true")
    if p.shape != t.shape:
        raise LandmarkError(f"pred and true shapes differ: {p.shape} vs {t.shape}")
    per_image = p.shape[0] if p.ndim == 3 else None
    scale = _spacing_xy(spacing, per_image)
    diff = (p - t) * scale
    return np.asarray(np.hypot(diff[..., 0], diff[..., 1]), dtype=np.float64)


def _flat(errors: npt.ArrayLike, nan_policy: NanPolicy) -> FloatArray:
    e = np.asarray(errors, dtype=np.float64).ravel()
    if nan_policy not in ("raise", "omit"):
        raise InvalidArgumentError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    finite = np.isfinite(e)
    if not finite.all():
        if nan_policy == "raise":
            raise LandmarkError(
                f"{int((~finite).sum())} error value(s) are NaN or infinite; pass nan_policy='omit' to leave them out"
            )
        e = e[finite]
    if np.any(e < 0):
        raise LandmarkError("radial errors must be non-negative")
    if e.size == 0:
        raise LandmarkError("no error values to summarise")
    return e


def mre(errors: npt.ArrayLike, *, nan_policy: NanPolicy = "raise") -> float:
    """Mean radial error over all points of all images.

    Args:
        errors: radial errors of any shape (e.g. ``(M, N)``), mm or pixels.
        nan_policy: ``"raise"`` (default) on NaN/inf values, or ``"omit"`` to drop them.

    Returns:
        The mean, in the unit of ``errors``.

    Raises:
        LandmarkError: NaN values with ``nan_policy="raise"``, negative values, or no values.
    """
    return float(np.mean(_flat(errors, nan_policy)))


def sd(errors: npt.ArrayLike, *, ddof: int = 0, nan_policy: NanPolicy = "raise") -> float:
    """Standard deviation of the radial errors over all points of all images.

    Args:
        errors: radial errors of any shape, mm or pixels.
        ddof: delta degrees of freedom (0, the default, is the population SD that
            ``numpy.std`` and the challenge evaluation use).
        nan_policy: ``"raise"`` or ``"omit"``, as for :func:`mre`.

    Returns:
        The SD in the unit of ``errors`` (NaN when fewer than ``ddof + 1`` values).
    """
    e = _flat(errors, nan_policy)
    if e.size <= ddof:
        return float("nan")
    return float(np.std(e, ddof=ddof))


def sdr(
    errors: npt.ArrayLike,
    radii: float | Sequence[float] = CEPH_RADII_MM,
    *,
    nan_policy: NanPolicy = "raise",
) -> FloatArray:
    """Successful detection rate: percentage of points with error ``≤ r``, for each radius.

    Args:
        errors: radial errors of any shape, mm (or pixels, with radii in pixels).
        radii: one radius or a sequence of radii, same unit as ``errors``.
        nan_policy: ``"raise"`` or ``"omit"``, as for :func:`mre`. With ``"omit"``
            missing points are left out of the denominator too.

    Returns:
        ``(R,)`` percentages in [0, 100], one per radius (``(1,)`` for a single radius).

    Example:
        >>> sdr([1.0, 2.0, 3.0, 5.0], [2, 4])
        array([50., 75.])
    """
    e = _flat(errors, nan_policy)
    r = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if r.ndim != 1 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise InvalidArgumentError(f"radii must be non-negative finite numbers, got {radii!r}")
    hits = e[None, :] <= r[:, None]
    return np.asarray(100.0 * hits.mean(axis=1), dtype=np.float64)


def spine_mm_scale(true68: npt.ArrayLike) -> float | FloatArray:
    """Millimetres per pixel assuming 35 mm between the centres of L4 and L5.

    Each centre is the mean of the vertebra's four ground-truth corners (L4 = vertebra
    index 15, L5 = 16, in the T1…L5 × TL, TR, BL, BR order). Use the result as an
    isotropic ``spacing`` in :func:`radial_errors`.

    Args:
        true68: ``(68, 2)`` or ``(M, 68, 2)`` ground-truth corners, pixels.

    Returns:
        A float (one image) or an ``(M,)`` array, mm per pixel.

    Raises:
        LandmarkError: wrong shape, NaN in the L4/L5 corners, or coincident centres.

    Example:
        >>> import numpy as np
        >>> pts = np.zeros((68, 2)); pts[64:, 1] = 70.0   # L5 centre 70 px below L4
        >>> spine_mm_scale(pts)
        0.5
    """
    pts = _points(true68, "true68")
    n = len(SPINE_LANDMARKS)
    if pts.shape[-2] != n:
        raise LandmarkError(f"true68 must have {n} points per image, got {pts.shape[-2]}")
    l4 = pts[..., 60:64, :].mean(axis=-2)
    l5 = pts[..., 64:68, :].mean(axis=-2)
    d = l5 - l4
    dist = np.asarray(np.hypot(d[..., 0], d[..., 1]), dtype=np.float64)
    if not np.all(np.isfinite(dist)) or np.any(dist <= 0):
        raise LandmarkError("L4 and L5 centres must be finite and distinct to define the scale")
    scale = SPINE_L4_L5_MM / dist
    return float(scale) if pts.ndim == 2 else np.asarray(scale, dtype=np.float64)


def _radius_label(r: float) -> str:
    return f"{r:g}"


def landmark_table(
    errors_mm: npt.ArrayLike,
    names: Sequence[str],
    radii: Sequence[float] = CEPH_RADII_MM,
    *,
    unit: str = "mm",
    nan_policy: NanPolicy = "raise",
) -> pd.DataFrame:
    """A table in the papers' format: overall and per-landmark MRE, SD and SDR.

    Args:
        errors_mm: ``(M, N)`` radial errors for M images and N landmarks (or ``(N,)``
            for one image), in ``unit``.
        names: the N landmark names, in column order of ``errors_mm``.
        radii: SDR radii, in ``unit`` (default 2, 2.5, 3, 4).
        unit: unit suffix of the columns, ``"mm"`` (default) or ``"px"``.
        nan_policy: ``"raise"`` or ``"omit"`` (NaN errors left out of every statistic).

    Returns:
        A DataFrame with one row ``landmark="all"`` followed by one row per landmark,
        and columns ``landmark``, ``n_points``, ``mre_<unit>``, ``sd_<unit>`` and
        ``sdr_<r><unit>_pct`` per radius (e.g. ``sdr_2mm_pct``, ``sdr_2.5mm_pct``).

    Raises:
        LandmarkError: ``names`` does not match the number of columns, or NaN errors
            with ``nan_policy="raise"``.
    """
    import pandas as pd

    e = np.asarray(errors_mm, dtype=np.float64)
    if e.ndim == 1:
        e = e[None, :]
    if e.ndim != 2:
        raise LandmarkError(f"errors must have shape (M, N) or (N,), got {e.shape}")
    names = list(names)
    if len(names) != e.shape[1]:
        raise LandmarkError(f"{len(names)} names given for {e.shape[1]} landmark columns")
    radii = [float(r) for r in radii]
    sdr_cols = [f"sdr_{_radius_label(r)}{unit}_pct" for r in radii]

    def row(label: str, values: FloatArray) -> dict[str, Any]:
        v = _flat(values, nan_policy)
        out: dict[str, Any] = {
            "landmark": label,
            "n_points": int(v.size),
            f"mre_{unit}": float(np.mean(v)),
            f"sd_{unit}": float(np.std(v)),
        }
        out.update(zip(sdr_cols, sdr(v, radii).tolist(), strict=True))
        return out

    rows = [row("all", e)] + [row(name, e[:, j]) for j, name in enumerate(names)]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- SCR

ScrConvention = Literal["accuracy", "balanced"]
SCR_CONVENTIONS: tuple[str, ...] = ("accuracy", "balanced")
"""``"accuracy"``: % of images whose predicted type equals the true type (the seed paper's
Table II); ``"balanced"``: the challenge code's sum of per-type recalls divided by 3."""

_CHALLENGE_SCR_DIVISOR = 3  # the challenge code divides by 3 for every measure, MW included


def _types(a: npt.ArrayLike, what: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(a)
    if arr.ndim != 1 or arr.size == 0:
        raise LandmarkError(f"{what} must be a non-empty 1-D array of type numbers, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise LandmarkError(f"{what} must hold integer type numbers (no NaN)")
    elif arr.dtype.kind not in "iu":
        raise LandmarkError(f"{what} must hold integer type numbers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def scr(
    pred_types: npt.ArrayLike,
    true_types: npt.ArrayLike,
    *,
    convention: ScrConvention = "accuracy",
    measure: str | None = None,
) -> float:
    """Successful classification rate of one measure's anatomical types, percent.

    Args:
        pred_types: ``(M,)`` type numbers from the predicted landmarks.
        true_types: ``(M,)`` type numbers from the ground-truth landmarks (the mean of
            the two doctors by default; see ``docs/concepts/measures.md``).
        convention: ``"accuracy"`` (default): the percentage of images whose predicted
            type equals the true type — the convention of the seed paper's Table II.
            ``"balanced"``: the ISBI 2015 challenge code: the per-type recalls (diagonal
            of the row-normalised confusion matrix) summed over the measure's types and
            divided by 3 for every measure, MW included; a type absent from the truth
            counts 0.
        measure: the measure (``"ANB"`` …), which fixes its types for ``"balanced"``
            (MW has four); without it the types are 1, 2, 3 and any others observed.

    Returns:
        The SCR in percent.

    Raises:
        LandmarkError: shapes differ, are empty, or hold non-integer values.
        InvalidArgumentError: unknown convention.

    Example:
        >>> scr([1, 2, 3, 1], [1, 2, 2, 1])
        75.0
        >>> scr([1, 2, 3, 1], [1, 2, 2, 1], convention="balanced")  # (1 + 1/2 + 0) / 3
        50.0
    """
    p = _types(pred_types, "pred_types")
    t = _types(true_types, "true_types")
    if p.shape != t.shape:
        raise LandmarkError(f"pred_types and true_types shapes differ: {p.shape} vs {t.shape}")
    if convention == "accuracy":
        return float(100.0 * np.mean(p == t))
    if convention != "balanced":
        raise InvalidArgumentError(f"convention must be one of {SCR_CONVENTIONS}, got {convention!r}")
    if measure is not None:
        types: list[int] = list(CEPH_NORMS[measure].type_numbers)
    else:
        types = sorted({1, 2, 3} | set(t.tolist()) | set(p.tolist()))
    recalls = [float(np.mean(p[t == k] == k)) if np.any(t == k) else 0.0 for k in types]
    return float(100.0 * sum(recalls) / _CHALLENGE_SCR_DIVISOR)


def _type_column(types: Any, measure: str) -> Any | None:
    for key in (measure, f"{measure.lower()}_type"):
        if key in types:
            return types[key]
    return None


def scr_table(
    pred_types: Any,
    true_types: Any,
    *,
    convention: ScrConvention = "accuracy",
) -> pd.DataFrame:
    """SCR per measure and their average, as in the seed paper's Table II.

    Args:
        pred_types: measure → ``(M,)`` type numbers, e.g.
            ``cephspine.geometry.ceph_types(pred_measures)``, or a DataFrame with
            columns ``"ANB"`` … or ``"anb_type"`` … (as ``CephClassification.to_row``).
        true_types: the same for the ground truth.
        convention: ``"accuracy"`` (default) or ``"balanced"``; see :func:`scr`.

    Returns:
        A DataFrame with one row per measure found in both (papers' order) and a final
        row ``measure="average"`` (the mean over those measures), columns ``measure,
        n_images, scr_pct, convention``.

    Raises:
        LandmarkError: no measure in common, or mismatched shapes.
    """
    import pandas as pd

    rows = []
    for m in CEPH_MEASURES:
        p, t = _type_column(pred_types, m), _type_column(true_types, m)
        if p is None or t is None:
            continue
        value = scr(np.asarray(p), np.asarray(t), convention=convention, measure=m)
        rows.append({"measure": m, "n_images": int(np.asarray(t).size), "scr_pct": value, "convention": convention})
    if not rows:
        raise LandmarkError(
            f"no measure found in both pred_types and true_types; expected some of {list(CEPH_MEASURES)}"
        )
    rows.append(
        {
            "measure": "average",
            "n_images": rows[0]["n_images"],
            "scr_pct": float(np.mean([r["scr_pct"] for r in rows])),
            "convention": convention,
        }
    )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- SMAPE


def smape(pred: Any, true: Any, *, per_image: bool = False) -> float | FloatArray:
    """Symmetric mean absolute percentage error of Cobb angles, as AASCE 2019 defines it.

    ``SMAPE = (100 / N) Σᵢ [Σⱼ |aᵢⱼ − bᵢⱼ| / Σⱼ (aᵢⱼ + bᵢⱼ)]``: the mean over images of a
    per-image ratio over the angles j (an image whose denominator is 0 counts 0).

    Args:
        pred: ``(3,)`` or ``(M, 3)`` predicted angles, degrees, or a result with an
            ``angles_deg`` attribute (``CobbAngles``, ``CobbAnglesBatch``).
        true: the reference angles, same shape.
        per_image: return the ``(M,)`` per-image percentages instead of their mean.

    Returns:
        SMAPE in percent (or per-image percentages). Symmetric in ``pred`` and ``true``.

    Raises:
        LandmarkError: shapes differ, or an angle is NaN, infinite or negative.

    Example:
        >>> smape([10.0, 20.0, 30.0], [12.0, 18.0, 30.0])  # 4 / 120
        3.3333333333333335
    """
    p = np.asarray(getattr(pred, "angles_deg", pred), dtype=np.float64)
    t = np.asarray(getattr(true, "angles_deg", true), dtype=np.float64)
    if p.shape != t.shape:
        raise LandmarkError(f"pred and true angle shapes differ: {p.shape} vs {t.shape}")
    if p.ndim == 1:
        p, t = p[None], t[None]
    if p.ndim != 2 or p.size == 0:
        raise LandmarkError(f"angles must have shape (K,) or (M, K), got {p.shape}")
    for name, a in (("pred", p), ("true", t)):
        if not np.all(np.isfinite(a)):
            raise LandmarkError(f"{name} angles contain NaN or infinite values")
        if np.any(a < 0):
            raise LandmarkError(f"{name} angles must be non-negative (Cobb angles), got {float(a.min())}")
    num = np.abs(p - t).sum(axis=1)
    den = (p + t).sum(axis=1)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    per = np.asarray(100.0 * ratio, dtype=np.float64)
    return per if per_image else float(per.mean())
