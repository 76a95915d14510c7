"""Comparing two cephalograms of one patient: ``cephspine.compare`` and ``cephspine compare``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import cephspine
from cephspine.anatomy import CEPH_LANDMARKS
from cephspine.comparison import LANDMARK_CHANGE_COLUMNS, MEASURE_CHANGE_COLUMNS, Comparison, sn_frame
from cephspine.errors import InvalidArgumentError, LandmarkError, OutputError, SpacingError
from cephspine.geometry import ANALYSIS_KEYS, CEPH_MEASURES, MEASURE_UNITS, ceph_measures
from cephspine.io.datasets import IsbiDataset

S, N, POG, ME = 0, 1, 6, 7
IDS = ("001", "017", "120")


@pytest.fixture(scope="module")
def heads_mm(shared_data: Path) -> dict[str, np.ndarray]:
    """Ground truth (mean of the two doctors) of a few ISBI images, in mm."""
    ds = IsbiDataset(shared_data / "isbi2015")
    return {i: ds[i].landmarks * 0.1 for i in IDS}


def film(xy_mm: np.ndarray, spacing: tuple[float, float] = (0.4, 0.4), name: str = "<array>") -> cephspine.Analysis:
    """An analysis of ``xy_mm`` placed on a blank image with pixels ``spacing`` (row, col) mm,
    the landmarks at least 10 px from its edges."""
    px = xy_mm / np.array([spacing[1], spacing[0]])
    px = px - px.min(axis=0) + 10.0
    w, h = (np.ceil(px.max(axis=0)) + 10).astype(int)
    return cephspine.analyze(np.zeros((h, w), np.float32), landmarks=px, spacing=spacing)


def moved(xy_mm: np.ndarray, angle_deg: float, shift: tuple[float, float], mirror: bool) -> np.ndarray:
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    out = xy_mm @ rot.T + np.asarray(shift)
    if mirror:
        out[:, 0] *= -1.0
    return out


# --------------------------------------------------------------------------- the frame and the tables


def test_a_film_compared_with_itself_changes_nothing(heads_mm: dict[str, np.ndarray]) -> None:
    a = film(heads_mm["001"])
    cmp = cephspine.compare(a, a)
    df = cmp.to_dataframe()
    assert list(df.columns) == list(MEASURE_CHANGE_COLUMNS)
    assert (df["change"] == 0.0).all() and df["before"].notna().all()
    keys = [f"{m.lower()}_{MEASURE_UNITS[m]}" for m in CEPH_MEASURES]
    assert list(df["key"]) == [*keys, *ANALYSIS_KEYS]
    lm = cmp.landmarks_dataframe()
    assert list(lm.columns) == list(LANDMARK_CHANGE_COLUMNS) and list(lm["landmark"]) == list(CEPH_LANDMARKS)
    assert (lm[["dx_mm", "dy_mm", "distance_mm"]].to_numpy() == 0.0).all()


def test_the_frame_puts_s_at_the_origin_n_on_x_and_menton_below(heads_mm: dict[str, np.ndarray]) -> None:
    xy = heads_mm["001"]
    f = sn_frame(xy)
    assert f[S] == pytest.approx([0.0, 0.0])
    assert f[N] == pytest.approx([np.linalg.norm(xy[N] - xy[S]), 0.0])
    assert f[ME, 1] > 0
    # distances are kept (rigid, no scaling)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.testing.assert_allclose(np.linalg.norm(f[:, None] - f[None], axis=2), d, atol=1e-9)


def test_measures_are_those_of_each_film(heads_mm: dict[str, np.ndarray]) -> None:
    a, b = film(heads_mm["001"]), film(heads_mm["017"], spacing=(0.3, 0.5))
    df = cephspine.compare(a, b).to_dataframe().set_index("key")
    for m in CEPH_MEASURES:
        key = f"{m.lower()}_{MEASURE_UNITS[m]}"
        assert df.loc[key, "before"] == pytest.approx(ceph_measures(heads_mm["001"], spacing=1.0)[m], abs=1e-9)
        assert df.loc[key, "after"] == pytest.approx(ceph_measures(heads_mm["017"], spacing=1.0)[m], abs=1e-9)
    from cephspine.geometry import ceph_analyses

    theirs = ceph_analyses(heads_mm["017"], 1.0).set_index("key")["value"]
    for key in ANALYSIS_KEYS:
        assert df.loc[key, "after"] == pytest.approx(theirs[key], abs=1e-9)
        assert df.loc[key, "change"] == pytest.approx(df.loc[key, "after"] - df.loc[key, "before"], abs=1e-12)


@given(
    which=st.sampled_from(IDS),
    angle=st.floats(-180.0, 180.0),
    shift=st.tuples(st.floats(-500.0, 500.0), st.floats(-500.0, 500.0)),
    mirror=st.booleans(),
    spacing=st.tuples(st.floats(0.25, 0.6), st.floats(0.25, 0.6)),
)
def test_a_rigid_motion_or_mirror_of_the_head_and_another_spacing_change_nothing(
    heads_mm: dict[str, np.ndarray],
    which: str,
    angle: float,
    shift: tuple[float, float],
    mirror: bool,
    spacing: tuple[float, float],
) -> None:
    xy = heads_mm[which]
    cmp = cephspine.compare(film(xy), film(moved(xy, angle, shift, mirror), spacing))
    df = cmp.to_dataframe()
    assert df["before"].notna().all()
    np.testing.assert_allclose(df["change"], 0.0, atol=1e-7)
    np.testing.assert_allclose(cmp.landmarks_dataframe()[["dx_mm", "dy_mm"]], 0.0, atol=1e-7)


def test_same_anatomy_at_two_resolutions(heads_mm: dict[str, np.ndarray]) -> None:
    xy = heads_mm["120"]
    cmp = cephspine.compare(film(xy, (0.5, 0.5)), film(xy, (0.25, 0.3)))
    assert cmp.before.prediction.image_shape != cmp.after.prediction.image_shape
    np.testing.assert_allclose(cmp.to_dataframe()["change"], 0.0, atol=1e-9)
    np.testing.assert_allclose(cmp.landmarks_dataframe()["distance_mm"], 0.0, atol=1e-9)


@pytest.mark.parametrize("mirror", [False, True])
def test_a_known_move_of_one_landmark(heads_mm: dict[str, np.ndarray], mirror: bool) -> None:
    """Pogonion moved 2 mm forward along S→N and 3 mm toward menton: dx 2, dy 3, whichever
    way the head faces; no other landmark moves."""
    xy = moved(heads_mm["001"], 20.0, (5.0, 7.0), mirror)
    e1 = (xy[N] - xy[S]) / np.linalg.norm(xy[N] - xy[S])
    e2 = np.array([-e1[1], e1[0]])
    e2 = e2 if (xy[ME] - xy[S]) @ e2 > 0 else -e2
    after = xy.copy()
    after[POG] += 2.0 * e1 + 3.0 * e2
    cmp = cephspine.compare(film(xy), film(after, (0.3, 0.35)))
    lm = cmp.landmarks_dataframe().set_index("abbreviation")
    assert lm.loc["Pog", "dx_mm"] == pytest.approx(2.0, abs=1e-9)
    assert lm.loc["Pog", "dy_mm"] == pytest.approx(3.0, abs=1e-9)
    assert lm.loc["Pog", "distance_mm"] == pytest.approx(math.sqrt(13.0), abs=1e-9)
    np.testing.assert_allclose(lm.drop(index="Pog")[["dx_mm", "dy_mm"]], 0.0, atol=1e-9)
    change = cmp.to_dataframe().set_index("key")["change"]
    assert change["pog_to_nperp_mm"] != pytest.approx(0.0, abs=1e-3)  # a measure that uses Pog moves
    assert change["anb_deg"] == pytest.approx(0.0, abs=1e-9)  # one that does not, does not


# --------------------------------------------------------------------------- errors, equality, JSON


def test_compare_needs_two_ceph_films_with_spacing(heads_mm: dict[str, np.ndarray]) -> None:
    a = film(heads_mm["001"])
    px = a.prediction.xy_px
    with pytest.warns(cephspine.SpacingWarning, match="MW not computed"):
        no_spacing = cephspine.analyze(np.zeros(a.prediction.image_shape, np.float32), landmarks=px)
    with pytest.raises(SpacingError, match=r"^<array>: pixel spacing unknown; comparing two films"):
        cephspine.compare(a, no_spacing)
    spine_xy = np.array([(300 + 5 * (k % 2), 100 + 30 * (k // 2)) for k in range(68)], dtype=float)
    spine = cephspine.analyze(np.zeros((1200, 600), np.float32), kind="spine", landmarks=spine_xy)
    with pytest.raises(InvalidArgumentError, match="this is a spine analysis"):
        cephspine.compare(spine, a)
    with pytest.raises(InvalidArgumentError, match="after is a dict"):
        cephspine.compare(a, {})  # type: ignore[arg-type]
    same = px.copy()
    same[N] = same[S]
    with pytest.warns(cephspine.AnatomyWarning, match="measures not computed"):
        bad = cephspine.analyze(np.zeros(a.prediction.image_shape, np.float32), landmarks=same, spacing=0.4)
    with pytest.raises(LandmarkError, match="sella and nasion coincide"):
        cephspine.compare(a, bad)


def test_equality_and_json_round_trip(heads_mm: dict[str, np.ndarray]) -> None:
    a, b = film(heads_mm["001"]), film(heads_mm["017"])
    cmp = cephspine.compare(a, b)
    back = Comparison.from_json(cmp.to_json())
    assert back == cmp and back != cephspine.compare(b, a)
    pd.testing.assert_frame_equal(back.to_dataframe(), cmp.to_dataframe())
    assert "Comparison(<array> → <array>: ANB" in repr(cmp)
    with pytest.raises(InvalidArgumentError, match="not a cephspine comparison"):
        Comparison.from_dict({"before": {}})


# --------------------------------------------------------------------------- PDF and command line


def test_pdf(tmp_path: Path, heads_mm: dict[str, np.ndarray]) -> None:
    from pypdf import PdfReader

    from tests.test_report import pdf_text

    xy = heads_mm["001"]
    after = xy.copy()
    after[POG] += [3.0, 2.0]
    cmp = cephspine.compare(film(xy), film(after))
    out = cmp.to_pdf(tmp_path / "cmp.pdf")
    assert len(PdfReader(out).pages) == 2
    text = pdf_text(out)
    for expected in (
        "cephspine comparison",
        "before: <array>",
        "after: <array>",
        "registered at S",
        "mirrored when it faces left",  # a left-facing film is mirrored into the frame, not only moved
        "Landmark displacements",
        "pogonion (Pog)",
        "saddle angle",
        "supplied by a person",
        cephspine.reports.RESEARCH_NOTICE,
    ):
        assert expected in text, expected
    pog = cmp.landmarks_dataframe().set_index("abbreviation").loc["Pog"]
    assert f"+{pog['dx_mm']:.2f} mm" in text and f"{pog['distance_mm']:.2f} mm" in text
    assert cephspine.write_compare_report is cephspine.reports.write_compare_report
    with pytest.raises(OutputError, match="folder .* does not exist"):
        cmp.to_pdf(tmp_path / "nope" / "cmp.pdf")
    with pytest.raises(InvalidArgumentError, match="takes a Comparison"):
        cephspine.write_compare_report(cmp.before, tmp_path / "x.pdf")  # type: ignore[arg-type]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cephspine", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_compare(tmp_path: Path, heads_mm: dict[str, np.ndarray]) -> None:
    for name, xy in (("t0", heads_mm["001"]), ("t1", heads_mm["017"])):
        px = xy / 0.4
        Image.fromarray(np.zeros((620, 500), np.uint8)).save(tmp_path / f"{name}.png")
        pd.DataFrame({"landmark": CEPH_LANDMARKS, "x_px": px[:, 0], "y_px": px[:, 1]}).to_csv(
            tmp_path / f"{name}.csv", index=False
        )
    common = ["t0.png", "t1.png", "--landmarks-before", "t0.csv", "--landmarks-after", "t1.csv"]
    ok = _run("compare", *common, "--spacing", "0.4", "-o", "cmp.pdf", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert "anb_deg" in ok.stdout and "pogonion" in ok.stdout and "report written to cmp.pdf" in ok.stdout
    assert (tmp_path / "cmp.pdf").read_bytes().startswith(b"%PDF")
    js = _run("compare", *common, "--spacing", "0.4", "-f", "json", cwd=tmp_path)
    d = json.loads(js.stdout)
    expected = cephspine.compare(film(heads_mm["001"]), film(heads_mm["017"])).to_dataframe()
    assert [r["key"] for r in d["measures"]] == list(expected["key"])
    assert d["measures"][0]["change"] == pytest.approx(expected["change"][0], abs=1e-9)
    assert len(d["landmarks"]) == 19
    no_spacing = _run("compare", *common, cwd=tmp_path)
    assert no_spacing.returncode == 1 and no_spacing.stdout == ""
    assert no_spacing.stderr.startswith("error: t0.png: pixel spacing unknown") and no_spacing.stderr.count("\n") == 1
