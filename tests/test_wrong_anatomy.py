"""A model run on the wrong anatomy says so: ``cephspine.plausibility`` and its warning
through predictions, analyses, cohort rows and reports."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import cephspine
from cephspine.analysis import default_detector
from cephspine.anatomy import ANATOMIES, CEPH_LANDMARKS, MEAN_SHAPES, SPINE_LANDMARKS
from cephspine.errors import LandmarkError, WrongAnatomyWarning
from cephspine.plausibility import WRONG_ANATOMY_THRESHOLDS, check_anatomy, shape_distance

SPINE_FILM = "sunhl-1th-06-Jan-2017-177_B_AP.jpg"  # AASCE, held out from the spine model's training
CEPHALOGRAM = "121.jpg"  # an ISBI 2015 image


def _rotate(xy: np.ndarray, deg: float) -> np.ndarray:
    t = math.radians(deg)
    return xy @ np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


# ----------------------------------------------------------------------- the shape test


@pytest.mark.parametrize("anatomy", ["ceph", "spine"])
def test_mean_shapes_match_the_landmarks(anatomy: str) -> None:
    mean = np.asarray(MEAN_SHAPES[anatomy])
    assert mean.shape == (len(ANATOMIES[anatomy]), 2)
    assert np.allclose(mean.mean(axis=0), 0, atol=1e-4) and np.linalg.norm(mean) == pytest.approx(1, abs=1e-4)


def test_shape_distance_ignores_position_size_rotation_and_mirroring() -> None:
    ref = np.asarray(MEAN_SHAPES["ceph"])
    moved = 2400 * _rotate(ref, 17) + [900, 1200]
    assert shape_distance(moved, ref) == pytest.approx(0, abs=1e-6)
    assert shape_distance(moved * [-1, 1], ref) == pytest.approx(0, abs=1e-6)  # a left-facing profile
    noise = np.random.default_rng(0).normal(size=ref.shape)
    assert 0.8 < shape_distance(noise, ref) <= 1
    assert math.isnan(shape_distance(np.zeros_like(ref), ref))
    with pytest.raises(LandmarkError):
        shape_distance(ref[:5], ref)


def test_check_anatomy_scores_confidence_and_shape() -> None:
    ref = 1000 * np.asarray(MEAN_SHAPES["spine"])
    good = check_anatomy("spine", SPINE_LANDMARKS, ref, np.full(68, 0.9))
    assert good is not None and not good.wrong_anatomy and good.score == pytest.approx(0, abs=1e-6)
    unsure = check_anatomy("spine", SPINE_LANDMARKS, ref, np.full(68, 0.1))
    assert unsure is not None and unsure.low_share == 1 and unsure.wrong_anatomy
    assert unsure.threshold == WRONG_ANATOMY_THRESHOLDS["spine"]
    assert "does not look like a spinal AP radiograph" in unsure.message("x.jpg")
    assert unsure.message("x.jpg").startswith("x.jpg: ")
    # nothing to compare with: another landmark set or anatomy
    assert check_anatomy("spine", CEPH_LANDMARKS, ref[:19], np.ones(19)) is None
    assert check_anatomy("knee", SPINE_LANDMARKS, ref, np.ones(68)) is None
    assert check_anatomy(None, SPINE_LANDMARKS, ref, np.ones(68)) is None


# ----------------------------------------------------------------------- real images


def _analyze(image: Path, kind: str, **kwargs: object) -> tuple[cephspine.Analysis, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = cephspine.analyze(image, kind=kind, detector=default_detector(kind, "cpu"), **kwargs)
    return a, caught


def test_the_bundled_cephalogram_is_not_flagged() -> None:
    a, caught = _analyze(cephspine.example_path("ceph"), "ceph", spacing=0.1)
    assert not [w for w in caught if issubclass(w.category, WrongAnatomyWarning)]
    assert not any("does not look like" in w for w in a.warnings)


@pytest.mark.shared_data
def test_a_spine_film_through_the_ceph_model_warns_everywhere(shared_data: Path, tmp_path: Path) -> None:
    from pypdf import PdfReader

    image = shared_data / "aasce" / "images" / SPINE_FILM
    a, caught = _analyze(image, "ceph")  # no spacing, as in the AASCE files
    flagged = [w for w in caught if issubclass(w.category, WrongAnatomyWarning)]
    assert len(flagged) == 1
    text = str(flagged[0].message)
    assert text.startswith(f"{SPINE_FILM}: the image does not look like a lateral cephalogram")
    assert Path(flagged[0].filename).resolve() == Path(__file__).resolve()  # points at the caller
    assert text in a.warnings and text in a.to_row()["warnings"]
    assert cephspine.Analysis.from_json(a.to_json()).warnings == a.warnings

    # a cohort row's warnings column and a report's warnings list carry it
    df = cephspine.cohort([image], kind="ceph", detector=default_detector("ceph", "cpu"), progress=False)
    assert (
        df.loc[0, "status"] == "wrong_anatomy" and "does not look like a lateral cephalogram" in df.loc[0, "warnings"]
    )
    assert df[["anb_deg", "anb_type"]].isna().all(axis=None) and df["anb_class"].isna().all()
    pdf = cephspine.write_report(a, tmp_path / "r.pdf", image=image)
    pdf_text = " ".join("".join(p.extract_text() or "" for p in PdfReader(str(pdf)).pages).split())
    assert "does not look like a lateral cephalogram" in pdf_text


@pytest.mark.shared_data
def test_a_cephalogram_through_the_spine_model_warns(shared_data: Path) -> None:
    image = shared_data / "isbi2015" / "images" / CEPHALOGRAM
    a, caught = _analyze(image, "spine")
    assert [w for w in caught if issubclass(w.category, WrongAnatomyWarning)]
    assert any(w.startswith(f"{CEPHALOGRAM}: the image does not look like a spinal AP radiograph") for w in a.warnings)
    assert "Cobb angles" in next(w for w in a.warnings if "does not look like" in w)


@pytest.mark.shared_data
def test_a_spine_film_through_the_spine_model_is_not_flagged(shared_data: Path) -> None:
    a, caught = _analyze(shared_data / "aasce" / "images" / SPINE_FILM, "spine")
    assert not [w for w in caught if issubclass(w.category, WrongAnatomyWarning)]


# ----------------------------------------------------------------------- not a result


def _wrong(kind: str = "ceph") -> cephspine.Analysis:
    """An analysis whose detector found the landmarks of the wrong anatomy."""
    from tests.test_report import ceph_analysis, spine_analysis

    a = ceph_analysis() if kind == "ceph" else spine_analysis()
    pred = dataclasses.replace(a.prediction, meta={"wrong_anatomy": True})
    return dataclasses.replace(a, prediction=pred)


@pytest.mark.parametrize("kind", ["ceph", "spine"])
def test_a_wrong_anatomy_row_is_not_a_result(kind: str) -> None:
    a = _wrong(kind)
    assert a.wrong_anatomy and a.status == "wrong_anatomy" and "not a result" in repr(a)
    row = a.to_row()
    assert row["status"] == "wrong_anatomy" and row["mean_confidence"] > 0
    results = ["anb_deg", "anb_type", "anb_class", "fma_deg", "sn_gogn_deg"] if kind == "ceph" else []
    results = results or ["pt_deg", "pt_upper", "pt_severity", "max_cobb_deg", "severity"]
    for k in results:
        assert row[k] == "" or math.isnan(row[k]), k
    df = a.to_dataframe()  # the values stay, without types, labels or severity
    assert df["angle_deg" if kind == "spine" else "value"].notna().all()
    for c in ("type", "label", "severity"):
        if c in df.columns:
            assert not df[c].fillna("").astype(str).str.strip().any(), c
    b = cephspine.Analysis.from_json(a.to_json())
    assert b.wrong_anatomy and b == a and "classification" not in a.to_dict()
    ok = dataclasses.replace(a, prediction=dataclasses.replace(a.prediction, meta={}))
    assert ok.to_row()["status"] == "ok"


def test_a_wrong_anatomy_cohort_row_is_left_out_of_groupby_and_the_cohort_report(tmp_path: Path) -> None:
    import pandas as pd
    from pypdf import PdfReader

    from cephspine.cohorts.columns import row_schema
    from tests.test_report import ceph_analysis

    good, wrong = ceph_analysis(image="good.jpg"), _wrong("ceph")
    wrong = dataclasses.replace(wrong, image="spine.jpg", warnings=("spine.jpg: the image does not look like x",))
    df = row_schema("ceph").frame([good.to_row(), wrong.to_row()])
    assert list(df["status"]) == ["ok", "wrong_anatomy"]
    assert df.groupby("anb_class").size().sum() == 1 and df["anb_deg"].count() == 1
    out = cephspine.write_cohort_report(df, tmp_path / "c.pdf", kind="ceph")
    text = " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(out).pages)
    assert "Wrong anatomy (not results) 1" in text and "Wrong anatomy, not results (1)" in text
    assert "spine.jpg spine.jpg: the image does not look like x" in text
    assert isinstance(df, pd.DataFrame)


@pytest.mark.parametrize("kind", ["ceph", "spine"])
def test_a_wrong_anatomy_report_opens_with_a_banner_and_shows_no_types(kind: str, tmp_path: Path) -> None:
    from pypdf import PdfReader

    a = _wrong(kind)
    image = cephspine.example_path("ceph") if kind == "ceph" else np.zeros(a.prediction.image_shape, np.float32)
    out = cephspine.write_report(a, tmp_path / "r.pdf", image=image)
    first = " ".join((PdfReader(out).pages[0].extract_text() or "").split())
    banner = first.index(f"NOT A RESULT: {a.image} does not look like")
    assert banner < first.index("Source file") and banner < first.index("Low-confidence landmarks")  # on top
    if kind == "ceph":
        assert "Class II skeletal" not in first and "above normal" not in first
        assert first.count("not a result (wrong anatomy)") == 8
    else:
        assert "severe" not in first.split("Severity bands")[0].split("Cobb angles")[-1]


@pytest.mark.shared_data
def test_the_cli_marks_a_spine_film_analysed_as_a_cephalogram(shared_data: Path, tmp_path: Path) -> None:
    from tests.test_cli_entry_point import cli

    image = shared_data / "aasce" / "images" / SPINE_FILM
    r = cli("analyze", str(image), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout.startswith(f"NOT A RESULT: {SPINE_FILM} does not look like a lateral cephalogram")
    assert "Class III skeletal" not in r.stdout and "Class II skeletal" not in r.stdout
    r = cli("analyze", str(image), "-f", "json", cwd=tmp_path)
    assert r.returncode == 1 and '"status": "wrong_anatomy"' in r.stdout
    r = cli("report", str(image), "-o", "r.pdf", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout.startswith("NOT A RESULT") and (tmp_path / "r.pdf").is_file()
    (tmp_path / "films").mkdir()
    (tmp_path / "films" / SPINE_FILM).write_bytes(image.read_bytes())
    r = cli("cohort", "films", "--no-progress", cwd=tmp_path)
    assert "1 images: 0 ok, 0 error(s), 1 of the wrong anatomy" in r.stdout
