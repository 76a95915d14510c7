"""PDF reports: one image (`write_report`, `report`) and a cohort (`write_cohort_report`)."""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cephspine
from cephspine.analysis import Analysis, _clinical
from cephspine.anatomy import CEPH_LANDMARKS, SPINE_LANDMARKS
from cephspine.errors import ImageReadError, InvalidArgumentError, OutputError
from cephspine.geometry import classify_ceph
from cephspine.geometry.ceph import CephMeasures
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS
from cephspine.prediction import Prediction
from cephspine.radiograph import Radiograph, Spacing
from cephspine.reports import RESEARCH_NOTICE, _image, _pdf, report, write_cohort_report, write_report
from cephspine.reports import cohort as cohort_module
from tests.conftest import write_dicom

REPO = Path(__file__).resolve().parents[1]
TRUTH = Path(__file__).parent / "data" / "ceph_example_truth.csv"
CUSTOM_WARNING = "ceph_example.jpg: registration fell back to the unregistered path"


def pdf_text(path: Path) -> str:
    """All text of a PDF, whitespace collapsed to single spaces."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    return " ".join(" ".join(page.extract_text() or "" for page in reader.pages).split())


def expected_value(value: float, unit: str) -> str:
    return {"deg": f"{value:.2f}°", "mm": f"{value:.2f} mm", "ratio": f"{value:.3f}"}[unit]


def ceph_analysis(xy: np.ndarray | None = None, *, image: str = "ceph_example.jpg") -> Analysis:
    xy = np.loadtxt(TRUTH, delimiter=",", skiprows=2) if xy is None else xy
    conf = np.full(19, 0.9)
    conf[3] = 0.1  # porion: low confidence
    conf[5] = 0.5
    pred = Prediction(CEPH_LANDMARKS, xy, conf, (2400, 1935), Spacing(0.1, 0.1), "ceph", "9.9.9", image)
    m, c, cobb, msgs = _clinical("ceph", pred)
    return Analysis(
        "ceph", image, "5eed5eed5eed5eed", pred, m, c, cobb, "user",
        (*msgs, CUSTOM_WARNING), "2026-01-02T03:04:05+00:00", "0.1.0",
    )  # fmt: skip


def ladder(phase: float = 0.0, amplitude: float = 12.0) -> np.ndarray:
    """68 corners: 17 tilted quadrilaterals stacked top to bottom (an S-shaped spine)."""
    out = []
    for i in range(17):
        s = math.sin(i / 3 + phase)
        cx, cy, t = 300 + 40 * s, 100 + 60 * i, math.radians(amplitude * s)
        for dx, dy in ((-30, -20), (30, -20), (-30, 20), (30, 20)):
            out.append((cx + dx * math.cos(t) - dy * math.sin(t), cy + dx * math.sin(t) + dy * math.cos(t)))
    return np.array(out)


SPINE_SHAPE = (1200, 600)


def spine_analysis(phase: float = 0.0, amplitude: float = 12.0, image: str = "spine.png") -> Analysis:
    conf = np.full(68, 0.95)
    conf[10] = 0.2  # T3_BL
    pred = Prediction(SPINE_LANDMARKS, ladder(phase, amplitude), conf, SPINE_SHAPE, None, "spine", "4.5.6", image)
    m, c, cobb, msgs = _clinical("spine", pred)
    assert cobb is not None
    return Analysis("spine", image, "0123456789abcdef", pred, m, c, cobb, None, tuple(msgs), "2026-02-03", "0.1.0")


@pytest.fixture(scope="module")
def ceph_image() -> Radiograph:
    return cephspine.load_image(cephspine.example_path(), spacing=0.1)


@pytest.fixture(scope="module")
def spine_image() -> np.ndarray:
    return np.random.default_rng(0).normal(100.0, 20.0, SPINE_SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def ceph_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Analysis, str]:
    a = ceph_analysis()
    out = write_report(a, tmp_path_factory.mktemp("ceph") / "report.pdf", image=cephspine.example_path())
    assert out.read_bytes().startswith(b"%PDF")
    return a, pdf_text(out)


# --------------------------------------------------------------------------- one image


def test_ceph_report_has_measures_values_ranges_and_types(ceph_report: tuple[Analysis, str]) -> None:
    a, text = ceph_report
    assert a.classification is not None and len(a.classification) == 8
    for m in CEPH_MEASURES:
        e = a.classification[m]
        assert m in text
        assert expected_value(e.value, e.unit) in text, m
        assert CEPH_NORMS[m].normal_range in text and e.label in text


def test_ceph_report_flags_values_outside_the_normal_range(ceph_report: tuple[Analysis, str]) -> None:
    a, text = ceph_report
    assert a.classification is not None
    values = [(e.value, e.normal_low, e.normal_high) for e in a.classification.entries.values()]
    assert text.count("above normal") == sum(v > hi for v, _, hi in values) > 0
    assert text.count("below normal") == sum(v < lo for v, lo, _ in values) > 0


def test_ceph_report_metadata_confidence_warnings_and_notice(ceph_report: tuple[Analysis, str]) -> None:
    _, text = ceph_report
    assert "ceph_example.jpg" in text and "5eed5eed5eed5eed" in text
    assert "1935 × 2400 px" in text
    assert "0.1 mm × 0.1 mm" in text and "from the user" in text
    assert "ceph version 9.9.9" in text and "0.1.0" in text
    assert "2026-01-02T03:04:05+00:00" in text
    assert "porion (Po): confidence 0.10" in text
    assert "supramentale" not in text  # 0.5 is not low confidence
    assert CUSTOM_WARNING in text
    assert RESEARCH_NOTICE in text
    assert "S–N" in text and "Frankfort" in text and "mandibular plane" in text
    assert "DICOM identifiers" not in text and "PatientName" not in text


def test_normal_values_are_not_flagged(tmp_path: Path, ceph_image: Radiograph) -> None:
    values = {m: (CEPH_NORMS[m].normal_low + CEPH_NORMS[m].normal_high) / 2 for m in CEPH_MEASURES}
    values["ANB"] = 7.25  # Class II
    m = CephMeasures(values, spacing=Spacing(0.1, 0.1))
    a = dataclasses.replace(ceph_analysis(), measures=m, classification=classify_ceph(m))
    text = pdf_text(write_report(a, tmp_path / "normal.pdf", image=ceph_image))
    assert text.count("above normal") == 1 and "below normal" not in text
    assert "7.25°" in text and "Class II skeletal" in text and "0.700" in text  # FHI mid-range


def test_identifiers_appear_only_when_present(tmp_path: Path, ceph_image: Radiograph) -> None:
    ids = {"PatientName": "DOE^JANE", "PatientID": "PID-0042"}
    a = dataclasses.replace(ceph_analysis(), identifiers=ids)
    text = pdf_text(write_report(a, tmp_path / "ids.pdf", image=ceph_image))
    assert "DICOM identifiers" in text and "DOE^JANE" in text and "PID-0042" in text


def test_without_spacing_mm_is_said_unavailable(tmp_path: Path, ceph_image: Radiograph) -> None:
    a = ceph_analysis()
    pred = dataclasses.replace(a.prediction, spacing=None)
    m, c, _, msgs = _clinical("ceph", pred)
    a = dataclasses.replace(a, prediction=pred, measures=m, classification=c, spacing_source=None, warnings=tuple(msgs))
    text = pdf_text(write_report(a, tmp_path / "nospacing.pdf", image=ceph_image.pixels))
    assert "unknown — measures in mm unavailable" in text
    assert "not computed" in text and "needs the pixel spacing" in text  # MW
    assert msgs[0] in text


def test_spine_report_has_curves_end_vertebrae_and_severity(tmp_path: Path, spine_image: np.ndarray) -> None:
    a = spine_analysis()
    assert a.cobb is not None
    text = pdf_text(write_report(a, tmp_path / "spine.pdf", image=Radiograph(spine_image)))
    for c in a.cobb.curves:
        label = f"{c.number}: {c.angle_deg:.1f}° {c.upper_name}–{c.lower_name}"
        assert label in text  # on the image
        assert f"{c.angle_deg:.1f}° {c.upper_name}–{c.lower_name} ({c.region}) {c.severity}" in text  # in the table
    assert "unknown — measures in mm unavailable" in text
    assert "spine version 4.5.6" in text and "600 × 1200 px" in text
    assert "T3: BL 0.20" in text  # low-confidence corners, by vertebra
    assert RESEARCH_NOTICE in text


def test_failure_while_drawing_leaves_no_file_and_keeps_the_old_report(
    tmp_path: Path, ceph_image: Radiograph, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = ceph_analysis()
    out = tmp_path / "report.pdf"
    write_report(a, out, image=ceph_image)
    before = out.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(_image, "draw_landmarks", boom)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(a, out, image=ceph_image)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["report.pdf"]
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(a, tmp_path / "new.pdf", image=ceph_image)
    assert os.listdir(tmp_path) == ["report.pdf"]


def test_success_replaces_an_existing_file(tmp_path: Path, spine_image: np.ndarray) -> None:
    out = tmp_path / "r.pdf"
    out.write_bytes(b"an old report")
    assert write_report(spine_analysis(), str(out), image=spine_image) == out
    assert out.read_bytes().startswith(b"%PDF") and os.listdir(tmp_path) == ["r.pdf"]


def test_unreadable_or_mismatched_image(tmp_path: Path, spine_image: np.ndarray) -> None:
    a = spine_analysis()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageReadError, match="broken.png"):
        write_report(a, tmp_path / "r.pdf", image=bad)
    with pytest.raises(ImageReadError, match="600 × 1200 px"):
        write_report(a, tmp_path / "r.pdf", image=spine_image[:, :500])
    assert sorted(os.listdir(tmp_path)) == ["broken.png"]


def test_unwritable_output_names_the_file_and_the_cause_once(tmp_path: Path, spine_image: np.ndarray) -> None:
    missing = tmp_path / "no such folder" / "r.pdf"
    with pytest.raises(OutputError) as info:
        write_report(spine_analysis(), missing, image=spine_image)
    assert str(info.value) == f"cannot write the report to {missing}: folder {missing.parent} does not exist"
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOENT
    with pytest.raises(OutputError, match="it is a folder$") as info:
        write_report(spine_analysis(), tmp_path, image=spine_image)
    assert str(info.value).count(str(tmp_path)) == 1
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is not a folder$"):
        write_report(spine_analysis(), a_file / "r.pdf", image=spine_image)
    table = pd.DataFrame([spine_analysis().to_row()])
    with pytest.raises(OutputError, match="does not exist$"):
        write_cohort_report(table, missing, kind="spine")
    assert os.listdir(tmp_path) == ["a_file"]


def test_cli_report_into_a_missing_folder_says_so_once(tmp_path: Path) -> None:
    example = str(cephspine.example_path("ceph"))
    for out, cause in (("nope/r.pdf", "folder nope does not exist"), (".", "it is a folder")):
        result = subprocess.run(
            [sys.executable, "-m", "cephspine", "report", example, "-o", out, "--spacing", "0.1"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1
        assert result.stderr == f"error: cannot write the report to {out}: {cause}\n"
    assert os.listdir(tmp_path) == []


def test_a_failing_write_is_an_output_error(
    tmp_path: Path, spine_image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "r.pdf"))

    monkeypatch.setattr(_pdf.os, "replace", refuse)  # the move into place fails
    with pytest.raises(OutputError) as info:
        write_report(spine_analysis(), tmp_path / "r.pdf", image=spine_image)
    assert str(info.value) == f"cannot write the report to {tmp_path / 'r.pdf'}: Permission denied"
    assert info.value.errno == errno.EACCES
    assert os.listdir(tmp_path) == []  # the temporary file is gone


def test_an_unknown_kind_is_an_invalid_argument(tmp_path: Path, spine_image: np.ndarray) -> None:
    a = dataclasses.replace(spine_analysis(), kind="knee")
    with pytest.raises(InvalidArgumentError, match="kind must be one of ceph, spine; got 'knee'"):
        write_report(a, tmp_path / "r.pdf", image=spine_image)
    with pytest.raises(InvalidArgumentError, match="got 'knee'"):
        report(spine_image, tmp_path / "r.pdf", kind="knee")
    assert os.listdir(tmp_path) == []


def test_text_outside_the_font_encoding_is_replaced() -> None:
    assert _pdf.pdf_safe("T1 → L5 ≥ 3σ\tok") == "T1 -> L5 >= 3sigma ok"
    assert _pdf.pdf_safe("Größe 5–7° ±1") == "Größe 5–7° ±1"
    assert _pdf.pdf_safe("生") == "?"


@pytest.mark.filterwarnings("ignore::cephspine.LowConfidenceWarning")  # random weights
@pytest.mark.filterwarnings("ignore::cephspine.WrongAnatomyWarning")  # random weights: not a face
def test_report_analyses_then_writes(tmp_path: Path, tiny_model_dir: Path) -> None:
    scan = write_dicom(tmp_path / "scan.dcm", PatientName="Doe^Jane", PatientID="PID-4711")
    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")

    plain = report(scan, tmp_path / "plain.pdf", detector=det)
    assert plain.image == "scan.dcm" and plain.identifiers == {}
    text = pdf_text(tmp_path / "plain.pdf")
    assert "scan.dcm" in text and "tiny version 0.0.1" in text and "from DICOM Pixel Spacing" in text
    assert "Doe" not in text and "PID-4711" not in text

    with_ids = report(scan, tmp_path / "ids.pdf", detector=det, include_identifiers=True, spacing=0.2)
    text = pdf_text(tmp_path / "ids.pdf")
    assert with_ids.identifiers["PatientID"] == "PID-4711"
    assert "PID-4711" in text and "Doe^Jane" in text and "0.2 mm × 0.2 mm" in text

    with pytest.raises(OutputError, match="does not exist"):  # checked before the network runs
        report(scan, tmp_path / "missing" / "r.pdf", detector=det)


def test_write_report_is_in_the_flat_api() -> None:
    assert cephspine.write_report is write_report


# --------------------------------------------------------------------------- cohorts


def error_row(kind: str) -> dict[str, object]:
    return {
        "image": "broken.jpg",
        "pseudonym": "",
        "kind": kind,
        "status": "error",
        "error": "broken.jpg: not a recognised image",
    }


def test_ceph_cohort_report(tmp_path: Path) -> None:
    truth = np.loadtxt(TRUTH, delimiter=",", skiprows=2)
    rng = np.random.default_rng(7)
    rows = [ceph_analysis(truth + rng.normal(0, 25, truth.shape), image=f"img{i}.jpg").to_row() for i in range(6)]
    table = pd.DataFrame([*rows, error_row("ceph")])
    text = pdf_text(write_cohort_report(table, tmp_path / "cohort.pdf", kind="ceph"))
    assert re.search(r"Images 7 Analysed \(ok\) 6 Errors 1", text)
    assert "Errors (1)" in text and "broken.jpg broken.jpg: not a recognised image" in text
    assert "ceph version 9.9.9" in text and RESEARCH_NOTICE in text
    types = text[text.index("Anatomical types") : text.index("Each cell:")]
    starts = [types.index(f" {m} ") for m in CEPH_MEASURES]
    assert starts == sorted(starts)
    for i, m in enumerate(CEPH_MEASURES):
        assert re.search(rf"{m} \((°|mm|ratio)\), n = 6", text), m  # histogram title
        row = types[starts[i] : starts[i + 1] if i + 1 < len(starts) else None]
        labels = table[f"{m.lower()}_class"].loc[table["status"] == "ok"]
        for label, n in labels.value_counts().items():
            assert f"{label}: {n} ({100 * n / 6:.0f} %)" in row, (m, label)
        for label in set(CEPH_NORMS[m].labels.values()) - set(labels):
            assert f"{label}: 0 (0 %)" in row, (m, label)


def test_spine_cohort_report(tmp_path: Path) -> None:
    analyses = [spine_analysis(phase, amp, f"s{i}.png") for i, (phase, amp) in enumerate([(0, 4), (1, 12), (2, 30)])]
    table = pd.DataFrame([a.to_row() for a in analyses] + [error_row("spine")])
    text = pdf_text(write_cohort_report(table, tmp_path / "spine.pdf", kind="spine"))
    assert "Errors (1)" in text and "broken.jpg: not a recognised image" in text
    assert "Largest Cobb angle per image (°), n = 3" in text
    severities = table["severity"].iloc[:3].value_counts()
    assert len(severities) > 1
    for band, text_range in (("normal", "< 10°"), ("mild", "10–25°"), ("moderate", "25–40°"), ("severe", "> 40°")):
        assert f"{band} {text_range} {int(severities.get(band, 0))} " in text
    mx = table["max_cobb_deg"].iloc[:3]
    assert f"max Cobb 3 {mx.mean():.1f}°" in text


def test_cohort_report_refuses_bad_tables_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = pd.DataFrame([spine_analysis().to_row(), error_row("spine")])
    with pytest.raises(InvalidArgumentError, match="spine analyses"):
        write_cohort_report(table, tmp_path / "c.pdf", kind="ceph")
    with pytest.raises(InvalidArgumentError, match="'image' column"):
        write_cohort_report(table.drop(columns=["image"]), tmp_path / "c.pdf", kind="spine")
    with pytest.raises(InvalidArgumentError, match="kind"):
        write_cohort_report(table, tmp_path / "c.pdf", kind="knee")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("chart failed")

    monkeypatch.setattr(cohort_module, "histogram", boom)
    with pytest.raises(RuntimeError, match="chart failed"):
        write_cohort_report(table, tmp_path / "c.pdf", kind="spine")
    assert os.listdir(tmp_path) == []


def test_cohort_of_errors_only(tmp_path: Path) -> None:
    table = pd.DataFrame([error_row("ceph"), {**error_row("ceph"), "image": "b.jpg", "error": "b.jpg: empty"}])
    text = pdf_text(write_cohort_report(table, tmp_path / "c.pdf", kind="ceph"))
    assert "No successful analyses" in text and "Errors (2)" in text and "b.jpg: empty" in text


# --------------------------------------------------------------------------- example


def test_example_script_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "example.pdf"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "report.py"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "ANB" in result.stdout and "report written to" in result.stdout
    assert "pseudonym" not in result.stdout  # the measures table on screen: one image, not named per row
    text = pdf_text(out)
    assert "ANB" in text and "ceph_example.jpg" in text and RESEARCH_NOTICE in text
    # The bundled example as the shipped model analyses it: one page, no label over another,
    # then the page of the named analyses.
    from pypdf import PdfReader

    from tests.test_report_layout import LABEL_NAMES, assert_disjoint, label_boxes

    assert len(PdfReader(out).pages) == 2
    assert "Cephalometric analyses" in PdfReader(out).pages[1].extract_text()
    boxes = label_boxes(out)
    assert sorted(t for t, _ in boxes) == sorted(LABEL_NAMES)
    assert_disjoint(boxes)


def test_ceph_report_says_where_the_isbi_rules_differ_from_clinical_usage(ceph_report: tuple[Analysis, str]) -> None:
    from cephspine.geometry.norms import clinical_note

    _, text = ceph_report
    assert clinical_note("FMA", 30.0) and clinical_note("FMA", 30.0) in text  # next to the ISBI FMA
    assert clinical_note("FHI", 0.7) in text
    assert "Tweed's FMA: Frankfort–mandibular plane (not ISBI's)" in text  # the analyses page names the other FMA apart
    assert "Steiner's clinical norm" in clinical_note("ANB", 2.92) and not clinical_note("ANB", 4.0)
    assert not clinical_note("ANB", -0.5)  # Class III by either reading
    assert "ahead of the lower one" in clinical_note("MW", 1.7) and not clinical_note("MW", -1.0)
    assert not clinical_note("MW", 0.0) and not clinical_note("SNA", 70.0)


def test_spine_report_names_curves_by_number_end_vertebrae_and_region(tmp_path: Path, spine_image: np.ndarray) -> None:
    from cephspine.geometry.cobb import curve_region

    assert [curve_region(*e) for e in ((0, 4), (9, 13), (12, 16), (11, 12))] == [
        "thoracic", "thoracic to lumbar", "lumbar", "thoracic to lumbar",
    ]  # fmt: skip
    a = spine_analysis()
    text = pdf_text(write_report(a, tmp_path / "spine.pdf", image=Radiograph(spine_image)))
    assert "not anatomical regions" in text and "docs/concepts/cobb.md" in text
    assert a.cobb is not None
    for c in a.cobb.curves:
        assert f"Curve {c.number} {c.upper_name}–{c.lower_name} ({c.region}) (dataset column {c.name.upper()})" in text
    assert "PT 1" not in text and "TL 1" not in text
