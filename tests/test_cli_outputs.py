"""The analyze, report and cohort commands, in-process through typer's test runner."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cephspine.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "scan one.png"
    pixels = np.random.default_rng(0).integers(0, 256, (220, 180), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("predict", "analyze", "report", "cohort", "evaluate", "train", "models"):
        assert command in result.stdout
    for command in ("analyze", "report", "cohort"):
        sub = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert sub.exit_code == 0 and "--kind" in sub.stdout and "--include-identifiers" in sub.stdout


def test_analyze_json_round_trips(png: Path, tiny_model_dir: Path) -> None:
    from cephspine.analysis import Analysis

    result = runner.invoke(app, ["analyze", str(png), "-m", str(tiny_model_dir), "--spacing", "0.1", "-f", "json"])
    assert result.exit_code == 0, result.output
    a = Analysis.from_json(result.stdout)
    assert a.image == png.name and a.prediction.spacing is not None
    assert json.loads(result.stdout)["prediction"]["model"] == "tiny"


def test_analyze_csv_is_one_row_with_units(png: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["analyze", str(png), "-m", str(tiny_model_dir), "--spacing", "0.1", "-f", "csv"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert len(df) == 1 and {"anb_deg", "fhi_ratio", "mw_mm", "anb_class", "mean_confidence"} <= set(df.columns)
    assert result.stdout.startswith("image,pseudonym,")


def test_analyze_table_shows_measures(png: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["analyze", str(png), "-m", str(tiny_model_dir), "--spacing", "0.1"])
    assert result.exit_code == 0, result.output
    assert "ANB" in result.stdout and "normal_range" in result.stdout
    # the image is the same on every row: its name and pseudonym are not repeated on screen
    header = next(line for line in result.stdout.splitlines() if "normal_range" in line)
    assert header.split()[:2] == ["measure", "value"]
    as_json = runner.invoke(app, ["analyze", str(png), "-m", str(tiny_model_dir), "--spacing", "0.1", "-f", "json"])
    pseudonym = json.loads(as_json.stdout)["pseudonym"]
    assert "pseudonym" not in result.stdout and pseudonym not in result.stdout and png.name not in result.stdout


def test_analyze_bad_file_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = runner.invoke(app, ["analyze", str(bad), "-m", str(tiny_model_dir)])
    assert result.exit_code == 1
    assert "broken.jpg" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_analyze_wrong_kind_for_model(png: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["analyze", str(png), "-m", str(tiny_model_dir), "--kind", "spine"])
    assert result.exit_code == 1 and "spine detector" in result.output


def test_measures_table_keeps_measures_that_could_not_be_computed() -> None:
    from cephspine.analysis import Analysis
    from cephspine.anatomy import SPINE_LANDMARKS
    from cephspine.cli import _measures_text
    from cephspine.prediction import Prediction

    # coincident corners: no Cobb angles at all
    pred = Prediction(SPINE_LANDMARKS, np.zeros((68, 2)), np.full(68, 0.1), (900, 400), None, "spine", "1", "s.png")
    text = _measures_text(Analysis("spine", "s.png", "abc", pred, warnings=("s.png: Cobb angles not computed",)))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["curve", "angle_deg"] and "abc" not in text and "pseudonym" not in text
    assert [line.split()[0] for line in lines[1:]] == ["pt", "mt", "tl"]
    assert all("n/a (see warnings)" in line for line in lines[1:])
