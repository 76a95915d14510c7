"""The named cephalometric analyses: each measure on hand-made landmarks, invariance under
rigid motion and mirroring, norms (shipped and the user's), and the ISBI population."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS
from cephspine.errors import InputNotFoundError, InvalidArgumentError, LandmarkError, SpacingError
from cephspine.geometry import (
    ANALYSIS_KEYS,
    ANALYSIS_MEASURES,
    analysis_values,
    ceph_analyses,
    read_norms,
    select_analyses,
    shipped_norms,
)
from cephspine.geometry.analyses import ANALYSIS_COLUMNS, NORM_COLUMNS, analysis_name, format_norm
from cephspine.prediction import Prediction
from cephspine.radiograph import Spacing

REPO = Path(__file__).resolve().parents[2]
TRUTH = REPO / "tests" / "data" / "ceph_example_truth.csv"
IDX = {a: i for i, a in enumerate(CEPH_ABBREVIATIONS)}

# A plausible right-facing face in mm (x anterior, y down): every measure is defined on it.
BASE_MM: dict[str, tuple[float, float]] = {
    "S": (0, 0), "N": (70, -5), "Or": (60, 20), "Po": (-10, 25), "A": (68, 50), "B": (63, 85),
    "Pog": (64, 100), "Me": (58, 110), "Gn": (62, 107), "Go": (0, 80), "LIT": (70, 70), "UIT": (72, 69),
    "UL": (82, 66), "LL": (80, 80), "Sn": (80, 52), "Pog'": (74, 108), "PNS": (15, 50), "ANS": (75, 48),
    "Ar": (-5, 35),
}  # fmt: skip

SPACING = 0.1  # mm per pixel in the hand-made cases


def face(**mm: tuple[float, float]) -> np.ndarray:
    """``(19, 2)`` pixel landmarks (0.1 mm per pixel) of :data:`BASE_MM` with some points
    moved (keyword = abbreviation; ``Pog_`` for ``Pog'``)."""
    pts = dict(BASE_MM)
    for k, v in mm.items():
        pts["Pog'" if k == "Pog_" else k] = v
    return np.array([pts[a] for a in CEPH_ABBREVIATIONS], dtype=np.float64) / SPACING


def polar(origin: tuple[float, float], length: float, deg: float) -> tuple[float, float]:
    """The point ``length`` mm from ``origin`` in the direction ``deg`` (image axes, y down)."""
    return origin[0] + length * math.cos(math.radians(deg)), origin[1] + length * math.sin(math.radians(deg))


def value(xy: np.ndarray, key: str) -> float:
    return analysis_values(xy, SPACING)[key]


# --------------------------------------------------------------------------- each measure


def test_table_layout_and_order() -> None:
    t = ceph_analyses(face(), SPACING)
    assert list(t.columns) == list(ANALYSIS_COLUMNS)
    assert list(t["key"]) == [m.key for m in ANALYSIS_MEASURES]
    assert t["value"].dtype == np.float64 and t["norm_mean"].dtype == np.float64
    assert all(isinstance(t[c].dtype, pd.StringDtype) for c in ("key", "flag", "note", "norm_source"))
    ok = t[t["status"] == "ok"]
    assert list(ok["key"]) == list(ANALYSIS_KEYS) and np.isfinite(ok["value"]).all()
    assert set(t["unit"]) == {"deg", "mm", "%"}
    # every §5 key of the spec is computed
    spec_keys = {
        "saddle_angle_deg", "articular_angle_deg", "gonial_angle_deg", "bjork_sum_deg", "jarabak_ratio_pct",
        "sn_gogn_deg", "fh_mp_deg", "fh_sn_deg", "sn_pp_deg", "facial_angle_deg", "convexity_deg", "y_axis_deg",
        "a_to_nperp_mm", "pog_to_nperp_mm", "lafh_ratio_pct", "h_angle_deg", "ul_to_snpog_mm", "ll_to_snpog_mm",
        "overjet_mm", "overbite_mm",
    }  # fmt: skip
    assert set(ANALYSIS_KEYS) == spec_keys


def test_measures_the_isbi_landmarks_lack_are_rows_without_a_value() -> None:
    t = ceph_analyses(face(), SPACING).set_index("key")
    lacking = {
        "u1_na_deg": "upper incisor apex",
        "l1_nb_deg": "lower incisor apex",
        "interincisal_angle_deg": "incisor apices",
        "impa_deg": "lower incisor apex",
        "u1_sn_deg": "upper incisor apex",
        "ul_to_eline_mm": "pronasale",
        "co_gn_mm": "condylion",
        "co_a_mm": "condylion",
        "occlusal_plane_fh_deg": "molar",
        "xi_lower_face_height_deg": "Xi",
    }
    for key, point in lacking.items():
        row = t.loc[key]
        assert math.isnan(row["value"]) and row["status"] == "not available", key
        assert "not available: needs" in row["note"] and point in row["note"], key
        assert pd.isna(row["flag"]) and math.isnan(row["norm_mean"]) and math.isnan(row["norm_low"])


def test_bjork_polygon_angles() -> None:
    s = (0.0, 0.0)
    ar = polar(s, 10, 120)  # N–S–Ar = 120
    go = polar(ar, 20, 90)  # S at -60° from Ar, Go straight down: S–Ar–Go = 150
    me = polar(go, 50, -90 + 125)  # Ar straight up from Go: Ar–Go–Me = 125
    xy = face(S=s, N=(10, 0), Ar=ar, Go=go, Me=me)
    v = analysis_values(xy, SPACING)
    assert v["saddle_angle_deg"] == pytest.approx(120)
    assert v["articular_angle_deg"] == pytest.approx(150)
    assert v["gonial_angle_deg"] == pytest.approx(125)
    assert v["bjork_sum_deg"] == pytest.approx(395)


def test_face_height_ratios() -> None:
    xy = face(S=(0, 0), Go=(0, 60), N=(70, 0), Me=(70, 100), ANS=(70, 45))
    assert value(xy, "jarabak_ratio_pct") == pytest.approx(60)
    assert value(xy, "lafh_ratio_pct") == pytest.approx(55)


def test_line_angles_are_acute_whichever_way_the_points_lie() -> None:
    s, n = (0.0, 0.0), (10.0, 0.0)
    for gn in (polar((0, 60), 60, 32), polar((0, 60), 60, 180 + 32)):  # Gn ahead of or behind Go
        assert value(face(S=s, N=n, Go=(0, 60), Gn=gn), "sn_gogn_deg") == pytest.approx(32)
    assert value(face(Po=(0, 0), Or=(10, 0), S=(0, -20), N=polar((0, -20), 70, -7)), "fh_sn_deg") == pytest.approx(7)
    assert value(face(S=s, N=n, PNS=(10, 50), ANS=polar((10, 50), 60, -8)), "sn_pp_deg") == pytest.approx(8)
    assert value(face(Po=(0, 0), Or=(10, 0), Go=(0, 80), Me=polar((0, 80), 60, 25)), "fh_mp_deg") == pytest.approx(25)
    xy = face(N=(70, 0), B=(70, 80), Pog_=(80, 110), UL=polar((80, 110), 50, -90 + 10))
    assert value(xy, "h_angle_deg") == pytest.approx(10)


def test_downs_angles() -> None:
    fh = {"Po": (0.0, 0.0), "Or": (10.0, 0.0)}
    # facial angle: N–Pog 5° forward of the perpendicular to FH (a prominent chin) = 95
    xy = face(**fh, N=(70, -20), Pog=polar((70, -20), 100, 90 - 5))
    assert value(xy, "facial_angle_deg") == pytest.approx(95)
    # Y-axis: S–Gn 60° below FH
    assert value(face(**fh, S=(10, -20), Gn=polar((10, -20), 100, 60)), "y_axis_deg") == pytest.approx(60)
    # convexity: A 5 mm ahead of (positive) or behind (negative) a vertical N–Pog
    expected = 2 * math.degrees(math.atan(5 / 50))
    for ax, sign in ((75, 1), (65, -1)):
        xy = face(**fh, N=(70, 0), Pog=(70, 100), A=(ax, 50))
        assert value(xy, "convexity_deg") == pytest.approx(sign * expected)
    assert value(face(**fh, N=(70, 0), Pog=(70, 100), A=(70, 50)), "convexity_deg") == pytest.approx(0, abs=1e-9)


def test_distances_along_and_across_frankfort() -> None:
    fh = {"Po": (0.0, 0.0), "Or": (10.0, 0.0)}
    xy = face(**fh, N=(70, 0), A=(73, 50), Pog=(66, 100))
    assert value(xy, "a_to_nperp_mm") == pytest.approx(3)
    assert value(xy, "pog_to_nperp_mm") == pytest.approx(-4)
    xy = face(**fh, N=(70, 0), Me=(60, 110), UIT=(73, 72), LIT=(70, 70))
    assert value(xy, "overjet_mm") == pytest.approx(3)  # upper tip 3 mm ahead
    assert value(xy, "overbite_mm") == pytest.approx(2)  # and 2 mm below the lower tip: overlap
    xy = face(**fh, N=(70, 0), Me=(60, 110), UIT=(68, 68), LIT=(70, 70))
    assert value(xy, "overjet_mm") == pytest.approx(-2)  # reverse overjet
    assert value(xy, "overbite_mm") == pytest.approx(-2)  # open bite


def test_lips_to_the_subnasale_soft_pogonion_line() -> None:
    xy = face(Po=(0, 0), Or=(10, 0), Sn=(80, 50), Pog_=(80, 110), UL=(83.5, 70), LL=(78, 90))
    assert value(xy, "ul_to_snpog_mm") == pytest.approx(3.5)  # ahead of the line
    assert value(xy, "ll_to_snpog_mm") == pytest.approx(-2)  # behind it


def test_anisotropic_spacing_is_applied_per_axis() -> None:
    mm = face() * SPACING
    px = mm / [0.2, 0.05]  # col_mm 0.2 (x), row_mm 0.05 (y)
    got = analysis_values(px, Spacing(row_mm=0.05, col_mm=0.2))
    want = analysis_values(mm, 1.0)
    for k in ANALYSIS_KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


# --------------------------------------------------------------------------- invariance


def _truth_px() -> np.ndarray:
    return np.loadtxt(TRUTH, delimiter=",", skiprows=2)


@given(
    theta=st.floats(-math.pi, math.pi),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
    mirror=st.booleans(),
    row_mm=st.floats(0.05, 0.3),
    col_mm=st.floats(0.05, 0.3),
)
def test_rigid_motion_and_mirroring_change_nothing(
    theta: float, tx: float, ty: float, mirror: bool, row_mm: float, col_mm: float
) -> None:
    """Every value (signed ones included) is unchanged when the head turns, moves or
    faces the other way, whatever the pixel spacing the film was taken with."""
    mm = _truth_px() * 0.1
    want = analysis_values(mm, 1.0)
    if mirror:
        mm = mm * [-1, 1]
    c, s = math.cos(theta), math.sin(theta)
    moved = mm @ np.array([[c, s], [-s, c]]) + [tx, ty]
    got = analysis_values(moved / [col_mm, row_mm], Spacing(row_mm, col_mm))
    for k in ANALYSIS_KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-6), k


def test_a_prediction_gives_the_same_table_and_its_spacing() -> None:
    xy = _truth_px()
    pred = Prediction(CEPH_LANDMARKS, xy, np.ones(19), (2400, 1935), Spacing(0.1, 0.1), "ceph", "1")
    pd.testing.assert_frame_equal(ceph_analyses(pred), ceph_analyses(xy, 0.1))
    # an explicit spacing overrides the prediction's
    assert ceph_analyses(pred, 0.2).set_index("key").loc["overjet_mm", "value"] == pytest.approx(
        2 * ceph_analyses(pred).set_index("key").loc["overjet_mm", "value"]
    )
    # a mirrored prediction (left-facing film) is measured alike
    mirrored = Prediction(
        CEPH_LANDMARKS, xy * [-1, 1] + [1934, 0], np.ones(19), (2400, 1935), Spacing(0.1, 0.1), "ceph", "1",
        meta={"mirrored": True},
    )  # fmt: skip
    np.testing.assert_allclose(ceph_analyses(mirrored)["value"], ceph_analyses(pred)["value"], atol=1e-9)


# --------------------------------------------------------------------------- bad input


def test_without_spacing_the_angles_and_ratios_are_computed() -> None:
    with_spacing = ceph_analyses(_truth_px(), 0.1).set_index("key")
    pred = Prediction(CEPH_LANDMARKS, _truth_px(), np.ones(19), (2400, 1935), None, "ceph", "1")
    for without in (ceph_analyses(_truth_px()).set_index("key"), ceph_analyses(pred).set_index("key")):
        scaled = without["unit"] != "mm"
        np.testing.assert_allclose(without.loc[scaled, "value"], with_spacing.loc[scaled, "value"], atol=1e-9)
        mm = without[(without["unit"] == "mm") & (with_spacing["status"] == "ok")]
        assert len(mm) == 6 and mm["value"].isna().all() and (mm["status"] == "no spacing").all()
        assert mm["note"].str.startswith("a distance in mm: needs the pixel spacing").all()
        assert mm["flag"].isna().all()
    values = analysis_values(_truth_px())
    assert math.isnan(values["overjet_mm"]) and values["saddle_angle_deg"] == pytest.approx(
        with_spacing.loc["saddle_angle_deg", "value"]
    )
    with pytest.raises(SpacingError):
        ceph_analyses(_truth_px(), -0.1)


def test_wrong_shape_is_a_landmark_error() -> None:
    with pytest.raises(LandmarkError, match=r"\(19, 2\)"):
        ceph_analyses(np.zeros((18, 2)), 0.1)
    spine = Prediction(("a", "b"), np.zeros((2, 2)), np.ones(2), (10, 10), Spacing(0.1, 0.1), "spine", "1")
    with pytest.raises(LandmarkError, match="lacks"):
        ceph_analyses(spine)


def test_a_missing_landmark_leaves_only_its_measures_without_a_value() -> None:
    xy = _truth_px()
    xy[IDX["Ar"]] = np.nan
    t = ceph_analyses(xy, 0.1).set_index("key")
    for key in ("saddle_angle_deg", "articular_angle_deg", "gonial_angle_deg", "bjork_sum_deg"):
        assert t.loc[key, "status"] == "not computed" and math.isnan(t.loc[key, "value"])
        assert "Ar" in t.loc[key, "note"] and "articulare" in t.loc[key, "note"]
    assert t.loc["jarabak_ratio_pct", "status"] == "ok" and np.isfinite(t.loc["jarabak_ratio_pct", "value"])


def test_coincident_points_make_a_measure_undefined_not_an_error() -> None:
    xy = face(Po=(10, 20), Or=(10, 20))  # no Frankfort horizontal: nothing that needs u
    t = ceph_analyses(xy, SPACING).set_index("key")
    for key in ("fh_sn_deg", "a_to_nperp_mm", "overjet_mm", "overbite_mm", "ul_to_snpog_mm", "convexity_deg"):
        assert t.loc[key, "status"] == "not computed" and "coincide" in t.loc[key, "note"], key
    assert t.loc["saddle_angle_deg", "status"] == "ok"


# --------------------------------------------------------------------------- norms


def test_shipped_norms_each_have_a_named_source_and_population() -> None:
    norms = shipped_norms()
    assert list(norms.columns) == [*NORM_COLUMNS, "norm_note"]
    assert len(norms) >= 5 and set(norms["key"]) <= set(ANALYSIS_KEYS)
    for r in norms.to_dict("records"):
        assert isinstance(r["norm_source"], str) and len(r["norm_source"]) > 30, r["key"]
        assert any(ch.isdigit() for ch in r["norm_source"]), r["key"]  # a year
        assert isinstance(r["norm_population"], str) and r["norm_population"], r["key"]
        assert any(np.isfinite(r[c]) for c in ("norm_mean", "norm_low", "norm_high")), r["key"]
    by_key = norms.set_index("key")
    assert by_key.loc["facial_angle_deg", ["norm_mean", "norm_low", "norm_high"]].tolist() == [87.8, 82, 95]
    assert "Downs" in by_key.loc["y_axis_deg", "norm_source"]
    # Holdaway's 10° (7–15°) is for the H line against the soft-tissue facial line; the angle
    # computed here is against N–B (soft-tissue nasion is no ISBI landmark): no norm ships
    assert "h_angle_deg" not in set(norms["key"])
    row = ceph_analyses(face(), SPACING).set_index("key").loc["h_angle_deg"]
    assert math.isnan(row["norm_mean"]) and math.isnan(row["norm_low"]) and pd.isna(row["flag"])
    assert "no norm shipped" in row["note"]


def test_flags_against_the_range_or_mean_and_sd() -> None:
    fh = {"Po": (0.0, 0.0), "Or": (10.0, 0.0)}
    xy = face(**fh, N=(70, -20), Pog=polar((70, -20), 100, 90 - 10))  # facial angle 100°
    f = ceph_analyses(xy, SPACING).set_index("key").loc["facial_angle_deg"]
    assert f["value"] == pytest.approx(100) and f["flag"] == "above" and f["norm_low"] == 82 and f["norm_high"] == 95
    xy_in = face(**fh, N=(70, -20), Pog=polar((70, -20), 100, 90 - 4))  # 94°
    assert ceph_analyses(xy_in, SPACING).set_index("key").loc["facial_angle_deg", "flag"] == "within"
    # a norm with a mean and an SD only: mean ± 1 SD
    user = pd.DataFrame({"key": ["facial_angle_deg"], "norm_mean": [98.0], "norm_sd": [3.0]})
    row = ceph_analyses(xy, SPACING, norms=user).set_index("key").loc["facial_angle_deg"]
    assert math.isnan(row["norm_low"]) and row["flag"] == "within"
    user = pd.DataFrame({"key": ["facial_angle_deg"], "norm_mean": [105.0], "norm_sd": [3.0]})
    assert ceph_analyses(xy, SPACING, norms=user).set_index("key").loc["facial_angle_deg", "flag"] == "below"
    user = pd.DataFrame({"key": ["h_angle_deg"], "norm_mean": [8.0], "norm_sd": [2.0]})  # a norm for H–NB
    xy = face(N=(70, 0), B=(70, 80), Pog_=(80, 110), UL=polar((80, 110), 50, -90 + 20))
    assert ceph_analyses(xy, SPACING, norms=user).set_index("key").loc["h_angle_deg", "flag"] == "above"
    # a norm with a mean only (Steiner's SN–GoGn): no flag
    sn = ceph_analyses(xy, SPACING).set_index("key").loc["sn_gogn_deg"]
    assert sn["norm_mean"] == 32 and pd.isna(sn["flag"])


def test_user_norms_replace_the_shipped_ones_by_key(tmp_path: Path) -> None:
    path = tmp_path / "clinic norms.csv"
    path.write_text(
        "key,norm_mean,norm_sd,norm_source,norm_population\n"
        "saddle_angle_deg,124,5,Clinic study 2020,local adults\n"
        'facial_angle_deg,90,3,"Other, 2019",local adolescents\n'
        "gonial_angle_deg,128,6,,\n"
    )
    xy = _truth_px()
    shipped = ceph_analyses(xy, 0.1).set_index("key")
    t = ceph_analyses(xy, 0.1, norms=path).set_index("key")
    assert t.loc["saddle_angle_deg", "norm_mean"] == 124 and t.loc["saddle_angle_deg", "norm_sd"] == 5
    assert t.loc["saddle_angle_deg", "norm_source"] == "Clinic study 2020"
    assert not pd.isna(t.loc["saddle_angle_deg", "flag"]) and pd.isna(shipped.loc["saddle_angle_deg", "flag"])
    # the whole shipped row is replaced: Downs' range does not linger beside the clinic's mean
    assert t.loc["facial_angle_deg", "norm_source"] == "Other, 2019"
    assert math.isnan(t.loc["facial_angle_deg", "norm_low"]) and shipped.loc["facial_angle_deg", "norm_low"] == 82
    # a row of a file without a source names the file, read here or by read_norms first
    named = "user norms file clinic norms.csv"
    assert t.loc["gonial_angle_deg", "norm_source"] == named
    assert read_norms(path).set_index("key").loc["gonial_angle_deg", "norm_source"] == named
    # other keys keep the shipped norms
    assert t.loc["y_axis_deg", "norm_source"] == shipped.loc["y_axis_deg", "norm_source"]
    # a DataFrame works too; without a source it is marked as the user's
    df = pd.DataFrame({"key": ["lafh_ratio_pct"], "norm_low": [53.0], "norm_high": [57.0]})
    row = ceph_analyses(xy, 0.1, norms=df).set_index("key").loc["lafh_ratio_pct"]
    assert row["norm_source"] == "user-supplied" and row["flag"] in ("below", "within", "above")
    # a row with no numbers removes the shipped norm
    df = pd.DataFrame({"key": ["facial_angle_deg"], "norm_mean": [None]})
    row = ceph_analyses(xy, 0.1, norms=df).set_index("key").loc["facial_angle_deg"]
    assert math.isnan(row["norm_mean"]) and pd.isna(row["flag"]) and "leaves it empty" in row["note"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("norm_mean\n1\n", "no 'key' column"),
        ("key,norm_mean\nsadle_angle_deg,120\n", "unknown measure key"),
        ("key,norm_mean\nu1_na_deg,102\n", "cannot be computed"),
        ("key,norm_men\nsaddle_angle_deg,120\n", "unknown column"),
        ("key,norm_mean\nsaddle_angle_deg,120\nsaddle_angle_deg,121\n", "more than once"),
        ("key,norm_mean\nsaddle_angle_deg,abc\n", "not a number"),
        ("key,norm_sd\nsaddle_angle_deg,-1\n", "negative"),
        ("key,norm_low,norm_high\nsaddle_angle_deg,130,120\n", "above its norm_high"),
        ("key,norm_low\nsaddle_angle_deg,120\n", "only one of norm_low and norm_high"),
        ('key,norm_mean\n"saddle_angle_deg,120\n', "cannot read"),
    ],
)
def test_a_bad_norms_file_names_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "norms.csv"
    path.write_text(text)
    with pytest.raises(InvalidArgumentError) as info:
        ceph_analyses(_truth_px(), 0.1, norms=path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_a_missing_norms_file_or_a_wrong_type() -> None:
    with pytest.raises(InputNotFoundError, match="no-such-norms.csv"):
        read_norms("no-such-norms.csv")
    with pytest.raises(InvalidArgumentError, match="CSV path or a pandas DataFrame"):
        read_norms(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="unknown measure key"):
        read_norms(pd.DataFrame({"key": ["nope"]}))


def test_norm_text() -> None:
    assert format_norm({"unit": "deg", "norm_mean": 87.8, "norm_low": 82, "norm_high": 95}) == "87.8° (82–95°)"
    assert format_norm({"unit": "deg", "norm_mean": 123, "norm_sd": 5}) == "123 ± 5°"
    assert format_norm({"unit": "%", "norm_low": 62, "norm_high": 65}) == "62–65 %"
    assert format_norm({"unit": "mm"}) == "—"


# --------------------------------------------------------------------------- selecting analyses


def test_select_analyses_includes_shared_measures() -> None:
    t = ceph_analyses(_truth_px(), 0.1)
    downs = select_analyses(t, "downs")
    assert {"facial_angle_deg", "convexity_deg", "y_axis_deg", "fh_mp_deg", "interincisal_angle_deg"} <= set(
        downs["key"]
    )
    assert "saddle_angle_deg" not in set(downs["key"])
    both = select_analyses(t, ["Björk–Jarabak", "holdaway"])
    assert set(both["analysis"]) == {"Björk–Jarabak", "Holdaway", "Steiner"}  # SN–PP is Steiner's too
    assert len(select_analyses(t, "all")) == len(t)
    assert analysis_name("BJORK") == analysis_name("jarabak") == "Björk–Jarabak"
    with pytest.raises(InvalidArgumentError, match="unknown analysis 'wits'"):
        select_analyses(t, "wits")


# --------------------------------------------------------------------------- the ISBI population


@pytest.mark.shared_data
def test_isbi_population_means_match_the_spec(shared_data: Path) -> None:
    """On the mean-of-doctors landmarks of the 150 ISBI images the means come out where
    the spec lists them (an adolescent population): a sign or orientation mistake would
    move them far."""
    from cephspine.io.datasets import IsbiDataset

    ds = IsbiDataset(shared_data / "isbi2015")
    df = pd.DataFrame([analysis_values(rec.landmarks, 0.1) for rec in ds])
    means = df.mean()
    spec = {
        "saddle_angle_deg": (122, 3), "articular_angle_deg": (148, 3), "gonial_angle_deg": (126, 3),
        "bjork_sum_deg": (396.6, 3), "jarabak_ratio_pct": (64, 2.5), "sn_gogn_deg": (34, 3), "fh_sn_deg": (7, 2),
        "facial_angle_deg": (87, 3), "y_axis_deg": (63, 3), "lafh_ratio_pct": (57, 2), "h_angle_deg": (12, 3),
    }  # fmt: skip
    for key, (mean, tol) in spec.items():
        assert means[key] == pytest.approx(mean, abs=tol), key
    # signed measures: lips lie ahead of Sn–Pog' and the upper incisor ahead of the lower one
    assert (df["ul_to_snpog_mm"] > 0).mean() > 0.95 and (df["ll_to_snpog_mm"] > 0).mean() > 0.95
    assert means["overjet_mm"] > 0 and means["overbite_mm"] > 0
    assert abs(means["a_to_nperp_mm"]) < 3 and abs(means["convexity_deg"]) < 10
    # the Jarabak ratio is 100 × the challenge's FHI
    from cephspine.geometry import ceph_measures

    rec = ds[0]
    fhi = ceph_measures(rec.landmarks, spacing=0.1)["FHI"]
    assert analysis_values(rec.landmarks, 0.1)["jarabak_ratio_pct"] == pytest.approx(100 * fhi)


# --------------------------------------------------------------------------- packaging


def test_the_norms_file_ships_in_the_wheel(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    from tests.test_packaging import _project_copy

    root = _project_copy(tmp_path / "project")
    shutil.copy(REPO / "cephspine" / "geometry" / "analysis_norms.csv", root / "cephspine" / "geometry")
    out = tmp_path / "wheel"
    out.mkdir()
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with zipfile.ZipFile(out / proc.stdout.strip().splitlines()[-1]) as zf:
        assert "cephspine/geometry/analysis_norms.csv" in zf.namelist()
