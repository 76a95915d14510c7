"""The named cephalometric analyses wherever an analysis goes: :class:`Analysis` (and its
JSON), cohort tables, the PDF report and the command line."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pypdf import PdfReader

from cephspine.analysis import Analysis
from cephspine.cohorts import cohort, row_schema
from cephspine.errors import InvalidArgumentError
from cephspine.geometry import ANALYSIS_KEYS, analysis_values, ceph_analyses
from cephspine.reports import write_report
from tests.test_report import ceph_analysis, spine_analysis

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ceph_image() -> Any:
    import cephspine

    return cephspine.load_image(cephspine.example_path(), spacing=0.1)


def without_spacing(a: Analysis) -> Analysis:
    return dataclasses.replace(a, prediction=dataclasses.replace(a.prediction, spacing=None))


# --------------------------------------------------------------------------- Analysis


def test_analysis_gives_its_analyses_table() -> None:
    a = ceph_analysis()
    df = a.analyses_dataframe()
    assert list(df.columns[:3]) == ["image", "pseudonym", "key"]
    assert (df["image"] == a.image).all() and (df["pseudonym"] == a.pseudonym).all()
    pd.testing.assert_frame_equal(df.drop(columns=["image", "pseudonym"]), ceph_analyses(a.prediction))
    steiner = a.analyses_dataframe("steiner")
    assert set(steiner["analysis"]) <= {"Steiner", "Downs", "Björk–Jarabak"} and "sn_gogn_deg" in set(steiner["key"])
    user = pd.DataFrame({"key": ["saddle_angle_deg"], "norm_mean": [130.0], "norm_sd": [2.0]})
    assert a.analyses_dataframe(norms=user).set_index("key").loc["saddle_angle_deg", "norm_mean"] == 130
    with pytest.raises(InvalidArgumentError, match="ceph"):
        spine_analysis().analyses_dataframe()
    bare = without_spacing(a).analyses_dataframe().set_index("key")
    assert bare.loc["saddle_angle_deg", "value"] == pytest.approx(df.set_index("key").loc["saddle_angle_deg", "value"])
    assert bare.loc["overjet_mm", "status"] == "no spacing" and math.isnan(bare.loc["overjet_mm", "value"])


def test_to_row_has_a_float_for_every_analysis_key() -> None:
    a = ceph_analysis()
    row = a.to_row()
    want = analysis_values(a.prediction)
    for k in ANALYSIS_KEYS:
        assert isinstance(row[k], float) and row[k] == pytest.approx(want[k]), k
    row = without_spacing(a).to_row()  # the angles and ratios need no spacing
    assert all(math.isnan(row[k]) == k.endswith("_mm") for k in ANALYSIS_KEYS)
    assert not any(k in spine_analysis().to_row() for k in ANALYSIS_KEYS)


def test_json_round_trip_keeps_the_analyses_and_old_json_still_loads() -> None:
    a = ceph_analysis()
    d = json.loads(a.to_json())
    assert set(d["analyses"]) == set(ANALYSIS_KEYS)
    assert d["analyses"]["saddle_angle_deg"] == pytest.approx(a.to_row()["saddle_angle_deg"])
    back = Analysis.from_json(a.to_json())
    assert back == a
    pd.testing.assert_frame_equal(back.analyses_dataframe(), a.analyses_dataframe())
    del d["analyses"]  # written before the analyses existed
    old = Analysis.from_dict(d)
    assert old == a
    pd.testing.assert_frame_equal(old.analyses_dataframe(), a.analyses_dataframe())
    # a value that cannot be computed is written as null
    xy = a.prediction.xy_px.copy()
    xy[18] = np.nan  # articulare
    gap = dataclasses.replace(a, prediction=dataclasses.replace(a.prediction, xy_px=xy), measures=None)
    values = json.loads(gap.to_json())["analyses"]
    assert values["saddle_angle_deg"] is None and isinstance(values["jarabak_ratio_pct"], float)
    bare = json.loads(without_spacing(a).to_json())["analyses"]
    assert bare["overjet_mm"] is None and bare["saddle_angle_deg"] == pytest.approx(a.to_row()["saddle_angle_deg"])


# --------------------------------------------------------------------------- cohorts


def test_cohort_schema_has_float_columns_for_the_analyses() -> None:
    schema = row_schema("ceph")
    assert set(ANALYSIS_KEYS) <= set(schema.columns)
    assert not set(ANALYSIS_KEYS) & (set(schema.text) | set(schema.integer))
    assert not set(ANALYSIS_KEYS) & set(row_schema("spine").columns)
    frame = schema.frame([ceph_analysis().to_row(), without_spacing(ceph_analysis()).to_row(), {"image": "x.png"}])
    for k in ANALYSIS_KEYS:
        assert frame[k].dtype == np.float64, k
    assert np.isfinite(frame.loc[0, list(ANALYSIS_KEYS)].to_numpy(dtype=float)).all()
    mm = [k for k in ANALYSIS_KEYS if k.endswith("_mm")]
    assert frame.loc[1:, mm].isna().all().all() and frame.loc[2, list(ANALYSIS_KEYS)].isna().all()
    assert np.isfinite(frame.loc[1, [k for k in ANALYSIS_KEYS if k not in mm]].to_numpy(dtype=float)).all()


def test_cohort_table_and_its_csv_carry_the_analyses(tmp_path: Path, det: Any) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        pixels = np.random.default_rng(i).integers(0, 256, (300, 240), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "table.csv"
    df = cohort(folder, detector=det, spacing=0.1, progress=False, out=out)
    ok = df[df["status"] == "ok"]
    assert len(ok) == 2 and all(df[k].dtype == np.float64 for k in ANALYSIS_KEYS)
    assert (
        np.isfinite(ok["gonial_angle_deg"]).all()
        and df.set_index("image")[list(ANALYSIS_KEYS)].loc["broken.jpg"].isna().all()
    )
    plain = pd.read_csv(out)
    assert set(ANALYSIS_KEYS) <= set(plain.columns)
    np.testing.assert_allclose(plain["saddle_angle_deg"], df["saddle_angle_deg"], equal_nan=True)


# --------------------------------------------------------------------------- the PDF report


def test_ceph_report_has_a_second_page_with_every_analysis(tmp_path: Path, ceph_image: Any) -> None:
    a = ceph_analysis()
    out = write_report(a, tmp_path / "r.pdf", image=ceph_image)
    pages = PdfReader(out).pages
    assert len(pages) == 2
    first, second = (" ".join(p.extract_text().split()) for p in pages)
    assert "Cephalometric analyses" not in first and "ANB" in first
    for name in ("Steiner", "Downs", "Tweed", "Björk–Jarabak", "McNamara", "Holdaway", "Burstone–Legan", "Ricketts"):
        assert name in second, name
    assert "saddle angle N–S–Ar" in second and "Not available from the ISBI landmarks" in second
    assert "needs condylion" in second and "Downs WB" in second and "Population:" in second
    facial = ceph_analyses(a.prediction).set_index("key").loc["facial_angle_deg"]
    assert f"{facial['value']:.2f}°" in second and "87.8° (82–95°)" in second
    assert "Research use only" in second  # the notice on every page


def test_report_uses_the_users_norms_and_says_without_spacing(tmp_path: Path, ceph_image: Any) -> None:
    norms = tmp_path / "norms.csv"
    norms.write_text(
        "key,norm_mean,norm_sd,norm_source,norm_population\n"
        "saddle_angle_deg,131,4,Clinic X 2021,local\n"
        "gonial_angle_deg,128,6,,\n"
    )
    out = write_report(ceph_analysis(), tmp_path / "r.pdf", image=ceph_image, norms=norms)
    second = " ".join(PdfReader(out).pages[1].extract_text().split())
    assert "131 ± 4°" in second and "Clinic X 2021" in second
    assert "user norms file norms.csv" in second  # a row without a source names its file
    out = write_report(without_spacing(ceph_analysis()), tmp_path / "n.pdf", image=ceph_image)
    second = " ".join(PdfReader(out).pages[1].extract_text().split())
    assert "No pixel spacing: the distances (mm) need it" in second and "saddle angle N–S–Ar" in second
    assert "Needs the pixel spacing: overjet" in second
    bad = tmp_path / "bad.csv"
    bad.write_text("key,norm_mean\nnope,1\n")
    with pytest.raises(InvalidArgumentError, match="bad.csv"):
        write_report(ceph_analysis(), tmp_path / "b.pdf", image=ceph_image, norms=bad)
    assert not (tmp_path / "b.pdf").exists()


# --------------------------------------------------------------------------- the command line


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cephspine", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "film.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (300, 240), dtype=np.uint8)).save(path)
    return path


def test_cli_prints_the_chosen_analyses(png: Path, tiny_model_dir: Path) -> None:
    base = ["analyze", str(png), "-m", str(tiny_model_dir), "--device", "cpu", "--spacing", "0.1"]
    r = cli(*base, "--analysis", "downs", "--analysis", "bjork")
    assert r.returncode == 0, r.stderr
    assert "Downs analysis" in r.stdout and "Björk–Jarabak analysis" in r.stdout
    assert "Steiner analysis" not in r.stdout and "Holdaway analysis" not in r.stdout
    assert "facial angle" in r.stdout and "87.8° (82–95°)" in r.stdout
    assert "not available: needs the molar and premolar cusps" in r.stdout
    assert "Norm sources:" in r.stdout and "Downs WB" in r.stdout
    assert "ANB" in r.stdout  # the eight ISBI measures stay

    r = cli(*base, "--analysis", "all", "--format", "csv")
    assert r.returncode == 0, r.stderr
    import io

    table = pd.read_csv(io.StringIO(r.stdout))
    assert list(table["key"])[:3] == ["sn_gogn_deg", "fh_sn_deg", "sn_pp_deg"] and "norm_source" in table.columns

    r = cli(*base, "--analysis", "holdaway", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [row["key"] for row in d["analysis_table"]] == ["h_angle_deg"] and "analyses" in d


def test_cli_refuses_bad_analysis_options_before_analysing(png: Path, tmp_path: Path) -> None:
    r = cli("analyze", str(png), "--spacing", "0.1", "--analysis", "wits")
    text = " ".join(r.stderr.replace("│", " ").split())  # typer boxes usage errors
    assert r.returncode == 2 and "unknown analysis 'wits'" in text and "Traceback" not in text
    r = cli("analyze", str(png), "--kind", "spine", "--analysis", "downs")
    assert r.returncode == 2 and "--kind ceph" in " ".join(r.stderr.replace("│", " ").split())
    bad = tmp_path / "my norms.csv"
    bad.write_text("key,norm_mean\nsaddle_angle_deg,abc\n")
    r = cli("analyze", str(png), "--spacing", "0.1", "--analysis", "all", "--norms", str(bad))
    assert r.returncode == 1 and r.stderr.count(str(bad)) == 1 and "not a number" in r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = cli("analyze", str(png), "--analysis", "all", "--norms", str(tmp_path / "missing.csv"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = cli("analyze", str(png), "--norms", str(bad))
    assert r.returncode == 2 and "add --analysis" in " ".join(r.stderr.replace("│", " ").split())


def test_cli_without_spacing_prints_the_angles_and_marks_the_distances(tmp_path: Path) -> None:
    import cephspine
    from cephspine.anatomy import CEPH_LANDMARKS

    truth = np.loadtxt(Path(__file__).parent / "data" / "ceph_example_truth.csv", delimiter=",", skiprows=2)
    landmarks = tmp_path / "lm.csv"
    pd.DataFrame({"landmark": CEPH_LANDMARKS, "x_px": truth[:, 0], "y_px": truth[:, 1]}).to_csv(landmarks, index=False)
    film = str(cephspine.example_path())  # a JPEG: no spacing in the file
    r = cli("analyze", film, "--landmarks", str(landmarks), "--analysis", "downs", "--analysis", "steiner")
    assert r.returncode == 0, r.stderr
    assert "Downs analysis" in r.stdout and "Steiner analysis" in r.stdout and "ANB" in r.stdout
    facial = next(line for line in r.stdout.splitlines() if line.startswith("facial angle"))
    assert facial.split()[2].endswith("°")  # a value, not n/a
    overjet = next(line for line in r.stdout.splitlines() if line.startswith("overjet"))
    assert "n/a" in overjet and "needs the pixel spacing (--spacing)" in overjet
    assert "MW n/a (needs pixel spacing)" in " ".join(r.stdout.split())
    assert "give it with --spacing MM" in r.stderr and "spacing=" not in r.stderr + r.stdout
