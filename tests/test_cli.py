"""The command line, through typer's test runner."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cephspine.anatomy import CEPH_LANDMARKS
from cephspine.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "tiny ceph.png"
    pixels = np.random.default_rng(0).integers(0, 256, (220, 180), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("predict", "models", "train", "evaluate"):
        assert command in result.stdout
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0
    assert "--model" in result.stdout and "--format" in result.stdout


def test_predict_csv(png: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["predict", str(png), "--model", str(tiny_model_dir), "--format", "csv", "--device", "cpu", "--spacing", "0.1"],
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert list(df["landmark"]) == list(CEPH_LANDMARKS)
    assert {"x_px", "y_px", "x_mm", "y_mm", "confidence"} <= set(df.columns)
    assert np.isfinite(df[["x_px", "y_px", "x_mm", "y_mm"]].to_numpy()).all()
    np.testing.assert_allclose(df["x_mm"], df["x_px"] * 0.1)
    assert df["confidence"].between(0, 1).all()
    assert (df["image"] == png.name).all()


def test_predict_json_without_spacing(png: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["predict", str(png), "-m", str(tiny_model_dir), "-f", "json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["landmark"] for r in rows] == list(CEPH_LANDMARKS)
    assert all(r["x_mm"] is None and r["y_mm"] is None for r in rows)
    assert all(isinstance(r["x_px"], float) for r in rows)


def test_predict_table(png: Path, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["predict", str(png), "-m", str(tiny_model_dir), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "sella" in result.stdout and "articulare" in result.stdout
    assert "warning:" in result.stderr and "spacing" in result.stderr  # none given, none in a PNG


@pytest.mark.parametrize("content", [b"", b"this is not an image at all", None])
def test_unreadable_image_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path, content) -> None:
    path = tmp_path / "broken.png"
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["predict", str(path), "-m", str(tiny_model_dir), "--device", "cpu"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "broken.png" in lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unknown_model(png: Path, monkeypatch) -> None:
    monkeypatch.delenv("CEPHSPINE_WEIGHTS", raising=False)
    result = runner.invoke(app, ["predict", str(png), "--model", "no_such_model"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "no_such_model" in result.stderr
    assert "Traceback" not in result.output


def test_bad_option_is_a_usage_error(png: Path) -> None:
    result = runner.invoke(app, ["predict", str(png), "--format", "xml"])
    assert result.exit_code == 2


def test_models_lists_user_weights(tiny_model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CEPHSPINE_WEIGHTS", str(tiny_model_dir.parent))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("tiny\t"))
    assert "0.0.1" in line and "19 landmarks" in line


def test_spine_decoding_options(tmp_path: Path) -> None:
    from cephspine.anatomy import SPINE_LANDMARKS
    from tests.conftest import build_model_dir
    from tests.test_end_prior import SPINE_PRIOR

    model = build_model_dir(tmp_path / "sp", SPINE_PRIOR, anatomy="spine", landmarks=list(SPINE_LANDMARKS))
    folder = tmp_path / "in"
    folder.mkdir()
    image = folder / "spine.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (700, 260), dtype=np.uint8)).save(image)

    def predict(*flags: str) -> pd.DataFrame:
        result = runner.invoke(app, ["predict", str(image), "-m", str(model), "-f", "csv", *flags])
        assert result.exit_code == 0, result.output
        return pd.read_csv(io.StringIO(result.stdout))

    default, plain = predict(), predict("--no-end-prior", "--no-refine-flip")
    assert len(default) == len(plain) == 68
    assert not np.allclose(default[["x_px", "y_px"]], plain[["x_px", "y_px"]])  # the mirror changes the corners
    for command in (["analyze", str(image)], ["cohort", str(folder), "--no-progress"]):
        outputs = []
        for flags in ([], ["--no-refine-flip"]):
            result = runner.invoke(app, [*command, "-k", "spine", "-m", str(model), "-f", "csv", *flags])
            assert result.exit_code == 0, result.output
            assert "spine.png" in result.stdout
            outputs.append(result.stdout)
        assert outputs[0] != outputs[1]  # the option reached the detector
