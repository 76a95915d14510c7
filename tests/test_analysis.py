"""`cephspine.analyze` and the `Analysis` result: measures, rows, JSON round trip, identifiers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import cephspine
from cephspine.analysis import IDENTIFIER_FIELDS, Analysis, _clinical, analyze, pseudonym, read_identifiers
from cephspine.anatomy import CEPH_LANDMARKS, SPINE_LANDMARKS
from cephspine.errors import AnatomyWarning, SpacingWarning
from cephspine.prediction import Prediction
from cephspine.radiograph import Radiograph, Spacing
from tests.conftest import build_model_dir, write_dicom
from tests.test_spine_detector import SPINE_TINY

TRUTH = Path(__file__).parent / "data" / "ceph_example_truth.csv"


SPACING = Spacing(0.1, 0.1)


def _truth_prediction(spacing: Spacing | None = SPACING) -> Prediction:
    xy = np.loadtxt(TRUTH, delimiter=",", skiprows=2)
    conf = np.full(19, 0.9)
    conf[3] = 0.1
    return Prediction(CEPH_LANDMARKS, xy, conf, (2400, 1935), spacing, "ceph", "9.9.9", "ceph_example.jpg")


def _analysis(pred: Prediction, kind: str = "ceph") -> Analysis:
    m, c, cobb, msgs = _clinical(kind, pred)
    return Analysis(kind, "ceph_example.jpg", "abc", pred, m, c, cobb, "user", tuple(msgs), "2026-01-01", "0.1.0")


def _ladder() -> np.ndarray:
    """17 tilted vertebrae, top to bottom (an S-shaped spine)."""
    out = []
    for i in range(17):
        cx, cy, t = 300 + 40 * math.sin(i / 3), 100 + 60 * i, math.radians(12 * math.sin(i / 3))
        for dx, dy in ((-30, -20), (30, -20), (-30, 20), (30, 20)):
            out.append((cx + dx * math.cos(t) - dy * math.sin(t), cy + dx * math.sin(t) + dy * math.cos(t)))
    return np.array(out)


def test_ceph_row_has_every_measure_type_and_unit_suffixed_column() -> None:
    row = _analysis(_truth_prediction()).to_row()
    for col in ("anb_deg", "snb_deg", "sna_deg", "odi_deg", "apdi_deg", "fhi_ratio", "fma_deg", "mw_mm"):
        assert np.isfinite(row[col]), col
        assert row[col.rsplit("_", 1)[0] + "_type"] in (1, 2, 3, 4)
    assert row["status"] == "ok" and row["model_version"] == "9.9.9"
    assert row["spacing_row_mm"] == 0.1 and row["spacing_source"] == "user"
    assert row["n_low_confidence"] == 1 and row["low_confidence_landmarks"] == CEPH_LANDMARKS[3]


def test_without_spacing_mw_is_missing_and_said_so() -> None:
    a = _analysis(_truth_prediction(spacing=None))
    row = a.to_row()
    assert math.isnan(row["mw_mm"]) and row["mw_class"] == ""
    assert np.isfinite(row["anb_deg"])
    assert any("MW not computed" in w for w in a.warnings)


def test_json_round_trip_is_exact() -> None:
    a = _analysis(_truth_prediction())
    b = Analysis.from_json(a.to_json(indent=1))
    assert b.to_dict() == a.to_dict()
    assert b.measures is not None and a.measures is not None
    assert dict(b.measures) == dict(a.measures)
    np.testing.assert_array_equal(b.prediction.xy_px, a.prediction.xy_px)
    with pytest.raises(ValueError, match="not a cephspine analysis"):
        Analysis.from_dict({"kind": "ceph"})


def test_measures_table_has_normal_ranges() -> None:
    df = _analysis(_truth_prediction()).to_dataframe()
    assert list(df["measure"]) == ["ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW"]
    assert {"image", "value", "unit", "type", "label", "normal_range"} <= set(df.columns)


def test_every_table_names_the_image_and_its_pseudonym() -> None:
    ceph = _analysis(_truth_prediction())
    spine = _analysis(
        Prediction(SPINE_LANDMARKS, _ladder(), np.full(68, 0.8), (1200, 600), None, "spine", "1", "s.jpg"), "spine"
    )
    coincident = Prediction(CEPH_LANDMARKS, np.zeros((19, 2)), np.full(19, 0.9), (90, 80), None, "ceph", "1")
    no_measures = _analysis(coincident)
    for a in (ceph, spine, no_measures):
        for df in (a.to_dataframe(), a.landmarks_dataframe()):
            assert list(df.columns[:2]) == ["image", "pseudonym"]
            assert (df["image"] == "ceph_example.jpg").all() and (df["pseudonym"] == "abc").all()
        assert list(a.to_row())[:2] == ["image", "pseudonym"]
    assert len(ceph.to_dataframe()) == 8 and len(spine.to_dataframe()) == 3 and no_measures.to_dataframe().empty


def test_spine_row_has_cobb_angles_end_vertebrae_and_severity() -> None:
    pred = Prediction(SPINE_LANDMARKS, _ladder(), np.full(68, 0.8), (1200, 600), None, "spine", "1", "s.jpg")
    a = _analysis(pred, "spine")
    row = a.to_row()
    assert a.cobb is not None
    assert row["pt_deg"] == pytest.approx(a.cobb.pt) and row["pt_deg"] > 10
    assert row["pt_upper"] in cephspine.VERTEBRAE and row["severity"] in ("mild", "moderate", "severe")
    assert row["max_cobb_deg"] == pytest.approx(max(a.cobb.angles_deg))
    assert list(a.to_dataframe()["curve"]) == ["pt", "mt", "tl"]
    assert len(a.landmarks_dataframe()) == 68 and "vertebra" in a.landmarks_dataframe()
    assert Analysis.from_json(a.to_json()).to_dict() == a.to_dict()


def test_pseudonym_is_stable_and_content_based() -> None:
    px = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    a = pseudonym(Radiograph(px, source=Path("a.png")))
    assert a == pseudonym(Radiograph(px.copy(), source=Path("renamed.png")))
    assert a != pseudonym(Radiograph(px[::-1].copy()))
    assert pseudonym(Radiograph(px, meta={"SOPInstanceUID": "1.2.3"})) != a
    assert len(a) == 16


def test_analyze_runs_a_detector_end_to_end(tiny_model_dir: Path) -> None:
    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    img = np.random.default_rng(1).random((300, 240)).astype(np.float32)
    with pytest.warns(SpacingWarning):
        a = analyze(img, "ceph", detector=det)
    assert a.image == "<array>" and a.prediction.xy_px.shape == (19, 2)
    assert a.created and a.software_version == cephspine.__version__
    json.loads(a.to_json())  # serialisable
    with pytest.raises(ValueError, match="kind"):
        analyze(img, "knee", detector=det)
    with pytest.raises(ValueError, match="spine detector"):
        analyze(img, "spine", detector=det)


def test_analyze_spine_with_a_spacing_free_model(tmp_path: Path) -> None:
    d = build_model_dir(
        tmp_path / "sp", SPINE_TINY, anatomy="spine", landmarks=list(SPINE_LANDMARKS), detect_facing=False
    )
    det = cephspine.Detector.from_pretrained(d, device="cpu")
    img = np.random.default_rng(2).random((400, 160)).astype(np.float32)
    with pytest.warns(AnatomyWarning):  # random weights: vertebrae out of order
        a = analyze(img, "spine", detector=det)
    assert a.kind == "spine" and len(a.prediction.names) == 68
    assert set(a.to_row()) >= {"pt_deg", "mt_deg", "tl_deg", "severity"}


def test_identifiers_only_on_request(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_dicom(
        tmp_path / "scan.dcm", PatientName="Doe^Jane", PatientID="PID-4711", InstitutionName="St Elsewhere"
    )

    ids = {"PatientName": "Doe^Jane", "PatientID": "PID-4711", "InstitutionName": "St Elsewhere"}
    assert read_identifiers(path) == ids
    assert read_identifiers(TRUTH) == {}
    assert set(read_identifiers(path)) <= set(IDENTIFIER_FIELDS)
    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    plain = analyze(path, "ceph", detector=det)
    text = plain.to_json() + json.dumps(plain.to_row(), default=str) + plain.landmarks_dataframe().to_csv()
    assert "Doe" not in text and "PID-4711" not in text and "Elsewhere" not in text
    assert plain.pseudonym == pseudonym(cephspine.load_image(path))
    with_ids = analyze(path, "ceph", detector=det, include_identifiers=True)
    assert with_ids.to_row()["dicom_PatientID"] == "PID-4711"
    assert Analysis.from_json(with_ids.to_json()).identifiers["PatientName"] == "Doe^Jane"


def test_json_round_trip_gives_an_equal_analysis() -> None:
    import dataclasses

    for a in (
        _analysis(_truth_prediction()),
        _analysis(_truth_prediction(spacing=None)),
        _analysis(Prediction(SPINE_LANDMARKS, _ladder(), np.full(68, 0.8), (1200, 600), None, "spine", "1"), "spine"),
    ):
        b = Analysis.from_json(a.to_json())
        assert b == a
        assert b is not a and b.prediction == a.prediction
    a = _analysis(_truth_prediction())
    assert a != dataclasses.replace(a, warnings=("another warning",))
    assert a != dataclasses.replace(a, image="other.jpg")
    moved = Prediction(CEPH_LANDMARKS, a.prediction.xy_px + 0.5, a.prediction.confidence, (2400, 1935), SPACING, "ceph",
                       "9.9.9", "ceph_example.jpg")  # fmt: skip
    assert a.prediction != moved and a != _analysis(moved)
    assert a != a.to_json() and a.prediction != a
    with pytest.raises(TypeError):
        hash(a)


def test_analysis_equality_compares_arrays_not_identity() -> None:
    p = _truth_prediction()
    twin = Prediction(p.names, p.xy_px.copy(), p.confidence.copy(), p.image_shape, p.spacing, p.model,
                      p.model_version, p.source, meta={"timings": {"refine_s": 1.0}})  # fmt: skip
    assert twin == p  # meta (timings, ...) is not part of the value
    assert _analysis(twin) == _analysis(p)


def test_not_computed_gives_the_reason() -> None:
    assert _analysis(_truth_prediction()).not_computed() == {}
    assert _analysis(_truth_prediction(spacing=None)).not_computed() == {"MW": "needs pixel spacing"}


def test_warnings_point_at_the_callers_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    import warnings

    from tests.conftest import dicom_dataset

    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    img = np.random.default_rng(1).random((300, 240)).astype(np.float32)
    bad_spacing = tmp_path / "zero spacing.dcm"
    dicom_dataset(PixelSpacing=[0, 0]).save_as(bad_spacing, enforce_file_format=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyze(img, "ceph", detector=det)
        analyze(bad_spacing, "ceph", detector=det)
    ours = [w for w in caught if issubclass(w.category, cephspine.CephspineWarning)]
    messages = [str(w.message) for w in ours]
    # from analyze itself, from the detector (two levels down) and from the DICOM reader
    assert any("MW not computed" in m for m in messages)
    assert any("pixel spacing unknown" in m for m in messages)
    assert any("ignoring invalid PixelSpacing" in m for m in messages)
    for w in ours:
        assert Path(w.filename).resolve() == Path(__file__).resolve(), (w.filename, w.lineno, str(w.message))
