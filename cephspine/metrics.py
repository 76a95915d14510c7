"""Landmark accuracy metrics: radial error, MRE, SD, SDR and paper-format tables.

All functions are pure numpy over arrays of ``(x, y)`` pixel coordinates, as defined in
the ISBI 2015 challenge papers and the seed paper:

* radial error ``R = ‖pred − true‖`` in mm (pixel differences × spacing);
* MRE = mean of R over all points of all images, SD its standard deviation;
* SDR(r) = percentage of points with ``R ≤ r`` (cephalograms: r = 2, 2.5, 3, 4 mm;
  spine: 2, 3, 4, 6 mm with the L4–L5 = 35 mm scale of :func:`spine_mm_scale`).

Classification (SCR) and angle (SMAPE) metrics belong to this module as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from cephspine.anatomy import SPINE_LANDMARKS
from cephspine.errors import LandmarkError, SpacingError
from cephspine.radiograph import Spacing, as_spacing

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CEPH_RADII_MM",
    "SPINE_L4_L5_MM",
    "SPINE_RADII_MM",
    "landmark_table",
    "mre",
    "radial_errors",
    "sd",
    "sdr",
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
    if spacing is None:
        return np.ones(2)
    if isinstance(spacing, Spacing):
        return spacing.xy_mm
    if isinstance(spacing, np.ndarray) and spacing.ndim == 0:
        spacing = spacing.item()
    if isinstance(spacing, (bool, int, float, np.generic)):
        sp = as_spacing(spacing)
        assert sp is not None
        return sp.xy_mm
    if n_images is None:  # one image: a (row_mm, col_mm) pair
        sp = as_spacing(spacing)
        assert sp is not None
        return sp.xy_mm
    items = list(spacing)
    if len(items) != n_images:
        raise SpacingError(f"per-image spacing must have one entry per image ({n_images}), got {len(items)}")
    rows = []
    for i, item in enumerate(items):
        sp = as_spacing(item, what=f"spacing[{i}]")
        if sp is None:
            raise SpacingError(f"spacing[{i}] is None; give a spacing for every image")
        rows.append(sp.xy_mm)
    return np.asarray(rows, dtype=np.float64)[:, None, :]


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
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
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
        raise ValueError(f"radii must be non-negative finite numbers, got {radii!r}")
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
