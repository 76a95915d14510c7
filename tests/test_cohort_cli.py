"""``cephspine cohort`` through the real entry point: the table it prints, and a re-run
with other settings refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _cephspine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cephspine", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "scans"
    folder.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (300, 240), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def test_without_out_the_table_is_printed(scans: Path, tiny_model_dir: Path) -> None:
    run = _cephspine("cohort", str(scans), "-m", str(tiny_model_dir), "--spacing", "0.1", "--no-progress", cwd=scans)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:4] == ["image", "status", "anb_deg", "snb_deg"] and "mean_confidence" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert set(rows) == {"broken.jpg", "img0.png", "img1.png", "img2.png"}
    assert rows["broken.jpg"][1:] == ["error"] and rows["img0.png"][1] == "ok"
    assert len(rows["img0.png"]) == 2 + 8 + 1  # the 8 measures (MW with spacing) and the confidence
    assert lines[5] == "4 images: 3 ok, 1 error(s)" and len(lines) == 6
    # the error row as one line naming the file once, without the exception type
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in run.stderr.splitlines() if "broken.jpg" in line]
    assert len(errors) == 1 and errors[0].startswith("error: broken.jpg: could not decode image data")
    assert errors[0].count("broken.jpg") == 1 and "Error" not in errors[0]
    assert not any(scans.parent.glob("*.csv")) and sorted(p.name for p in scans.iterdir())[0] == "broken.jpg"

    as_csv = _cephspine("cohort", str(scans), "-m", str(tiny_model_dir), "--no-progress", "-f", "csv", cwd=scans)
    df = pd.read_csv(io.StringIO(as_csv.stdout)).set_index("image")
    assert len(df) == 4 and pd.isna(df.loc["broken.jpg", "anb_class"]) and df["mw_mm"].isna().all()


def test_rerun_with_other_settings_is_refused(scans: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    first = _cephspine("cohort", str(scans), "-m", str(tiny_model_dir), "-o", "r.csv", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-2:] == ["4 images: 3 ok, 1 error(s)", "results in r.csv"]
    table = (tmp_path / "r.csv").read_bytes()
    again = _cephspine(
        "cohort", str(scans), "-m", str(tiny_model_dir), "-o", "r.csv", "--spacing", "0.1", "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("error: r.csv: its rows were made with other settings than this run: ")
    assert "spacing: each file's own → 0.1 mm (this run)" in again.stderr
    assert "delete r.csv and r.csv.settings.json, or write to another file" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    assert (tmp_path / "r.csv").read_bytes() == table

    wrong = _cephspine("cohort", str(scans), "-m", str(tiny_model_dir), "-o", "r.xlsx", cwd=tmp_path)
    assert wrong.returncode == 1 and "out must end in .csv or .parquet" in wrong.stderr


def test_an_empty_folder_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "films"
    empty.mkdir()
    (empty / "readme.txt").write_text("scans to come\n")
    run = _cephspine("cohort", "films", "-o", "r.csv", "--summary-pdf", "s.pdf", "--no-progress", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("error: films: no image files in this folder")
    assert ".dcm" in run.stderr and ".png" in run.stderr and "-r" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["films"]


def test_missing_spacing_is_said_once_and_a_csv_gives_it_per_image(
    scans: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    base = ["cohort", str(scans), "-m", str(tiny_model_dir), "--no-progress"]
    bare = _cephspine(*base, cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr
    said = [line for line in bare.stderr.splitlines() if "no pixel spacing" in line]
    assert said == [
        "warning: 3 of 4 images have no pixel spacing, so their measures in mm (MW and the analyses' distances) "
        "are empty; give it with --spacing MM (every image) or --spacing-csv FILE (image, spacing_mm)"
    ]

    (tmp_path / "sp.csv").write_text("image,spacing_mm\nimg0.png,0.1\nimg1.png,0.125\nnot-there.png,0.1\n")
    given = _cephspine(*base, "--spacing-csv", "sp.csv", "-o", "r.csv", "-f", "csv", cwd=tmp_path)
    assert given.returncode == 0, given.stderr
    df = pd.read_csv(io.StringIO(given.stdout)).set_index("image")
    assert df.loc["img0.png", "spacing_row_mm"] == 0.1 and df.loc["img1.png", "spacing_col_mm"] == 0.125
    assert pd.isna(df.loc["img2.png", "spacing_row_mm"])  # left out: the file's own (none)
    assert "warning: 1 of 4 images have no pixel spacing" in given.stderr
    assert "1 image(s) of the spacing table are not in the cohort: not-there.png" in given.stderr

    # the per-image spacings are settings of the table: another value for one image is refused
    (tmp_path / "sp.csv").write_text("image,spacing_mm\nimg0.png,0.1\nimg1.png,0.13\n")
    again = _cephspine(*base, "--spacing-csv", "sp.csv", "-o", "r.csv", cwd=tmp_path)
    assert again.returncode == 1 and "other spacings for img1.png" in again.stderr
    both = _cephspine(*base, "--spacing-csv", "sp.csv", "--spacing", "0.1", cwd=tmp_path)
    assert both.returncode == 2 and both.stderr.startswith("error: ") and len(both.stderr.splitlines()) == 1


def test_ctrl_c_says_how_far_it_got_and_a_rerun_says_what_it_reused(tiny_model_dir: Path, tmp_path: Path) -> None:
    import signal
    import time

    films = tmp_path / "films"
    films.mkdir()
    for i in range(60):
        pixels = np.random.default_rng(i).integers(0, 256, (300, 240), dtype=np.uint8)
        Image.fromarray(pixels).save(films / f"img{i:02d}.png")
    args = [sys.executable, "-m", "cephspine", "cohort", "films", "-m", str(tiny_model_dir), "-o", "r.csv"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*args, "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    table = tmp_path / "r.csv"
    deadline = time.monotonic() + 240
    while not (table.exists() and len(table.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    done = len(pd.read_csv(table))
    assert 2 <= done < 60
    assert err.splitlines()[-1] == (
        f"interrupted: {done} of 60 images done, in r.csv; run the same command again to resume"
    )
    rerun = _cephspine("cohort", "films", "-m", str(tiny_model_dir), "-o", "r.csv", "--no-progress", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed r.csv: {done} row(s) kept from an earlier run, {60 - done} image(s) analysed now" in rerun.stderr
    assert len(pd.read_csv(table)) == 60


def _interrupting(tmp_path: Path, patch: str) -> dict[str, str]:
    """The environment of a ``python -m cephspine`` run that sends itself a SIGINT where
    ``patch`` (run at start-up, from a ``sitecustomize`` module) says."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import os, signal\n" + patch)
    path = os.pathsep.join([str(hook), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def test_ctrl_c_while_the_model_loads_says_nothing_was_written(tiny_model_dir: Path, tmp_path: Path) -> None:
    films = tmp_path / "films"
    films.mkdir()
    Image.fromarray(np.zeros((300, 240), dtype=np.uint8)).save(films / "img0.png")
    env = _interrupting(
        tmp_path,
        "from cephspine.detector import Detector\n"
        "def load(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "Detector.from_pretrained = load\n",
    )
    args = ["cohort", "films", "-m", str(tiny_model_dir), "-o", "r.csv", "--no-end-prior", "--no-progress"]
    run = subprocess.run(
        [sys.executable, "-m", "cephspine", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert run.returncode == 130, run.stderr
    assert run.stderr.splitlines() == ["interrupted before any image was analysed; nothing was written"]
    assert not (tmp_path / "r.csv").exists()


def test_ctrl_c_with_only_landmarks_out_says_where_the_landmarks_are(tiny_model_dir: Path, tmp_path: Path) -> None:
    films = tmp_path / "films"
    films.mkdir()
    for i in range(4):
        pixels = np.random.default_rng(i).integers(0, 256, (300, 240), dtype=np.uint8)
        Image.fromarray(pixels).save(films / f"img{i}.png")
    env = _interrupting(
        tmp_path,
        "import cephspine.cohorts as cohorts\n"
        "real = cohorts.analyze_image\n"
        "def analyze(path, *args):\n"
        "    if path.name == 'img2.png':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(path, *args)\n"
        "cohorts.analyze_image = analyze\n",
    )
    args = ["cohort", "films", "-m", str(tiny_model_dir), "--landmarks-out", "lm.csv", "--workers", "1"]
    run = subprocess.run(
        [sys.executable, "-m", "cephspine", *args, "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 130, run.stderr
    assert pd.read_csv(tmp_path / "lm.csv")["image"].nunique() == 2
    assert run.stderr.splitlines()[-1] == (
        "interrupted after 2 of 4 images; the landmarks of 2 image(s) are in lm.csv, no table was written (with "
        "--out the rows are kept as they finish and a re-run resumes)"
    )
