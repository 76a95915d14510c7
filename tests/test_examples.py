"""The README's main job: ``examples/quickstart.py`` writes a PDF report and tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from cephspine.reports import RESEARCH_NOTICE

REPO = Path(__file__).resolve().parents[1]
MEASURES = ("ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW")


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


def test_quickstart_writes_report_and_tables(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py"), "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["ceph_landmarks.csv", "ceph_measures.csv", "ceph_report.pdf"]

    text = pdf_text(out / "ceph_report.pdf")
    assert all(m in text for m in MEASURES), text
    assert "ceph_example.jpg" in text and RESEARCH_NOTICE in text and "0.1" in text

    measures = pd.read_csv(out / "ceph_measures.csv", dtype={"pseudonym": str})
    assert set(MEASURES) <= set(measures["measure"])
    # the CSV names its image on every row, as the landmark table does; the screen does not
    assert list(measures.columns[:2]) == ["image", "pseudonym"]
    assert set(measures["image"]) == {"ceph_example.jpg"} and measures["pseudonym"].nunique() == 1
    assert measures["value"].notna().all()
    # the printed table is the one written
    anb = measures.set_index("measure").loc["ANB", "value"]
    assert f"{anb:.2f}" in result.stdout

    landmarks = pd.read_csv(out / "ceph_landmarks.csv", dtype={"pseudonym": str})
    assert len(landmarks) == 19 and landmarks["confidence"].between(0, 1).all()
    assert set(landmarks["pseudonym"]) == set(measures["pseudonym"])
    assert measures.loc[0, "pseudonym"] not in result.stdout and "pseudonym" not in result.stdout
    assert f"report:    {out / 'ceph_report.pdf'}" in result.stdout


def test_quickstart_prints_each_warning_once(tmp_path: Path) -> None:
    from cephspine import example_path

    # the bundled JPEG given as the user's own image: no spacing, so two warnings
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py"), str(example_path("ceph")), "--out", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for text in ("pixel spacing unknown", "MW not computed"):
        assert output.count(text) == 1, output
