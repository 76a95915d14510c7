"""Exports in standard formats: CSV, COCO keypoints and DICOM SR (TID 1500), read back."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid

import cephspine
from cephspine.analysis import LOW_CONFIDENCE, Analysis
from cephspine.errors import InputNotFoundError, InvalidArgumentError, MissingDependencyError, OutputError
from cephspine.exports.coco import spine_skeleton, to_coco, visibility, write_coco
from tests.io.dicom_fixtures import PATIENT_ID, PATIENT_NAME, make_dataset, ramp, write

ROOT = Path(__file__).resolve().parents[1]
H, W = 200, 300


def _xy(kind: str = "ceph", seed: int = 0) -> np.ndarray:
    n = 19 if kind == "ceph" else 68
    return np.random.default_rng(seed).uniform(10, 190, size=(n, 2)) + [0.123456789, 0.0]


def _analyze(image: Any, kind: str = "ceph", seed: int = 0) -> Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cephspine.analyze(image, kind=kind, landmarks=_xy(kind, seed))


def _detected(a: Analysis, confidence: np.ndarray) -> Analysis:
    """``a`` as if a detector named ``tiny`` version ``0.1`` had found its landmarks."""
    p = dataclasses.replace(a.prediction, confidence=confidence, model="tiny", model_version="0.1")
    return dataclasses.replace(a, prediction=p)


@pytest.fixture
def dicom_file(tmp_path: Path) -> tuple[Path, Any]:
    ds = make_dataset(
        ramp(H, W),
        StudyInstanceUID=generate_uid(),
        SeriesInstanceUID=generate_uid(),
        PixelSpacing=[0.1, 0.1],
    )
    return write(ds, tmp_path / "scan.dcm"), ds


@pytest.fixture
def png_analysis(tmp_path: Path) -> Analysis:
    from PIL import Image

    path = tmp_path / "film.png"
    Image.fromarray(ramp(H, W, 255, np.uint8)).save(path)
    return _analyze(path)


# --------------------------------------------------------------------------- dispatch


def test_unknown_format_and_misplaced_source(png_analysis: Analysis, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="csv, coco, dicom-sr.*'pdf'"):
        cephspine.export(png_analysis, tmp_path / "x.pdf", format="pdf")
    with pytest.raises(InvalidArgumentError, match="dicom-sr export only"):
        cephspine.export(png_analysis, tmp_path / "x.csv", format="csv", source=tmp_path / "film.png")


def test_export_to_a_missing_folder_is_an_output_error(png_analysis: Analysis, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="nowhere.*does not exist"):
        cephspine.export(png_analysis, tmp_path / "nowhere" / "x.json", format="coco")
    assert not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip(png_analysis: Analysis, tmp_path: Path) -> None:
    out = cephspine.export(png_analysis, tmp_path / "lm.csv", format="csv")
    ann = cephspine.read_annotations(out)
    assert ann.names == png_analysis.prediction.names
    assert list(ann) == ["film.png"]
    np.testing.assert_allclose(ann["film.png"], png_analysis.prediction.xy_px, rtol=0, atol=1e-9)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_csv_export_is_the_landmark_table(png_analysis: Analysis, tmp_path: Path) -> None:
    import pandas as pd

    out = cephspine.export(png_analysis, tmp_path / "lm.csv")
    df = pd.read_csv(out)
    expected = png_analysis.landmarks_dataframe()
    assert list(df.columns) == list(expected.columns)
    assert list(df["landmark"]) == list(expected["landmark"])


def test_csv_export_keeps_the_spacing(png_analysis: Analysis, tmp_path: Path) -> None:
    import pandas as pd

    from cephspine.radiograph import Spacing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cephspine.analyze(tmp_path / "film.png", kind="ceph", spacing=(0.1, 0.12), landmarks=_xy())
    out = cephspine.export(a, tmp_path / "lm.csv", format="csv")
    assert cephspine.read_annotations(out).spacing == {"film.png": Spacing(0.1, 0.12)}
    df = pd.read_csv(out)
    assert (df["spacing_row_mm"] == 0.1).all() and (df["spacing_col_mm"] == 0.12).all()
    # without a spacing the columns are empty and none is read back
    out = cephspine.export(png_analysis, tmp_path / "none.csv", format="csv")
    assert pd.read_csv(out)["spacing_row_mm"].isna().all()
    assert cephspine.read_annotations(out).spacing == {}


# --------------------------------------------------------------------------- COCO


def test_coco_round_trip_equals_the_prediction(png_analysis: Analysis, tmp_path: Path) -> None:
    out = cephspine.export(png_analysis, tmp_path / "lm.json", format="coco")
    ann = cephspine.read_annotations(out)
    assert ann.names == png_analysis.prediction.names
    np.testing.assert_array_equal(ann["film.png"], png_analysis.prediction.xy_px)
    assert ann.image_sizes == {"film.png": (H, W)}


def test_coco_round_trip_of_a_detected_analysis(tiny_model_dir: Path, tmp_path: Path) -> None:
    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    img = ramp(64, 48, 1.0, np.float64).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cephspine.analyze(img, kind="ceph", detector=det)
    out = write_coco([a], tmp_path / "det.json")
    doc = json.loads(out.read_text())
    ann = doc["annotations"][0]
    assert ann["keypoint_scores"] == pytest.approx(a.prediction.confidence.tolist())
    assert ann["keypoints"][2::3] == visibility(a.prediction.confidence)
    np.testing.assert_array_equal(cephspine.read_annotations(out)["<array>"], a.prediction.xy_px)


def test_coco_document_layout(png_analysis: Analysis) -> None:
    conf = np.linspace(0.05, 0.95, 19)
    conf[3] = LOW_CONFIDENCE  # at the threshold: visible
    a = _detected(png_analysis, conf)
    doc = to_coco(a)
    (cat,) = doc["categories"]
    assert cat["name"] == "ceph" and cat["keypoints"] == list(cephspine.CEPH_LANDMARKS) and cat["skeleton"] == []
    (img,) = doc["images"]
    assert (img["file_name"], img["width"], img["height"]) == ("film.png", W, H)
    (ann,) = doc["annotations"]
    xy = a.prediction.xy_px
    assert ann["image_id"] == img["id"] and ann["category_id"] == cat["id"]
    assert ann["num_keypoints"] == 19
    assert ann["keypoints"][0::3] == xy[:, 0].tolist() and ann["keypoints"][1::3] == xy[:, 1].tolist()
    expected_v = [1 if c < LOW_CONFIDENCE else 2 for c in conf]
    assert ann["keypoints"][2::3] == expected_v and expected_v[3] == 2 and 1 in expected_v
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    assert ann["area"] == pytest.approx((x1 - x0) * (y1 - y0))
    assert ann["keypoint_scores"] == pytest.approx(conf.tolist())
    assert ann["model"] == "tiny" and ann["model_version"] == "0.1"


def test_coco_supplied_landmarks_are_visible_with_null_scores(png_analysis: Analysis) -> None:
    (ann,) = to_coco(png_analysis)["annotations"]
    assert set(ann["keypoints"][2::3]) == {2}
    assert ann["keypoint_scores"] == [None] * 19 and ann["score"] is None


def test_coco_cohort_file_with_both_anatomies(tmp_path: Path) -> None:
    from PIL import Image

    analyses = []
    for i, kind in enumerate(("ceph", "spine", "ceph")):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(ramp(H, W, 255, np.uint8)).save(path)
        analyses.append(_analyze(path, kind, seed=i))
    out = write_coco(analyses, tmp_path / "cohort.json")
    doc = json.loads(out.read_text())
    assert [c["name"] for c in doc["categories"]] == ["ceph", "spine"]
    spine = doc["categories"][1]
    assert spine["skeleton"] == spine_skeleton() and len(spine["skeleton"]) == 68
    assert spine["skeleton"][:4] == [[1, 2], [2, 4], [4, 3], [3, 1]]
    assert [a["image_id"] for a in doc["annotations"]] == [1, 2, 3]
    # one file, two landmark sets: reading it back says so
    with pytest.raises(cephspine.LandmarkError, match="same for every image"):
        cephspine.read_annotations(out)
    ceph_only = write_coco([analyses[0], analyses[2]], tmp_path / "ceph.json")
    ann = cephspine.read_annotations(ceph_only)
    for a in (analyses[0], analyses[2]):
        np.testing.assert_array_equal(ann[a.image], a.prediction.xy_px)


def test_coco_refuses_two_analyses_of_one_image(png_analysis: Analysis, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="two analyses of the image 'film.png'"):
        write_coco([png_analysis, png_analysis], tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


# --------------------------------------------------------------------------- DICOM SR


def _sr_content(path: Path) -> Any:
    import pydicom

    return pydicom.dcmread(path)


def _algorithm(group: Any) -> tuple[str, str]:
    """The (Algorithm Name, Algorithm Version) TEXT items of a measurement group."""
    text = {
        item.ConceptNameCodeSequence[0].CodeValue: item.TextValue
        for item in group[0].ContentSequence  # the group is a list holding its CONTAINER
        if item.ValueType == "TEXT"
    }
    return text["111001"], text["111003"]


def test_dicom_sr_content_read_back(dicom_file: tuple[Path, Any], tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    src, ds = dicom_file
    conf = np.linspace(0.1, 0.9, 19)
    a = _detected(_analyze(src), conf)
    out = cephspine.export(a, tmp_path / "sr.dcm", format="dicom-sr", source=src)

    raw = _sr_content(out)
    assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert raw.Modality == "SR"
    # it belongs in the patient's record: patient and study copied from the source
    assert str(raw.PatientName) == PATIENT_NAME and raw.PatientID == PATIENT_ID
    assert raw.StudyInstanceUID == ds.StudyInstanceUID
    assert raw.VerificationFlag == "UNVERIFIED" and raw.CompletionFlag == "COMPLETE"
    assert raw.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = raw.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID

    sr = hd.sr.srread(out)
    rois = sr.content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in rois] == list(cephspine.CEPH_LANDMARKS)
    for g, (x, y), c in zip(rois, a.prediction.xy_px, conf):
        assert g.roi.graphic_type.value == "POINT"
        np.testing.assert_allclose(g.roi.value[0], [x + 0.5, y + 0.5], rtol=1e-6)  # FL: 32-bit
        ref = g.roi.ContentSequence[0].ReferencedSOPSequence[0]  # SELECTED FROM the source image
        assert ref.ReferencedSOPInstanceUID == ds.SOPInstanceUID and ref.ReferencedSOPClassUID == ds.SOPClassUID
        (m,) = g.get_measurements()
        assert m.unit.value == "1" and m.value == pytest.approx(c, rel=1e-6)
        assert _algorithm(g) == ("cephspine tiny", "0.1")
    (group,) = sr.content.get_image_measurement_groups()
    numbers = {m.name.value: (m.value, m.unit.value) for m in group.get_measurements()}
    assert set(numbers) == set(a.measures.by_measure)
    for name, value in a.measures.items():
        unit = {"FHI": "1", "MW": "mm"}.get(name, "deg")
        assert numbers[name] == (pytest.approx(value), unit)
    for m in group.get_measurements():
        assert m.referenced_images[0].referenced_sop_instance_uid == ds.SOPInstanceUID
    assert _algorithm(group) == ("cephspine", cephspine.__version__)


def test_dicom_sr_of_a_spine_with_supplied_landmarks(dicom_file: tuple[Path, Any], tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    src, _ = dicom_file
    a = _analyze(src, "spine")
    assert a.cobb is not None
    out = cephspine.export(a, tmp_path / "sr.dcm", format="dicom-sr", source=src)
    sr = hd.sr.srread(out)
    rois = sr.content.get_planar_roi_measurement_groups()
    assert len(rois) == 68 and all(g.get_measurements() == [] for g in rois)  # no confidence: no NUM
    (group,) = sr.content.get_image_measurement_groups()
    got = {m.name.value: (m.value, m.unit.value) for m in group.get_measurements()}
    assert got == {f"COBB-{c.name.upper()}": (pytest.approx(c.angle_deg), "deg") for c in a.cobb.curves}


def test_dicom_sr_source_defaults_to_the_image_file(
    dicom_file: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("highdicom")
    src, ds = dicom_file
    a = _analyze(src)
    monkeypatch.chdir(src.parent)  # the analysis names its image "scan.dcm"
    out = cephspine.export(a, tmp_path / "sr.dcm", format="dicom-sr")
    assert _sr_content(out).StudyInstanceUID == ds.StudyInstanceUID


def test_dicom_sr_source_is_the_file_analyze_read(
    dicom_file: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("highdicom")
    src, ds = dicom_file
    a = _analyze(src)  # an absolute path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the image name "scan.dcm" is no file here
    out = cephspine.export(a, "sr.dcm", format="dicom-sr")
    assert _sr_content(out).SOPInstanceUID != ds.SOPInstanceUID
    assert _sr_content(out).StudyInstanceUID == ds.StudyInstanceUID
    # in memory only: neither the JSON nor the tables hold the path
    assert str(tmp_path) not in a.to_json()
    assert str(tmp_path) not in a.to_dataframe().to_csv() + a.landmarks_dataframe().to_csv()
    assert str(tmp_path) not in json.dumps(a.to_row(), default=str)
    back = Analysis.from_json(a.to_json())
    assert back == a and back.source_path is None
    with pytest.raises(InvalidArgumentError, match="scan.dcm.*needs the source DICOM file"):
        cephspine.export(back, "sr2.dcm", format="dicom-sr")


def test_dicom_sr_needs_a_dicom_source(png_analysis: Analysis, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="<array>.*needs the source DICOM file"):
        cephspine.export(_analyze(ramp(H, W)), tmp_path / "sr.dcm", format="dicom-sr")
    with pytest.raises(InvalidArgumentError, match=r"film\.png: not a DICOM file"):
        cephspine.export(png_analysis, tmp_path / "sr.dcm", format="dicom-sr")
    with pytest.raises(InvalidArgumentError, match=r"film\.png: not a DICOM file"):
        cephspine.export(png_analysis, tmp_path / "sr.dcm", format="dicom-sr", source=tmp_path / "film.png")
    with pytest.raises(InputNotFoundError, match="gone.dcm"):
        cephspine.export(png_analysis, tmp_path / "sr.dcm", format="dicom-sr", source=tmp_path / "gone.dcm")
    assert not (tmp_path / "sr.dcm").exists()


def test_dicom_sr_refuses_the_dicom_of_another_image(dicom_file: tuple[Path, Any], tmp_path: Path) -> None:
    src, _ = dicom_file
    other = write(
        make_dataset(ramp(H, W), StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid()),
        tmp_path / "other.dcm",
    )
    with pytest.raises(InvalidArgumentError, match="other.dcm: not the image this analysis of scan.dcm"):
        cephspine.export(_analyze(src), tmp_path / "sr.dcm", format="dicom-sr", source=other)


def test_dicom_sr_refuses_a_dicom_without_study_uids(tmp_path: Path) -> None:
    src = write(make_dataset(ramp(H, W)), tmp_path / "bare.dcm")
    with pytest.raises(InvalidArgumentError, match="bare.dcm: .*no StudyInstanceUID, SeriesInstanceUID"):
        cephspine.export(_analyze(src), tmp_path / "sr.dcm", format="dicom-sr", source=src)


def test_dicom_sr_without_highdicom_names_the_extra(
    dicom_file: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _ = dicom_file
    a = _analyze(src)
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"cephspine\[dicom-sr\]"):
        cephspine.export(a, tmp_path / "sr.dcm", format="dicom-sr", source=src)


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cephspine", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _same_table(printed: str, exported: Path) -> None:
    """``predict -f csv``'s output and the ``"csv"`` export hold the same table."""
    import io

    import pandas as pd

    got, want = pd.read_csv(io.StringIO(printed)), pd.read_csv(exported)
    assert list(got.columns) == list(want.columns)
    numbers = ["x_px", "y_px", "x_mm", "y_mm", "confidence", "spacing_row_mm", "spacing_col_mm"]
    pd.testing.assert_frame_equal(got.drop(columns=numbers), want.drop(columns=numbers))
    np.testing.assert_allclose(got[numbers].to_numpy(), want[numbers].to_numpy(), rtol=0, atol=1e-3)


def test_cli_predict_csv_is_the_csv_export(png_analysis: Analysis, tiny_model_dir: Path, tmp_path: Path) -> None:
    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cephspine.analyze(tmp_path / "film.png", kind="ceph", detector=det, spacing=0.1)
    exported = cephspine.export(a, tmp_path / "export.csv", format="csv")
    r = _cli("predict", "film.png", "-m", str(tiny_model_dir), "--spacing", "0.1", "-f", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _same_table(r.stdout, exported)
    assert {"pseudonym", "spacing_row_mm"} <= set(r.stdout.splitlines()[0].split(","))


def test_cli_predict_csv_is_the_csv_export_for_the_spine(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "ap.png"
    Image.fromarray(np.random.default_rng(0).uniform(0, 255, (400, 160)).astype(np.uint8)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cephspine.analyze(path, kind="spine", spacing=0.5)
    exported = cephspine.export(a, tmp_path / "export.csv", format="csv")
    r = _cli("predict", "ap.png", "-m", "spine", "--spacing", "0.5", "-f", "csv", cwd=tmp_path)
    # noise is no spine film: status 1 after the output (a check, not a result), the table all the same
    assert r.returncode == (1 if a.prediction.wrong_anatomy else 0), r.stderr
    _same_table(r.stdout, exported)
    assert r.stdout.splitlines()[1].startswith("ap.png,") and ",T1,TL,T1_TL," in r.stdout.splitlines()[1]


def test_cli_analyze_exports(dicom_file: tuple[Path, Any], tmp_path: Path) -> None:
    import pandas as pd

    src, ds = dicom_file
    lm = tmp_path / "lm.csv"
    pd.DataFrame({"landmark": cephspine.CEPH_LANDMARKS, "x_px": _xy()[:, 0], "y_px": _xy()[:, 1]}).to_csv(
        lm, index=False
    )
    r = _cli(
        "analyze", str(src), "--landmarks", str(lm), "-f", "json", "--export", "coco", "-o", "out.json", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout stays the JSON of -f json
    assert "coco export written to out.json" in r.stderr
    np.testing.assert_allclose(cephspine.read_annotations(tmp_path / "out.json")["scan.dcm"], _xy(), atol=1e-9)
    if pytest.importorskip("highdicom"):
        r = _cli("analyze", str(src), "--landmarks", str(lm), "--export", "dicom-sr", "-o", "sr.dcm", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert _sr_content(tmp_path / "sr.dcm").StudyInstanceUID == ds.StudyInstanceUID


def test_cli_analyze_export_errors(png_analysis: Analysis, tmp_path: Path) -> None:
    import pandas as pd

    lm = tmp_path / "lm.csv"
    pd.DataFrame({"landmark": cephspine.CEPH_LANDMARKS, "x_px": _xy()[:, 0], "y_px": _xy()[:, 1]}).to_csv(lm)
    r = _cli("analyze", "film.png", "--landmarks", "lm.csv", "--export", "coco", cwd=tmp_path)
    assert r.returncode == 2 and "--out" in r.stderr
    r = _cli("analyze", "film.png", "--landmarks", "lm.csv", "-o", "x.json", cwd=tmp_path)
    assert r.returncode == 2 and "--export" in r.stderr
    r = _cli("analyze", "film.png", "--landmarks", "lm.csv", "--export", "dicom-sr", "-o", "sr.dcm", cwd=tmp_path)
    assert r.returncode == 1
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: film.png: not a DICOM file") and line.count("film.png") == 1
    assert not (tmp_path / "sr.dcm").exists()


def test_dicom_sr_names_measures_as_the_reports_do_and_refuses_a_non_result(
    dicom_file: tuple[Path, Any], tmp_path: Path
) -> None:
    hd = pytest.importorskip("highdicom")
    src, _ = dicom_file
    a = _analyze(src)
    sr = hd.sr.srread(cephspine.export(a, tmp_path / "sr.dcm", format="dicom-sr", source=src))
    (group,) = sr.content.get_image_measurement_groups()
    meanings = {m.name.value: m.name.meaning for m in group.get_measurements()}
    assert "not Tweed's FMA" in meanings["FMA"] and meanings["ANB"] == "ANB"
    s = _analyze(src, "spine")
    sr = hd.sr.srread(cephspine.export(s, tmp_path / "spine.dcm", format="dicom-sr", source=src))
    (group,) = sr.content.get_image_measurement_groups()
    cobb = [m.name.meaning for m in group.get_measurements()]
    assert all("dataset column" in m and "thoracic" not in m for m in cobb), cobb
    assert any(m.startswith("Cobb angle, curve 1 ") for m in cobb)
    flagged = dataclasses.replace(a, prediction=dataclasses.replace(a.prediction, meta={"wrong_anatomy": True}))
    assert flagged.wrong_anatomy and flagged != a
    with pytest.raises(InvalidArgumentError, match="scan.dcm: not a result"):
        cephspine.export(flagged, tmp_path / "no.dcm", format="dicom-sr", source=src)
    assert not (tmp_path / "no.dcm").exists()
