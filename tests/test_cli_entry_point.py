"""The command line through its real entry point (``python -m cephspine``): error lines,
``--debug``, help texts and the warnings of ``report``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cephspine", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A folder with a file that is not an image (``bad.jpg``) and a 220 × 180 PNG without spacing."""
    (tmp_path / "bad.jpg").write_bytes(b"this is not an image at all")
    pixels = np.random.default_rng(0).integers(0, 256, (220, 180), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    return tmp_path


def test_an_error_names_the_file_once_as_given(folder: Path, tiny_model_dir: Path) -> None:
    r = cli("analyze", "bad.jpg", "-m", str(tiny_model_dir), cwd=folder)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: bad.jpg: not a recognised image")
    assert r.stderr.count("bad.jpg") == 1 and len(r.stderr.splitlines()) == 1
    assert "ImageReadError" not in r.stderr

    absolute = str(folder / "bad.jpg")
    r = cli("predict", absolute, "-m", str(tiny_model_dir), cwd=folder.parent)
    assert r.returncode == 1 and r.stderr.startswith(f"error: {absolute}: not a recognised image")
    assert r.stderr.count("bad.jpg") == 1

    r = cli("report", "missing.jpg", "-o", "out.pdf", "-m", str(tiny_model_dir), cwd=folder)
    assert r.returncode == 1 and r.stderr == "error: missing.jpg: file not found\n"

    # the detector names the image by its file name; the line names it as the user did
    r = cli("analyze", f"{folder.name}/scan.png", "--spacing", "1000", "-m", str(tiny_model_dir), cwd=folder.parent)
    assert r.returncode == 1 and r.stderr.startswith(f"error: {folder.name}/scan.png: spacing 1000")
    assert "outside the range of radiographs" in r.stderr
    assert r.stderr.count("scan.png") == 1


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_and_after_the_command(folder: Path, tiny_model_dir: Path, where: str) -> None:
    args = ["predict", "bad.jpg", "-m", str(tiny_model_dir)]
    r = cli(*(["--debug", *args] if where == "before" else [*args, "--debug"]), cwd=folder)
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "cephspine.errors.ImageReadError: bad.jpg: not a recognised image" in r.stderr


def test_help_reads_naturally(tmp_path: Path) -> None:
    r = cli("cohort", "--help", cwd=tmp_path)
    assert r.returncode == 0
    assert "cohort [OPTIONS] FOLDER" in r.stdout
    assert "{" not in r.stdout and "<bool>" not in r.stdout
    recursive = next(line for line in r.stdout.splitlines() if "--recursive" in line)
    assert "Include sub-folders." in recursive
    r = cli("evaluate", "ceph", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "121-150" in r.stdout and "001,005" in r.stdout
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0 and "<bool>" not in r.stdout and "--debug" in r.stdout


def test_report_prints_the_warnings_analyze_prints(folder: Path, tiny_model_dir: Path) -> None:
    analyzed = cli("analyze", "scan.png", "-m", str(tiny_model_dir), cwd=folder)
    reported = cli("report", "scan.png", "-o", "scan.pdf", "-m", str(tiny_model_dir), cwd=folder)
    assert analyzed.returncode == 0, analyzed.stderr
    assert reported.returncode == 0, reported.stderr
    assert (folder / "scan.pdf").stat().st_size > 0
    warnings = [line for line in analyzed.stderr.splitlines() if line.startswith("warning: ")]
    assert any("pixel spacing unknown" in w for w in warnings)
    assert any("MW not computed" in w for w in warnings)
    assert [line for line in reported.stderr.splitlines() if line.startswith("warning: ")] == warnings
    for out in (analyzed.stdout, reported.stdout):  # MW keeps its row, with the reason
        mw = next(line for line in out.splitlines() if line.split()[:1] == ["MW"])
        assert "n/a (needs pixel spacing)" in mw and "mm" in mw


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["analyze", "scan.png", "--kind", "skull"], "invalid value for '--kind' / '-k': 'skull' is not one of"),
        (["cohort", ".", "-f", "xlsx"], "invalid value for '--format' / '-f': 'xlsx' is not one of"),
        (["analyze", "scan.png", "--spacing", "abc"], "invalid value for '--spacing'"),
        (["analyze", "scan.png", "--no-such-option"], "no such option: --no-such-option"),
        (["analyze"], "missing argument 'IMAGE'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_status_2(folder: Path, args: list[str], cause: str) -> None:
    r = cli(*args, cwd=folder)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: {cause}") and f"cephspine {args[0]} --help')" in r.stderr
    assert "╭" not in r.stderr and "│" not in r.stderr and "Usage:" not in r.stderr
