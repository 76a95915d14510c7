"""Landmark metrics: worked examples and properties (hypothesis)."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cephspine import metrics
from cephspine.anatomy import CEPH_LANDMARKS
from cephspine.errors import LandmarkError, SpacingError
from cephspine.metrics import (
    CEPH_RADII_MM,
    landmark_table,
    mre,
    radial_errors,
    sd,
    sdr,
    spine_mm_scale,
)
from cephspine.radiograph import Spacing

coords = st.floats(-2000, 2000, allow_nan=False, allow_infinity=False, width=64)
spacings = st.floats(0.01, 5.0, allow_nan=False)


def point_sets(n_max: int = 20) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Pairs (pred, true) of equal shape (M, N, 2)."""
    return st.tuples(st.integers(1, 3), st.integers(1, n_max)).flatmap(
        lambda mn: st.tuples(
            arrays(np.float64, (mn[0], mn[1], 2), elements=coords),
            arrays(np.float64, (mn[0], mn[1], 2), elements=coords),
        )
    )


errors_arrays = arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 50, allow_nan=False, width=64))

# ----------------------------------------------------------------------------- examples


def test_radial_errors_worked_example() -> None:
    pred = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 10.0]])
    true = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 11.0]])
    np.testing.assert_allclose(radial_errors(pred, true), [0.0, 5.0, 1.0])
    np.testing.assert_allclose(radial_errors(pred, true, spacing=0.1), [0.0, 0.5, 0.1])


def test_anisotropic_spacing_row_first() -> None:
    pred = np.array([[1.0, 0.0], [0.0, 1.0]])  # one step in x, one step in y
    true = np.zeros((2, 2))
    sp = Spacing(row_mm=0.5, col_mm=0.2)
    np.testing.assert_allclose(radial_errors(pred, true, spacing=sp), [0.2, 0.5])
    np.testing.assert_allclose(radial_errors(pred, true, spacing=(0.5, 0.2)), [0.2, 0.5])


def test_per_image_spacing() -> None:
    pred = np.ones((2, 3, 2))
    true = np.zeros((2, 3, 2))
    e = radial_errors(pred, true, spacing=[0.1, Spacing(0.2, 0.2)])
    np.testing.assert_allclose(e[0], 0.1 * np.sqrt(2))
    np.testing.assert_allclose(e[1], 0.2 * np.sqrt(2))
    e2 = radial_errors(pred, true, spacing=np.array([[0.1, 0.1], [0.2, 0.2]]))
    np.testing.assert_allclose(e, e2)
    assert radial_errors(pred, true).shape == (2, 3)


@pytest.mark.parametrize(
    "spacing,exc",
    [(0, SpacingError), (-1, SpacingError), (np.nan, SpacingError), ([0.1, 0.2, 0.3], SpacingError)],
)
def test_bad_spacing(spacing: Any, exc: type) -> None:
    with pytest.raises(exc):
        radial_errors(np.zeros((2, 4, 2)), np.zeros((2, 4, 2)), spacing=spacing)


def test_shape_errors() -> None:
    with pytest.raises(LandmarkError, match="shapes differ"):
        radial_errors(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(LandmarkError, match=r"\(N, 2\)"):
        radial_errors(np.zeros((3, 3)), np.zeros((3, 3)))


def test_mre_sd_sdr_worked_example() -> None:
    e = np.array([[1.0, 2.0], [3.0, 6.0]])
    assert mre(e) == 3.0
    assert sd(e) == pytest.approx(np.sqrt(((e - 3.0) ** 2).mean()))
    assert sd(e, ddof=1) == pytest.approx(np.std(e, ddof=1))
    np.testing.assert_allclose(sdr(e, [2, 2.5, 3, 4]), [50.0, 50.0, 75.0, 75.0])
    np.testing.assert_allclose(sdr(e, 6), [100.0])  # the radius itself counts


def test_nan_policy() -> None:
    e = np.array([1.0, np.nan, 3.0])
    with pytest.raises(LandmarkError, match="nan_policy='omit'"):
        mre(e)
    assert mre(e, nan_policy="omit") == 2.0
    np.testing.assert_allclose(sdr(e, [1.5], nan_policy="omit"), [50.0])
    with pytest.raises(LandmarkError, match="no error values"):
        mre([np.nan], nan_policy="omit")
    with pytest.raises(LandmarkError, match="non-negative"):
        mre([-1.0])


def test_spine_scale_worked_example() -> None:
    pts = np.zeros((68, 2))
    pts[60:64] = [(0, 0), (20, 0), (0, 20), (20, 20)]  # L4 centre (10, 10)
    pts[64:68] = pts[60:64] + (30, 40)  # L5 centre 50 px away
    assert spine_mm_scale(pts) == pytest.approx(35.0 / 50.0)
    stacked = spine_mm_scale(np.stack([pts, pts * 2]))
    assert isinstance(stacked, np.ndarray)
    np.testing.assert_allclose(stacked, [0.7, 0.35])
    with pytest.raises(LandmarkError, match="distinct"):
        spine_mm_scale(np.zeros((68, 2)))
    with pytest.raises(LandmarkError, match="68 points"):
        spine_mm_scale(np.zeros((19, 2)))


def test_landmark_table_format() -> None:
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 5, size=(4, 19))
    table = landmark_table(e, CEPH_LANDMARKS)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == [
        "landmark",
        "n_points",
        "mre_mm",
        "sd_mm",
        "sdr_2mm_pct",
        "sdr_2.5mm_pct",
        "sdr_3mm_pct",
        "sdr_4mm_pct",
    ]
    assert len(table) == 20
    assert table.loc[0, "landmark"] == "all"
    assert table.loc[0, "n_points"] == 76
    assert table.loc[0, "mre_mm"] == pytest.approx(e.mean())
    assert table.loc[0, "sd_mm"] == pytest.approx(e.std())
    assert table.loc[0, "sdr_2mm_pct"] == pytest.approx(100 * (e <= 2).mean())
    assert table.loc[1, "landmark"] == "sella"
    assert table.loc[1, "mre_mm"] == pytest.approx(e[:, 0].mean())
    assert table.loc[19, "sdr_4mm_pct"] == pytest.approx(100 * (e[:, 18] <= 4).mean())


def test_landmark_table_pixels_and_radii() -> None:
    table = landmark_table(np.array([1.0, 7.0]), ["a", "b"], radii=(2, 6), unit="px")
    assert list(table.columns)[2:] == ["mre_px", "sd_px", "sdr_2px_pct", "sdr_6px_pct"]
    assert table["sdr_6px_pct"].tolist() == [50.0, 100.0, 0.0]
    with pytest.raises(LandmarkError, match="3 names"):
        landmark_table(np.ones((2, 2)), ["a", "b", "c"])


# ----------------------------------------------------------------------------- properties


@given(point_sets(), st.tuples(coords, coords))
def test_errors_translation_invariant(pair: tuple[np.ndarray, np.ndarray], shift: tuple) -> None:
    pred, true = pair
    t = np.array(shift)
    base = radial_errors(pred, true)
    np.testing.assert_allclose(radial_errors(pred + t, true + t), base, atol=1e-6)
    assert mre(radial_errors(pred + t, true + t)) == pytest.approx(mre(base), abs=1e-6)


@given(point_sets(), spacings)
def test_errors_scale_with_spacing(pair: tuple[np.ndarray, np.ndarray], s: float) -> None:
    pred, true = pair
    px = radial_errors(pred, true)
    mm = radial_errors(pred, true, spacing=s)
    np.testing.assert_allclose(mm, s * px, rtol=1e-9, atol=1e-9)
    assert mre(mm) == pytest.approx(s * mre(px), rel=1e-9, abs=1e-9)
    assert sd(mm) == pytest.approx(s * sd(px), rel=1e-6, abs=1e-6)


@given(point_sets())
def test_errors_symmetric_and_non_negative(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, true = pair
    e = radial_errors(pred, true)
    assert (e >= 0).all()
    np.testing.assert_array_equal(e, radial_errors(true, pred))
    assert (radial_errors(true, true) == 0).all()


@given(point_sets(), spacings, spacings)
def test_anisotropic_between_isotropic_bounds(pair: tuple[np.ndarray, np.ndarray], a: float, b: float) -> None:
    pred, true = pair
    e = radial_errors(pred, true, spacing=Spacing(a, b))
    lo, hi = min(a, b), max(a, b)
    px = radial_errors(pred, true)
    assert (e >= lo * px - 1e-9).all()
    assert (e <= hi * px + 1e-9).all()


@given(errors_arrays, st.lists(st.floats(0, 60), min_size=2, max_size=6))
def test_sdr_monotone_in_radius(e: np.ndarray, radii: list[float]) -> None:
    r = sorted(radii)
    rates = sdr(e, r)
    assert (np.diff(rates) >= 0).all()
    assert ((rates >= 0) & (rates <= 100)).all()
    assert sdr(e, [float(e.max())])[0] == 100.0


@given(errors_arrays)
def test_sdr_counts_points(e: np.ndarray) -> None:
    r = float(np.median(e))
    assert sdr(e, r)[0] == pytest.approx(100.0 * np.count_nonzero(e <= r) / e.size)


@given(errors_arrays, st.floats(0.01, 100))
def test_mre_scales_and_is_bounded(e: np.ndarray, k: float) -> None:
    m = mre(e)
    assert e.min() - 1e-9 <= m <= e.max() + 1e-9
    assert mre(k * e) == pytest.approx(k * m, rel=1e-9, abs=1e-12)
    assert sd(e) >= 0


@given(
    arrays(np.float64, (68, 2), elements=st.floats(-1000, 1000, allow_nan=False, width=64)),
    st.tuples(coords, coords),
    st.floats(0.1, 10),
)
def test_spine_scale_invariances(pts: np.ndarray, shift: tuple[float, float], k: float) -> None:
    d = np.linalg.norm(pts[64:68].mean(0) - pts[60:64].mean(0))
    assume(d > 1.0)
    s = spine_mm_scale(pts)
    assert isinstance(s, float)
    assert s == pytest.approx(35.0 / d)
    assert spine_mm_scale(pts + np.array(shift)) == pytest.approx(s, rel=1e-6)
    assert spine_mm_scale(pts * k) == pytest.approx(s / k, rel=1e-6)
    # errors measured with this scale: the L4-L5 centre distance itself is 35 mm
    e = radial_errors(pts[64:68].mean(0, keepdims=True), pts[60:64].mean(0, keepdims=True), s)
    assert e[0] == pytest.approx(35.0, rel=1e-6)


@given(st.integers(1, 5), st.integers(1, 19), st.data())
def test_table_overall_row_matches_functions(m: int, n: int, data: st.DataObject) -> None:
    e = data.draw(arrays(np.float64, (m, n), elements=st.floats(0, 20, allow_nan=False)))
    names = [f"p{i}" for i in range(n)]
    table = landmark_table(e, names)
    overall = table.iloc[0]
    assert overall["mre_mm"] == pytest.approx(mre(e))
    assert overall["sd_mm"] == pytest.approx(sd(e), abs=1e-9)
    expected = sdr(e, CEPH_RADII_MM)
    got = overall[["sdr_2mm_pct", "sdr_2.5mm_pct", "sdr_3mm_pct", "sdr_4mm_pct"]]
    np.testing.assert_allclose(got.to_numpy(float), expected)
    # the overall MRE is the point-weighted mean of the per-landmark MREs
    assert np.average(table["mre_mm"][1:], weights=table["n_points"][1:]) == pytest.approx(overall["mre_mm"])


def test_docstring_examples() -> None:
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3
    assert result.failed == 0
