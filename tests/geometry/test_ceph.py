"""The eight cephalometric measures: hand-computed cases, properties, bad input, shared data."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cephspine import metrics
from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS
from cephspine.errors import LandmarkError, SpacingError
from cephspine.geometry import CEPH_MEASURES, ceph, ceph_measures, ceph_measures_batch, ceph_types
from cephspine.io.datasets import IsbiDataset
from cephspine.prediction import Prediction
from cephspine.radiograph import Spacing

TRUTH = np.loadtxt(Path(__file__).parents[1] / "data" / "ceph_example_truth.csv", delimiter=",", skiprows=2)
ANGLES = ("ANB", "SNB", "SNA", "ODI", "APDI", "FMA")


def points(**placed: tuple[float, float]) -> np.ndarray:
    """The example image's 19 landmarks, with some moved (keys are abbreviations)."""
    xy = TRUTH.copy()
    for abbr, p in placed.items():
        xy[CEPH_ABBREVIATIONS.index(abbr.replace("_", "'"))] = p
    return xy


# ----------------------------------------------------------------------------- hand-computed cases


def test_sna_snb_anb() -> None:
    # S-N points back along -x; A straight below N (90°), B down and back at 45°
    xy = points(N=(0, 0), S=(-100, 0), A=(0, 100), B=(-100, 100))
    m = ceph_measures(xy, measures=["SNA", "SNB", "ANB"])
    assert list(m) == ["ANB", "SNB", "SNA"]  # always in the papers' order
    assert m["SNA"] == pytest.approx(90.0)
    assert m["SNB"] == pytest.approx(45.0)
    assert m["ANB"] == pytest.approx(45.0)
    # B ahead of A: ANB negative
    m = ceph_measures(points(N=(0, 0), S=(-100, 0), A=(-100, 100), B=(0, 100)), measures="ANB")
    assert m["ANB"] == pytest.approx(-45.0)


def test_odi_with_palatal_plane_down_and_up_at_the_front() -> None:
    # mandibular plane Me->Go = (-100, 0), A-B line B->A = (-50, -50): 45°
    # FH Po->Or = (100, 0); palatal plane PNS->ANS = (100, 100): 45°, cross > 0 (kept positive)
    base = {"Me": (0, 0), "Go": (-100, 0), "B": (50, -50), "A": (0, -100), "Po": (-200, -300), "Or": (-100, -300)}
    down = points(**base, PNS=(-100, -200), ANS=(0, -100))
    assert ceph_measures(down, measures="ODI")["ODI"] == pytest.approx(45.0 + 45.0)
    # PNS->ANS = (100, -100): tipped up at the front, cross < 0, so pal = -45°
    up = points(**base, PNS=(-100, -200), ANS=(0, -300))
    assert ceph_measures(up, measures="ODI")["ODI"] == pytest.approx(45.0 - 45.0, abs=1e-12)


def test_apdi_with_a_behind_and_ahead_of_b() -> None:
    # FH Or->Po = (-100, 0); facial plane N->Pog = (-100, 100): 45°; pal +45° as in the ODI case
    base = {"Or": (0, 0), "Po": (-100, 0), "N": (50, -200), "Pog": (-50, -100), "PNS": (-100, -200), "ANS": (0, -100)}
    # A->B = (0, 100): 45° from N->Pog, cross(N->Pog, A->B) = -10000 < 0, kept positive
    behind = points(**base, A=(30, -150), B=(30, -50))
    assert ceph_measures(behind, measures="APDI")["APDI"] == pytest.approx(45.0 + 45.0 + 45.0)
    # A->B = (-100, 0): 45°, cross = +10000 > 0 (A ahead of B), negated
    ahead = points(**base, A=(30, -150), B=(-70, -150))
    assert ceph_measures(ahead, measures="APDI")["APDI"] == pytest.approx(45.0 - 45.0 + 45.0)


def test_fhi() -> None:
    # |S - Go| = 200, |N - Me| = |(150, 200)| = 250
    xy = points(S=(-100, 0), Go=(-100, 200), N=(0, 0), Me=(150, 200))
    assert ceph_measures(xy, measures="FHI")["FHI"] == pytest.approx(0.8)


def test_fma_is_sn_against_go_gn() -> None:
    # S->N = (100, 0); Go->Gn = (100, 100): 45° (the challenge's FMA, not Frankfort-mandibular)
    xy = points(S=(-100, 0), N=(0, 0), Go=(-100, 200), Gn=(0, 300), Po=(-500, 40), Or=(-300, 40))
    assert ceph_measures(xy, measures="FMA")["FMA"] == pytest.approx(45.0)


def test_mw_sign_and_spacing() -> None:
    ahead = points(LIT=(10, 20), UIT=(13, 24))  # 3-4-5 px, upper tip ahead (+x)
    assert ceph_measures(ahead, spacing=0.1, measures="MW")["MW"] == pytest.approx(0.5)
    behind = points(LIT=(10, 20), UIT=(7, 16))
    assert ceph_measures(behind, spacing=0.1, measures="MW")["MW"] == pytest.approx(-0.5)
    # anisotropic: x differences × col_mm (0.1), y differences × row_mm (0.2)
    aniso = ceph_measures(ahead, spacing=Spacing(row_mm=0.2, col_mm=0.1), measures="MW")["MW"]
    assert aniso == pytest.approx(np.hypot(0.3, 0.8))
    tips = points(LIT=(10, 20), UIT=(10, 20))
    m = ceph_measures(tips, spacing=0.1, measures="MW")
    assert m["MW"] == 0.0 and m.classify()["MW"].label == "edge to edge"


def test_integer_pixels_truncates_like_the_challenge_script() -> None:
    xy = TRUTH + np.random.default_rng(0).uniform(0, 1, TRUTH.shape)
    cast = ceph_measures(xy, spacing=0.1, integer_pixels=True)
    plain = ceph_measures(np.trunc(xy), spacing=0.1)
    assert dict(cast) == dict(plain)
    assert dict(ceph_measures(xy, spacing=0.1)) != dict(plain)
    assert cast.integer_pixels


def test_result_mapping_and_rows() -> None:
    m = ceph_measures(TRUTH, spacing=0.1)
    assert list(m) == list(CEPH_MEASURES) and len(m) == 8
    assert m["anb_deg"] == m["ANB"]
    assert list(m.values()) == [m[k] for k in CEPH_MEASURES]  # a real Mapping
    assert list(m.to_row()) == ["anb_deg", "snb_deg", "sna_deg", "odi_deg", "apdi_deg", "fhi_ratio", "fma_deg", "mw_mm"]
    frame = m.to_dataframe()
    assert frame["measure"].tolist() == list(CEPH_MEASURES)
    assert frame.loc[frame.measure == "FHI", "unit"].item() == "ratio"
    assert m.classify().types == {k: int(v[0]) for k, v in ceph_types({k: [x] for k, x in m.items()}).items()}
    assert repr(m).startswith("CephMeasures(ANB=") and " mm)" in repr(m)


def test_left_facing_profile_is_measured_as_its_mirror() -> None:
    mirrored = TRUTH * [-1.0, 1.0] + [1935.0, 0.0]
    right = ceph_measures(TRUTH, spacing=0.1)
    left = ceph_measures(mirrored, spacing=0.1, facing="left")
    assert dict(left) == pytest.approx(dict(right), rel=1e-12, abs=1e-9)
    wrong = ceph_measures(mirrored, spacing=0.1)  # assumed right-facing: signed parts flip
    assert wrong["MW"] == pytest.approx(-right["MW"])
    assert wrong["SNA"] == pytest.approx(right["SNA"])


def _prediction(xy: np.ndarray, **kw: object) -> Prediction:
    order = np.arange(len(CEPH_LANDMARKS))[::-1]  # names in another order: taken by name
    defaults: dict[str, object] = {"spacing": Spacing(0.1, 0.1), "model": "ceph", "model_version": "test"}
    defaults.update(kw)
    return Prediction(
        names=tuple(CEPH_LANDMARKS[i] for i in order),
        xy_px=xy[order],
        confidence=np.ones(len(order)),
        image_shape=(2400, 1935),
        **defaults,  # type: ignore[arg-type]
    )


def test_from_a_prediction() -> None:
    expected = ceph_measures(TRUTH, spacing=0.1)
    got = ceph_measures(_prediction(TRUTH, source="145.bmp"))
    assert dict(got) == pytest.approx(dict(expected))
    assert got.spacing == Spacing(0.1, 0.1) and got.source == "145.bmp"
    # an explicit spacing overrides the prediction's
    assert ceph_measures(_prediction(TRUTH), spacing=0.2)["MW"] == pytest.approx(2 * expected["MW"])
    # a prediction made on a mirrored (left-facing) image is measured as left-facing
    mirrored = TRUTH * [-1.0, 1.0] + [1935.0, 0.0]
    left = ceph_measures(_prediction(mirrored, meta={"mirrored": True}))
    assert left.facing == "left"
    assert dict(left) == pytest.approx(dict(expected), abs=1e-9)
    with pytest.raises(SpacingError, match="MW"):
        ceph_measures(_prediction(TRUTH, spacing=None))
    assert "MW" not in ceph_measures(_prediction(TRUTH, spacing=None), measures=ANGLES)
    spine = Prediction(("a", "b"), np.zeros((2, 2)), np.ones(2), (10, 10), None, "spine", "0")
    with pytest.raises(LandmarkError, match="lacks the cephalometric landmark"):
        ceph_measures(spine)


# ----------------------------------------------------------------------------- bad input


def test_wrong_shape() -> None:
    with pytest.raises(LandmarkError, match=r"19 landmarks.*\(18, 2\)"):
        ceph_measures(TRUTH[:18], spacing=0.1)
    with pytest.raises(LandmarkError, match=r"\(M, 19, 2\)"):
        ceph_measures_batch(TRUTH, spacing=0.1)


def test_nan_names_the_measure_and_landmark() -> None:
    xy = TRUTH.copy()
    xy[CEPH_ABBREVIATIONS.index("Gn")] = np.nan
    with pytest.raises(LandmarkError, match=r"FMA is undefined: landmark\(s\) Gn missing"):
        ceph_measures(xy, spacing=0.1)
    # the measures that do not use gnathion are still available
    assert set(ceph_measures(xy, spacing=0.1, measures=["ANB", "MW"])) == {"ANB", "MW"}
    far = TRUTH.copy()
    far[CEPH_ABBREVIATIONS.index("Po")] = (np.inf, 0.0)
    with pytest.raises(LandmarkError, match=r"ODI is undefined: landmark\(s\) Po missing \(NaN or infinite\)"):
        ceph_measures(far, spacing=0.1)
    # a soft-tissue point is used by no measure
    soft = TRUTH.copy()
    soft[CEPH_ABBREVIATIONS.index("UL")] = np.nan
    assert len(ceph_measures(soft, spacing=0.1)) == 8


@pytest.mark.parametrize(
    ("measure", "a", "b", "message"),
    [
        ("SNA", "N", "S", "SNA is undefined: nasion \\(N\\) and sella \\(S\\) coincide"),
        ("SNB", "B", "N", "SNB is undefined"),
        ("ODI", "Me", "Go", "ODI is undefined: menton"),
        ("ODI", "PNS", "ANS", "ODI is undefined: posterior_nasal_spine"),
        ("APDI", "A", "B", "APDI is undefined"),
        ("FHI", "N", "Me", "FHI is undefined"),
        ("FMA", "Go", "Gn", "FMA is undefined: gonion"),
    ],
)
def test_coincident_points_make_a_measure_undefined(measure: str, a: str, b: str, message: str) -> None:
    xy = TRUTH.copy()
    xy[CEPH_ABBREVIATIONS.index(b)] = xy[CEPH_ABBREVIATIONS.index(a)]
    with pytest.raises(LandmarkError, match=message):
        ceph_measures(xy, spacing=0.1, measures=measure)


def test_batch_errors_name_the_images() -> None:
    xy = np.stack([TRUTH] * 4)
    xy[2, CEPH_ABBREVIATIONS.index("S")] = xy[2, CEPH_ABBREVIATIONS.index("N")]
    with pytest.raises(LandmarkError, match=r"ANB is undefined.*in image\(s\) 2$"):
        ceph_measures_batch(xy, spacing=0.1)


def test_spacing_rules() -> None:
    with pytest.raises(SpacingError, match="MW is a distance in mm"):
        ceph_measures(TRUTH)
    with pytest.raises(SpacingError):
        ceph_measures(TRUTH, spacing=-0.1)
    with pytest.raises(SpacingError, match="one entry per image"):
        ceph_measures_batch(np.stack([TRUTH] * 3), spacing=[0.1, 0.1])
    with pytest.raises(KeyError, match="unknown cephalometric measure"):
        ceph_measures(TRUTH, measures=["ANB", "Wits"])
    with pytest.raises(ValueError, match="facing"):
        ceph_measures(TRUTH, spacing=0.1, facing="up")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- batch


def test_batch_matches_single_with_per_image_spacing_and_facing() -> None:
    rng = np.random.default_rng(1)
    xy = TRUTH + rng.normal(0, 15, size=(6, 19, 2))
    spacing = [0.1, 0.12, Spacing(0.1, 0.08), 0.1, 0.09, (0.1, 0.1)]
    facing = ["right", "left", "right", "right", "left", "right"]
    batch = ceph_measures_batch(xy, spacing=spacing, facing=facing)
    for i in range(6):
        single = ceph_measures(xy[i], spacing=spacing[i], facing=facing[i])  # type: ignore[arg-type]
        for m in CEPH_MEASURES:
            assert batch[m][i] == pytest.approx(single[m], rel=1e-12, abs=1e-12)


# ----------------------------------------------------------------------------- properties

noise = arrays(np.float64, (19, 2), elements=st.floats(-30, 30, allow_nan=False))
angles_rad = st.floats(-np.pi, np.pi, allow_nan=False)
offsets = st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4))
scales = st.floats(0.05, 20.0)


@given(noise, angles_rad, offsets, scales)
def test_angles_and_ratio_invariant_to_rotation_translation_scale(
    dxy: np.ndarray, theta: float, t: tuple[float, float], k: float
) -> None:
    xy = TRUTH + dxy
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = k * xy @ rot.T + np.asarray(t)
    before = ceph_measures(xy, measures=(*ANGLES, "FHI"))
    after = ceph_measures(moved, measures=(*ANGLES, "FHI"))
    for m in ANGLES:
        assert after[m] == pytest.approx(before[m], abs=1e-6), m
    assert after["FHI"] == pytest.approx(before["FHI"], rel=1e-9)


@given(noise, offsets, scales, st.floats(0.01, 1.0))
def test_mw_scales_with_spacing_and_size_ratios_do_not(
    dxy: np.ndarray, t: tuple[float, float], k: float, spacing: float
) -> None:
    xy = TRUTH + dxy
    base = ceph_measures(xy, spacing=spacing)
    assert ceph_measures(xy, spacing=k * spacing)["MW"] == pytest.approx(k * base["MW"], rel=1e-9, abs=1e-12)
    moved = ceph_measures(k * xy + np.asarray(t), spacing=spacing)
    assert moved["MW"] == pytest.approx(k * base["MW"], rel=1e-9, abs=1e-9)
    assert ceph_measures(xy, spacing=k * spacing)["FHI"] == pytest.approx(base["FHI"], rel=1e-9)


@given(noise, st.floats(0.05, 0.5), st.floats(0.05, 0.5))
def test_anisotropic_spacing_scales_x_by_col_and_y_by_row(dxy: np.ndarray, row_mm: float, col_mm: float) -> None:
    xy = TRUTH + dxy
    a = ceph_measures(xy, spacing=Spacing(row_mm, col_mm))
    b = ceph_measures(xy * [col_mm, row_mm], spacing=1.0)
    assert dict(a) == pytest.approx(dict(b), rel=1e-9, abs=1e-9)


@given(noise)
def test_mirror_image_with_facing_left_gives_the_same_measures(dxy: np.ndarray) -> None:
    xy = TRUTH + dxy
    mirrored = xy * [-1.0, 1.0] + [1935.0, 0.0]
    assert dict(ceph_measures(mirrored, spacing=0.1, facing="left")) == pytest.approx(
        dict(ceph_measures(xy, spacing=0.1)), rel=1e-9, abs=1e-9
    )


def test_docstring_examples() -> None:
    assert doctest.testmod(ceph).failed == 0


# ----------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
def test_shared_isbi_type_counts_and_doctor_agreement(shared_data: Path) -> None:
    """domain.md §2: ANB type 3 in 93 of 150; the doctors agree in 66 % (SNA) to 86 % (SNB)."""
    records = list(IsbiDataset(shared_data / "isbi2015"))
    assert len(records) == 150
    mean = ceph_measures_batch(np.stack([r.landmarks for r in records]), spacing=0.1)
    assert int((ceph_types(mean)["ANB"] == 3).sum()) == 93
    senior = ceph_types(ceph_measures_batch(np.stack([r.senior for r in records]), spacing=0.1))
    junior = ceph_types(ceph_measures_batch(np.stack([r.junior for r in records]), spacing=0.1))
    table = metrics.scr_table(senior, junior).set_index("measure")["scr_pct"]
    per_measure = table.drop("average")
    assert per_measure.idxmin() == "SNA" and per_measure.min() == pytest.approx(66.0)
    assert per_measure.idxmax() == "SNB" and per_measure.max() == pytest.approx(86.0)
    # the single-image path agrees with the vectorised one
    for i in (0, 77, 149):
        single = ceph_measures(records[i].landmarks, spacing=0.1)
        for m in CEPH_MEASURES:
            assert single[m] == pytest.approx(mean[m][i], rel=1e-12, abs=1e-12)
