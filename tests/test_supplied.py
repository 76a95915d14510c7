"""Landmarks supplied by a person: ``analyze(image, landmarks=...)`` and ``--landmarks``."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cephspine
from cephspine import analysis as analysis_module
from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS, SPINE_LANDMARKS
from cephspine.errors import InputNotFoundError, InvalidArgumentError, LandmarkError
from cephspine.geometry import ceph_measures, classify_ceph, cobb_angles
from cephspine.io.datasets import IsbiDataset
from cephspine.prediction import SUPPLIED_MODEL

SCALE = 4  # the ISBI points on a 4× smaller image (0.4 mm pixels): the same anatomy, fast to load
SHAPE = (600, 484)


@pytest.fixture(scope="module")
def isbi(shared_data: Path) -> IsbiDataset:
    return IsbiDataset(shared_data / "isbi2015")


@pytest.fixture(scope="module")
def xy(isbi: IsbiDataset) -> np.ndarray:
    """Ground truth (mean of the two doctors) of ISBI image 001, in pixels of :data:`SHAPE`."""
    return isbi["001"].landmarks / SCALE


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.zeros(SHAPE, dtype=np.float32)


@pytest.fixture(autouse=True)
def no_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Supplied landmarks must never load or run a detector."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a detector was loaded for supplied landmarks")

    monkeypatch.setattr(analysis_module, "default_detector", refuse)


def tidy(xy: np.ndarray, names: tuple[str, ...] = CEPH_LANDMARKS, **extra: object) -> pd.DataFrame:
    return pd.DataFrame({**extra, "landmark": list(names), "x_px": xy[:, 0], "y_px": xy[:, 1]})


def ladder(height: int = 1200) -> np.ndarray:
    """68 spine corners: 17 tilted quadrilaterals stacked top to bottom."""
    out = []
    for i in range(17):
        s = math.sin(i / 3)
        cx, cy, t = 300 + 40 * s, 100 + 60 * i, math.radians(12 * s)
        for dx, dy in ((-30, -20), (30, -20), (-30, 20), (30, 20)):
            out.append((cx + dx * math.cos(t) - dy * math.sin(t), cy + dx * math.sin(t) + dy * math.cos(t)))
    return np.array(out)


# --------------------------------------------------------------------------- results


@pytest.mark.filterwarnings("error")
def test_array_gives_the_measures_of_the_geometry_and_no_confidence(image: np.ndarray, xy: np.ndarray) -> None:
    a = cephspine.analyze(image, landmarks=xy, spacing=0.1 * SCALE)  # warnings are errors here
    direct = ceph_measures(xy, spacing=0.1 * SCALE)
    assert dict(a.measures) == dict(direct)
    assert a.classification is not None and a.classification.types == classify_ceph(direct).types
    p = a.prediction
    np.testing.assert_array_equal(p.xy_px, xy)
    assert np.isnan(p.confidence).all()
    assert p.model == SUPPLIED_MODEL and p.supplied and p.model_version == ""
    assert p.provenance == "supplied by a person"
    assert a.warnings == () and a.low_confidence == []
    row = a.to_row()
    assert row["model"] == "supplied" and math.isnan(row["mean_confidence"]) and math.isnan(row["min_confidence"])
    assert row["n_low_confidence"] == 0 and row["low_confidence_landmarks"] == ""
    assert "no confidence" in repr(p) and "nan" not in repr(p)
    assert a.landmarks_dataframe()["confidence"].isna().all()
    assert json.loads(a.to_json())["prediction"]["confidence"] == [None] * 19
    assert len(a.to_dataframe()) == 8


def test_the_isbi_measures_of_supplied_landmarks_are_the_geometry_s(isbi: IsbiDataset) -> None:
    for id_ in ("002", "050", "150"):
        rec = isbi[id_]
        a = cephspine.analyze(np.zeros(SHAPE, np.float32), landmarks=rec.landmarks / SCALE, spacing=0.4)
        assert dict(a.measures) == pytest.approx(dict(ceph_measures(rec.landmarks, spacing=0.1)), rel=1e-12)


def test_a_left_facing_film_is_measured_as_its_mirror_image(image: np.ndarray, xy: np.ndarray) -> None:
    right = cephspine.analyze(image, landmarks=xy, spacing=0.4)
    mirrored = xy.copy()
    mirrored[:, 0] = SHAPE[1] - 1 - mirrored[:, 0]
    left = cephspine.analyze(image, landmarks=mirrored, spacing=0.4)
    assert left.prediction.meta["mirrored"] and not right.prediction.meta["mirrored"]
    assert left.measures is not None and left.measures.facing == "left"
    assert dict(left.measures) == pytest.approx(dict(right.measures), abs=1e-9)  # ODI, APDI and MW keep their signs
    assert cephspine.Analysis.from_json(left.to_json()).prediction.meta["mirrored"]


def test_csv_in_any_order_with_extra_columns(tmp_path: Path, image: np.ndarray, xy: np.ndarray) -> None:
    df = tidy(xy, confidence=0.5, model="ceph").sample(frac=1.0, random_state=0)  # shuffled rows
    path = tmp_path / "corrected.csv"
    df.to_csv(path, index=False)
    a = cephspine.analyze(image, landmarks=path, spacing=0.4)
    np.testing.assert_array_equal(a.prediction.xy_px, xy)
    assert dict(a.measures) == dict(ceph_measures(xy, spacing=0.4))
    assert a.prediction.meta["landmarks_file"] == "corrected.csv"
    assert a.prediction.provenance == "supplied by a person (file corrected.csv)"
    back = cephspine.Analysis.from_json(a.to_json())
    assert back == a and back.prediction.provenance == a.prediction.provenance
    assert json.loads(a.to_json())["prediction"]["landmarks_file"] == "corrected.csv"
    # a DataFrame, abbreviations and a str path give the same landmarks
    b = cephspine.analyze(image, landmarks=tidy(xy, CEPH_ABBREVIATIONS), spacing=0.4)
    c = cephspine.analyze(image, landmarks=str(path), spacing=0.4)
    np.testing.assert_array_equal(b.prediction.xy_px, xy)
    np.testing.assert_array_equal(c.prediction.xy_px, xy)
    assert b.prediction.meta["landmarks_file"] is None


def test_a_table_of_several_images_gives_this_image_s_rows(tmp_path: Path, xy: np.ndarray) -> None:
    img = tmp_path / "b.png"
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(img)
    table = pd.concat([tidy(xy + 3, image="scans/a.png"), tidy(xy, image="scans/b.png")])
    path = tmp_path / "cohort_landmarks.csv"
    table.to_csv(path, index=False)
    a = cephspine.analyze(img, landmarks=path, spacing=0.4)
    np.testing.assert_array_equal(a.prediction.xy_px, xy)
    other = tmp_path / "c.png"
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(other)
    with pytest.raises(LandmarkError, match=r"cohort_landmarks\.csv: no landmarks for image c\.png .*scans/a\.png"):
        cephspine.analyze(other, landmarks=path)
    with pytest.raises(LandmarkError, match=r"cohort_landmarks\.csv: holds the landmarks of 2 images"):
        cephspine.analyze(np.zeros(SHAPE, np.float32), landmarks=path)


def test_comment_lines_are_skipped_but_a_hash_inside_a_line_is_data(tmp_path: Path, xy: np.ndarray) -> None:
    img = tmp_path / "case#12.png"
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(img)
    path = tmp_path / "landmarks.csv"
    body = pd.concat([tidy(xy + 3, image="scans/case#11.png"), tidy(xy, image="scans/case#12.png")]).to_csv(index=False)
    path.write_text("# corrected by hand, 2025\n" + body.replace("\n", "\n  # a comment line\n", 1))
    a = cephspine.analyze(img, landmarks=path, spacing=0.4)
    np.testing.assert_array_equal(a.prediction.xy_px, xy)


def test_spine(tmp_path: Path) -> None:
    xy = ladder()
    path = tmp_path / "spine.csv"
    tidy(xy, SPINE_LANDMARKS).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = cephspine.analyze(np.zeros((1200, 600), np.float32), kind="spine", landmarks=path)
    assert a.cobb is not None
    np.testing.assert_array_equal(a.cobb.angles_deg, cobb_angles(xy, image_height=1200).angles_deg)
    assert np.isnan(a.prediction.confidence).all() and a.warnings == ()
    from tests.test_report import pdf_text

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cephspine.write_report(a, tmp_path / "spine.pdf", image=np.zeros((1200, 600), np.float32))
    text = pdf_text(out)
    assert "supplied by a person (file spine.csv)" in text and "Low-confidence" not in text


def test_a_report_of_supplied_landmarks(tmp_path: Path, image: np.ndarray, xy: np.ndarray) -> None:
    from tests.test_report import pdf_text

    path = tmp_path / "corrected.csv"
    tidy(xy).to_csv(path, index=False)
    out = tmp_path / "r.pdf"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = cephspine.report(image, out, spacing=0.4, landmarks=path)
    text = pdf_text(out)
    assert "supplied by a person (file corrected.csv)" in text
    assert "landmarks supplied by a person (no confidence)" in text
    assert "Low-confidence" not in text and "nan" not in text
    assert a.prediction.supplied


# --------------------------------------------------------------------------- errors


def _bad_tables(xy: np.ndarray) -> dict[str, tuple[pd.DataFrame, str]]:
    nan = xy.copy()
    nan[3] = np.nan
    out = xy.copy()
    out[7] = [309.0, 600.5]  # menton half a pixel below the last row's edge
    text = tidy(xy).astype({"x_px": object})
    text.loc[5, "x_px"] = "about 40"
    return {
        "missing": (tidy(xy[:-1], CEPH_LANDMARKS[:-1]), r"18 landmarks where ceph needs all 19; missing articulare"),
        "unknown": (tidy(xy, (*CEPH_LANDMARKS[:-1], "condylion")), r"unknown landmark name\(s\) condylion"),
        "duplicate": (
            tidy(np.vstack([xy, xy[:1]]), (*CEPH_LANDMARKS, "S")),
            r"landmark\(s\) sella given more than once",
        ),
        "non-finite": (tidy(nan), r"landmark\(s\) porion have no finite"),
        "not a number": (text, r"landmark\(s\) supramentale have no finite"),
        "outside": (tidy(out), r"landmark\(s\) outside the image <array> \(484 × 600 px\): menton \(309, 600\.5\)$"),
        "columns": (tidy(xy).rename(columns={"x_px": "x"}), r"needs the columns landmark, x_px, y_px .*missing x_px"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "unknown", "duplicate", "non-finite", "not a number", "outside", "columns"]
)
def test_bad_csv_is_a_landmark_error_naming_the_file(
    case: str, tmp_path: Path, image: np.ndarray, xy: np.ndarray
) -> None:
    table, message = _bad_tables(xy)[case]
    path = tmp_path / f"{case}.csv"
    table.to_csv(path, index=False)
    with pytest.raises(LandmarkError, match=rf"^{path}: {message}"):
        cephspine.analyze(image, landmarks=path, spacing=0.4)
    with pytest.raises(LandmarkError, match=rf"^landmarks table: {message}"):
        cephspine.analyze(image, landmarks=table, spacing=0.4)


def test_bad_arrays_and_arguments(tmp_path: Path, image: np.ndarray, xy: np.ndarray) -> None:
    with pytest.raises(LandmarkError, match=r"^landmarks array: shape \(18, 2\); ceph needs 19"):
        cephspine.analyze(image, landmarks=xy[:-1])
    with pytest.raises(LandmarkError, match=r"shape \(19, 2\); spine needs 68"):
        cephspine.analyze(image, kind="spine", landmarks=xy)
    inf = xy.copy()
    inf[0, 0] = np.inf
    with pytest.raises(LandmarkError, match=r"^landmarks array: landmark\(s\) sella have no finite"):
        cephspine.analyze(image, landmarks=inf)
    with pytest.raises(InputNotFoundError, match=r"nope\.csv: landmarks file not found"):
        cephspine.analyze(image, landmarks=tmp_path / "nope.csv")
    with pytest.raises(InvalidArgumentError, match="landmarks must be an"):
        cephspine.analyze(image, landmarks={"S": (1, 2)})
    with pytest.raises(InvalidArgumentError, match="either detector= .* or landmarks="):
        cephspine.analyze(image, landmarks=xy, detector=object())  # type: ignore[arg-type]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(LandmarkError, match=r"empty\.csv: not a readable CSV"):
        cephspine.analyze(image, landmarks=empty)


# --------------------------------------------------------------------------- command line


def _not_json(token: str) -> None:
    raise AssertionError(f"{token} is not JSON")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cephspine", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_analyze_and_report_with_landmarks(tmp_path: Path, xy: np.ndarray) -> None:
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(tmp_path / "film.png")
    tidy(xy, image="film.png").to_csv(tmp_path / "corrected.csv", index=False)
    ok = _run("analyze", "film.png", "--landmarks", "corrected.csv", "--spacing", "0.4", "-f", "json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""  # no warnings: nothing about confidence, nothing about the anatomy
    d = json.loads(ok.stdout, parse_constant=_not_json)  # strict JSON: no NaN
    assert d["prediction"]["model"] == "supplied" and d["prediction"]["landmarks_file"] == "corrected.csv"
    assert d["prediction"]["confidence"] == [None] * 19
    assert d["measures"]["ANB"] == pytest.approx(ceph_measures(xy, spacing=0.4)["ANB"])
    table = _run("analyze", "film.png", "--landmarks", "corrected.csv", cwd=tmp_path)
    assert table.returncode == 0 and "supplied by a person (file corrected.csv)" in table.stdout
    assert "MW" in table.stdout and "needs pixel spacing" in table.stdout
    rep = _run("report", "film.png", "--landmarks", "corrected.csv", "--spacing", "0.4", "-o", "r.pdf", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_cli_errors_with_landmarks(tmp_path: Path, xy: np.ndarray) -> None:
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(tmp_path / "film.png")
    tidy(xy[:-1], CEPH_LANDMARKS[:-1]).to_csv(tmp_path / "short.csv", index=False)
    bad = _run("analyze", "film.png", "--landmarks", "short.csv", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == "error: short.csv: 18 landmarks where ceph needs all 19; missing articulare\n"
    both = _run("analyze", "film.png", "--landmarks", "short.csv", "--model", "ceph", cwd=tmp_path)
    assert both.returncode == 2 and "leave out --model" in both.stderr


def test_cli_predicted_landmarks_edited_and_read_back(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The correction workflow: ``predict -f csv``, move a point, ``analyze --landmarks``."""
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (220, 180), dtype=np.uint8)).save(tmp_path / "f.png")
    pred = _run("predict", "f.png", "-m", str(tiny_model_dir), "--device", "cpu", "-f", "csv", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    table = pd.read_csv(io.StringIO(pred.stdout))
    table.loc[table["landmark"] == "menton", ["x_px", "y_px"]] = [90.0, 200.0]
    table.to_csv(tmp_path / "edited.csv", index=False)
    out = _run("analyze", "f.png", "--landmarks", "edited.csv", "--spacing", "0.1", "-f", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)["prediction"]
    expected = table[["x_px", "y_px"]].to_numpy()
    np.testing.assert_allclose(d["xy_px"], expected)
    assert d["xy_px"][7] == [90.0, 200.0] and d["model"] == "supplied" and d["landmarks_file"] == "edited.csv"
