"""Cobb angles: the reference algorithm on hand-built spines, properties, bad input, shared data."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cephspine.anatomy import SPINE_LANDMARKS, VERTEBRAE
from cephspine.errors import LandmarkError
from cephspine.geometry import (
    angle_matrix,
    cobb,
    cobb_angles,
    cobb_angles_batch,
    vertebra_polygons,
    vertebra_validity,
)
from cephspine.io.datasets import AasceDataset
from cephspine.prediction import Prediction

# Tilts (degrees) of the 17 vertebrae. The largest difference is T6 (22°) against T12
# (-24°): 46°. Column 5 (T6) is the first column reaching it, so u = 5 and l = 11.
TILTS = [4, 0, 6, 12, 18, 22, 18, 10, 0, -10, -18, -24, -20, -14, -8, -4, -10]


def spine(
    tilts_deg: list[float], bulge_px: np.ndarray | None = None, half_width: float = 20.0, lean: float = 0.5
) -> np.ndarray:
    """68 corners whose vertebra axes have the given tilts and whose endplate midpoints are chosen.

    Vertebra k spans y = 22 + 40 k … 38 + 40 k. Its top and bottom endplate midpoints lie on
    the line x = 100 + lean · y shifted right by ``bulge_px`` (34 values, one per endplate).
    Corners: TL = top − a, TR = top + a, BL = bottom − a, BR = bottom + a with
    a = half_width (cos t, sin t), so the axis (left-side to right-side midpoint) is 2a and
    the angle between vertebrae i and j is |t_i − t_j|.
    """
    bulge = np.zeros(34) if bulge_px is None else np.asarray(bulge_px, dtype=float)
    xy = np.empty((68, 2))
    for k, t in enumerate(np.radians(tilts_deg)):
        a = half_width * np.array([np.cos(t), np.sin(t)])
        y_top, y_bottom = 22.0 + 40 * k, 38.0 + 40 * k
        top = np.array([100 + lean * y_top + bulge[2 * k], y_top])
        bottom = np.array([100 + lean * y_bottom + bulge[2 * k + 1], y_bottom])
        xy[4 * k : 4 * k + 4] = [top - a, top + a, bottom - a, bottom + a]
    return xy


def c_bulge() -> np.ndarray:
    b = 20 * np.sin(np.pi * np.arange(34) / 33)
    b[33] = 0.0
    return b  # >= 0 everywhere: all d_i share one sign, not an S curve


def s_bulge() -> np.ndarray:
    b = 20 * np.sin(2 * np.pi * np.arange(34) / 33)
    b[33] = 0.0
    return b  # right in the upper half, left in the lower half: an S curve


def ends(result: cobb.CobbAngles) -> list[tuple[str, str]]:
    return [(c.upper_name, c.lower_name) for c in result.curves]


# ----------------------------------------------------------------------------- hand-built spines


def test_angle_matrix_is_the_tilt_difference() -> None:
    a = angle_matrix(spine(TILTS))
    t = np.asarray(TILTS, dtype=float)
    np.testing.assert_allclose(a, np.abs(t[:, None] - t[None, :]), atol=1e-5)
    assert a.shape == (17, 17)


def test_not_an_s_curve() -> None:
    r = cobb_angles(spine(TILTS, c_bulge()), image_height=800)
    assert r.s_curve is False
    # PT: the largest entry, T6-T12; MT = A[0, u] = |4 - 22|; TL = A[16, l] = |-10 - -24|
    assert r.angles_deg == pytest.approx([46.0, 18.0, 14.0], abs=1e-5)
    assert ends(r) == [("T6", "T12"), ("T1", "T6"), ("T12", "L5")]
    assert (r.pt, r.mt, r.tl) == tuple(r.angles_deg)


def test_s_curve_in_the_upper_half() -> None:
    # bottom endplate midpoints of T6 and T12: y = 238 + 478 = 716 < 800
    r = cobb_angles(spine(TILTS, s_bulge()), image_height=800)
    assert r.s_curve is True
    # MT = max A[5, 0..5] = |22 - 0| at T2; TL = max A[11, 11..16] = |-24 - -4| at L4
    assert r.angles_deg == pytest.approx([46.0, 22.0, 20.0], abs=1e-5)
    assert ends(r) == [("T6", "T12"), ("T2", "T6"), ("T12", "L4")]


def test_s_curve_otherwise_and_the_strict_height_condition() -> None:
    # 716 < 716 is false: MT as before at k = 1 (T2), TL = max A[1, 0..1] = |0 - 4|
    r = cobb_angles(spine(TILTS, s_bulge()), image_height=716)
    assert r.s_curve is True
    assert r.angles_deg == pytest.approx([46.0, 22.0, 4.0], abs=1e-5)
    assert ends(r) == [("T6", "T12"), ("T2", "T6"), ("T1", "T2")]
    assert cobb_angles(spine(TILTS, s_bulge()), image_height=716.001).tl == pytest.approx(20.0, abs=1e-5)


def test_top_and_bottom_midpoints_on_one_vertical_make_an_s_curve() -> None:
    # a C curve, but x_0 = x_33: the ratios divide by zero, d_0 = 0/0, and the reference
    # program's comparison of the two (NaN) sums says S, as in angles.csv
    c_vertical = spine(TILTS, c_bulge(), lean=0.0)
    r = cobb_angles(c_vertical, image_height=800)
    assert r.s_curve is True
    assert r.angles_deg == pytest.approx([46.0, 22.0, 20.0], abs=1e-5)
    assert cobb_angles(spine(TILTS, c_bulge(), lean=0.01), image_height=800).s_curve is False


def test_ties_take_the_first_column() -> None:
    # one tilted vertebra (T12): every column reaches 20°; column 0 comes first
    tilts = [0.0] * 17
    tilts[11] = 20.0
    r = cobb_angles(spine(tilts, c_bulge()), image_height=800)
    assert ends(r)[0] == ("T1", "T12")
    assert r.pt == pytest.approx(20.0, abs=1e-5)


def test_corners_out_of_order_give_angles_above_90() -> None:
    xy = spine([0.0] * 8 + [10.0] + [0.0] * 8, c_bulge())
    xy[[32, 33, 34, 35]] = xy[[33, 32, 35, 34]]  # T9: TL<->TR and BL<->BR
    r = cobb_angles(xy, image_height=800)
    assert r.pt == pytest.approx(170.0, abs=1e-5)  # the reversed axis: 180 - 10
    assert r.invalid_vertebrae == ("T9",)
    assert r.severity["pt"] == "severe"
    # between endplate lines the corner order within an endplate does not matter
    e = cobb_angles(xy, method="endplates")
    assert e.pt == pytest.approx(10.0, abs=1e-9)


def test_endplates_method() -> None:
    # both endplates of vertebra k have tilt t_k: the main curve is |t_a - t_b| over a < b
    r = cobb_angles(spine(TILTS, s_bulge()), method="endplates")
    assert r.method == "endplates" and r.s_curve is None
    # above T6: max over a < b <= 5 is |0 - 22| (T2-T6); below T12: |-24 - -4| (T12-L4)
    assert r.angles_deg == pytest.approx([46.0, 22.0, 20.0], abs=1e-9)
    assert ends(r) == [("T6", "T12"), ("T2", "T6"), ("T12", "L4")]
    # a main curve reaching T1 has nothing above it
    tilts = [30.0] + [0.0] * 15 + [-5.0]
    top = cobb_angles(spine(tilts), method="endplates")
    assert top.angles_deg == pytest.approx([35.0, 0.0, 0.0], abs=1e-9)
    assert ends(top) == [("T1", "L5"), ("T1", "T1"), ("L5", "L5")]


def test_result_tables() -> None:
    r = cobb_angles(spine(TILTS, s_bulge()), image_height=800)
    row = r.to_row()
    assert row["pt_deg"] == pytest.approx(46.0, abs=1e-5)
    assert (row["pt_upper"], row["pt_lower"], row["s_curve"]) == ("T6", "T12", True)
    frame = r.to_dataframe()
    assert frame["curve"].tolist() == ["pt", "mt", "tl"]
    assert frame["severity"].tolist() == ["severe", "mild", "mild"]
    assert "PT 46.0° (T6–T12)" in repr(r)
    batch = cobb_angles_batch(np.stack([spine(TILTS, s_bulge()), spine(TILTS, c_bulge())]), [800, 800])
    wide = batch.to_dataframe()
    assert wide["pt_upper"].tolist() == ["T6", "T6"] and wide["s_curve"].tolist() == [True, False]
    assert wide["n_invalid_vertebrae"].tolist() == [0, 0]
    assert len(batch) == 2 and batch.pt.shape == (2,)


def test_from_a_prediction_uses_its_image_height() -> None:
    xy = spine(TILTS, s_bulge())
    pred = Prediction(SPINE_LANDMARKS, xy, np.ones(68), (800, 400), None, "spine", "test")
    assert cobb_angles(pred).angles_deg == pytest.approx([46.0, 22.0, 20.0], abs=1e-5)
    assert cobb_angles(pred, image_height=716).tl == pytest.approx(4.0, abs=1e-5)
    ceph = Prediction(("S",), np.zeros((1, 2)), np.ones(1), (10, 10), None, "ceph", "0")
    with pytest.raises(LandmarkError, match="lacks 68 vertebra corner"):
        cobb_angles(ceph)


def test_vertebra_polygons_and_validity() -> None:
    xy = spine(TILTS)
    polys = vertebra_polygons(xy)
    assert len(polys) == 17 and all(isinstance(p, shapely.Polygon) and p.is_valid for p in polys)
    # T1 is a parallelogram spanned by 2a = 40 (cos 4°, sin 4°) and bottom - top = (8, 16)
    t = np.radians(4)
    assert polys[0].area == pytest.approx(40 * (16 * np.cos(t) - 8 * np.sin(t)), rel=1e-9)
    assert vertebra_validity(xy).all()
    bowtie = xy.copy()
    bowtie[[4, 5]] = bowtie[[5, 4]]  # T2: TL<->TR only: self-intersecting
    flat = xy.copy()
    flat[[8, 9, 10, 11]] = [[0, 0], [10, 0], [5, 0], [20, 0]]  # T3: zero area
    valid = vertebra_validity(np.stack([xy, bowtie, flat]))
    assert valid.shape == (3, 17)
    assert [VERTEBRAE[k] for k in np.flatnonzero(~valid[1])] == ["T2"]
    assert [VERTEBRAE[k] for k in np.flatnonzero(~valid[2])] == ["T3"]


# ----------------------------------------------------------------------------- bad input


def test_bad_input() -> None:
    xy = spine(TILTS, c_bulge())
    with pytest.raises(LandmarkError, match=r"68 vertebra corners.*\(64, 2\)"):
        cobb_angles(xy[:64], image_height=800)
    missing = xy.copy()
    missing[10] = np.nan
    with pytest.raises(LandmarkError, match="T3_BL missing"):
        cobb_angles(missing, image_height=800)
    flat = xy.copy()
    flat[[24, 25, 26, 27]] = flat[24]  # T7 collapsed to a point
    with pytest.raises(LandmarkError, match="side midpoints of T7 coincide"):
        cobb_angles(flat, image_height=800)
    with pytest.raises(ValueError, match="image height"):
        cobb_angles(xy)
    with pytest.raises(ValueError, match="positive"):
        cobb_angles(xy, image_height=0)
    with pytest.raises(ValueError, match="method"):
        cobb_angles(xy, image_height=800, method="ruler")  # type: ignore[arg-type]
    batch = np.stack([xy, xy, missing])
    with pytest.raises(LandmarkError, match=r"in image\(s\) 2$"):
        cobb_angles_batch(batch, 800)
    with pytest.raises(ValueError, match="one per image"):
        cobb_angles_batch(np.stack([xy, xy]), [800, 800, 800])


# ----------------------------------------------------------------------------- properties

tilt_lists = st.lists(st.floats(-40, 40, allow_nan=False), min_size=17, max_size=17)
bulges = arrays(np.float64, (34,), elements=st.floats(-30, 30, allow_nan=False))
jitter = arrays(np.float64, (68, 2), elements=st.floats(-3, 3, allow_nan=False))
heights = st.floats(300, 1500)


def _mirror(xy: np.ndarray, swap_corners: bool) -> np.ndarray:
    out = xy * [-1.0, 1.0]
    if swap_corners:
        out = out.reshape(17, 4, 2)[:, [1, 0, 3, 2]].reshape(68, 2)
    return out


@given(tilt_lists, bulges, jitter, heights, st.booleans())
def test_non_negative_and_unchanged_by_horizontal_mirroring(
    tilts: list[float], bulge: np.ndarray, dxy: np.ndarray, height: float, swap: bool
) -> None:
    """Mirroring x -> -x, with (as a flipped image would) or without relabelling TL<->TR,
    BL<->BR. The axes' dot products and the S-test ratios (reference) and the endplate
    tilts up to sign (endplates) are unchanged bit for bit, so angles, end vertebrae and
    the S decision are identical, ties included."""
    xy = spine(tilts, bulge) + dxy
    r = cobb_angles(xy, image_height=height)
    m = cobb_angles(_mirror(xy, swap), image_height=height)
    assert np.all(r.angles_deg >= 0)
    np.testing.assert_array_equal(m.angles_deg, r.angles_deg)
    assert ends(m) == ends(r) and m.s_curve == r.s_curve
    e = cobb_angles(xy, method="endplates")
    em = cobb_angles(_mirror(xy, swap), method="endplates")
    assert np.all(e.angles_deg >= 0)
    np.testing.assert_array_equal(em.angles_deg, e.angles_deg)
    assert ends(em) == ends(e)


@given(tilt_lists, bulges, jitter, st.integers(0, 5000))
def test_flipping_an_annotated_image(tilts: list[float], bulge: np.ndarray, dxy: np.ndarray, width: int) -> None:
    """A flip of an image annotated in whole pixels, x -> W - 1 - x, corners relabelled."""
    xy = np.round(spine(tilts, bulge) + dxy)
    r = cobb_angles(xy, image_height=900)
    m = cobb_angles(_mirror(xy, True) + [width - 1, 0.0], image_height=900)
    np.testing.assert_array_equal(m.angles_deg, r.angles_deg)
    assert ends(m) == ends(r) and m.s_curve == r.s_curve


@given(st.lists(st.tuples(tilt_lists, bulges, heights), min_size=1, max_size=4))
def test_batch_matches_single(cases: list[tuple[list[float], np.ndarray, float]]) -> None:
    xy = np.stack([spine(t, b) for t, b, _ in cases])
    h = [height for _, _, height in cases]
    batch = cobb_angles_batch(xy, h)
    for i in range(len(cases)):
        single = cobb_angles(xy[i], image_height=h[i])
        np.testing.assert_array_equal(batch.angles_deg[i], single.angles_deg)
        assert ends(batch[i]) == ends(single)


def test_docstring_examples() -> None:
    assert doctest.testmod(cobb).failed == 0


# ----------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
def test_reference_angles_reproduce_the_training_set(shared_data: Path) -> None:
    """Ground-truth landmarks → angles.csv within 0.01° on all 481 training records."""
    records = list(AasceDataset(shared_data / "aasce"))
    assert len(records) == 481
    xy = np.stack([r.landmarks for r in records])
    heights = [r.image_shape[0] for r in records]  # type: ignore[index]
    reference = np.stack([r.angles_deg for r in records])
    result = cobb_angles_batch(xy, heights)
    error = np.abs(result.angles_deg - reference).max(axis=1)
    off = [(records[i].id, result.angles_deg[i].round(3).tolist()) for i in np.flatnonzero(error > 0.01)]
    assert off == []
    by_id = {r.id: i for i, r in enumerate(records)}
    # the 156° record: a vertebra's corners out of order (flagged by shapely as invalid)
    i = by_id["sunhl-1th-30-Dec-2016-161_A_AP.jpg"]
    assert result.pt[i] > 150 and result[i].invalid_vertebrae == ("L5",)
    # top and bottom endplate midpoints share x: the S test divides by zero and the
    # reference program's comparison of the NaN sums makes it an S curve
    j = by_id["sunhl-1th-20-Jul-2016-coronal3.jpg"]
    assert bool(result.s_curve[j]) and abs(result.mt[j] - 28.554) < 0.01  # type: ignore[index]
    # the single-image path on the same records
    for k in (0, i, j, 480):
        single = cobb_angles(xy[k], image_height=heights[k])
        np.testing.assert_array_equal(single.angles_deg, result.angles_deg[k])
