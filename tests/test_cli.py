"""The command line, through typer's test runner."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize(
    ("error", "name", "line"),
    [
        # a cohort row's error cell: the type and the file are not repeated
        ("ImageReadError: bad.jpg: not a recognised image", "bad.jpg", "error: bad.jpg: not a recognised image"),
        ("ImageReadError: /data/scans/bad.jpg: file is empty", "scans/bad.jpg", "error: scans/bad.jpg: file is empty"),
        # an error about something else keeps its own words
        ("unknown model 'x'; known: ceph, spine", "bad.jpg", "error: unknown model 'x'; known: ceph, spine"),
    ],
)
def test_error_line_names_the_file_once(error: str, name: str, line: str) -> None:
    from cephspine.cli import _error_line

    assert _error_line(error, name) == line


@pytest.mark.parametrize(
    ("error", "name", "line"),
    [
        ("ImageReadError: bad.jpg: not a recognised image", "bad.jpg", "error: bad.jpg: not a recognised image"),
        # a row of a recursive cohort is keyed by its path below the folder
        ("ImageReadError: bad.jpg: file is empty", "sub/bad.jpg", "error: sub/bad.jpg: file is empty"),
        # the error of a row is about its image even when the text does not name it
        ("InvalidArgumentError: kind='spine' needs a spine detector", "a.png",
         "error: a.png: kind='spine' needs a spine detector"),
        ("RuntimeError: out of memory", "a.png", "error: a.png: RuntimeError: out of memory"),
        ("KeyError: 'x'", "a.png", "error: a.png: KeyError: 'x'"),
    ],
)  # fmt: skip
def test_cohort_error_row_names_its_image_once(error: str, name: str, line: str) -> None:
    from cephspine.cli import _error_line

    assert _error_line(error, name, about_file=True) == line


def test_error_line_of_exceptions() -> None:
    from cephspine.cli import _error_line
    from cephspine.errors import ImageReadError, UnknownModelError

    missing = ImageReadError("/abs/scan.png", "file not found")
    assert _error_line(missing, "scan.png") == "error: scan.png: file not found"
    assert _error_line(UnknownModelError("unknown model 'knee'")) == "error: unknown model 'knee'"
    denied = OSError(13, "permission denied", "/out/r.pdf")
    assert _error_line(denied, "scan.png") == "error: /out/r.pdf: permission denied"


def _commands(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_cli_reference_matches_the_help() -> None:
    """docs/cli.md has, for every command, the usage line and every option and help text
    of ``--help``, and no option the command does not have."""
    import click
    import typer

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert "{" not in doc and "<bool>" not in doc
    for path, cmd in _commands(typer.main.get_command(app), ("cephspine",)):
        title = "`" + " ".join(path) + "`"
        found = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ `|\Z)", doc, re.S | re.M)
        assert found, f"no section {title}"
        section = found.group(1)
        ctx = click.Context(cmd, info_name=" ".join(path))
        usage = " ".join([*path, *cmd.collect_usage_pieces(ctx)])
        assert f"$ {usage}\n" in section, (title, usage)
        params = cmd.get_params(ctx)
        for p in params:
            assert not p.help or p.help in section, (title, p.name)
            for opt in (p.opts + p.secondary_opts) if isinstance(p, click.Option) else []:
                assert re.search(rf"[`, ]{re.escape(opt)}[`, ]", section), (title, opt)
        known = {o for p in params for o in p.opts + p.secondary_opts}
        for line in re.findall(r"^\* `(-[^`]*)`", section, re.M):
            assert set(re.findall(r"--?[\w-]+", line.split(" <")[0])) <= known, (title, line)
