"""CSV (formula) injection: every CSV cephspine writes escapes the text cells a spreadsheet
would evaluate (a leading apostrophe), leaves numbers alone, and reads its own CSVs back."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import cephspine
from cephspine._csvcells import (
    FORMULA_TRIGGERS,
    escape_cell,
    escape_frame,
    needs_escape,
    unescape_cell,
    unescape_frame,
    write_frame,
)
from cephspine.cohorts import cohort, row_schema

ROOT = Path(__file__).resolve().parents[1]

FILM = "=cmd|' -C calc'!A0.png"
EVIL_NAMES = ['=HYPERLINK("http://example.org","x")', "@SUM(1+1)", "-2+3", "+1", "'=quoted", "\tTAB"] + [
    f"lm{i}" for i in range(13)
]
EVIL_MODEL = "=evil"


def _png(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (300, 240), dtype=np.uint8)).save(path)
    return path


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _formulas(text: str) -> list[str]:
    """The cells of a CSV text that a spreadsheet would evaluate as formulas."""
    return [c for row in _cells(text) for c in row if c[:1] in FORMULA_TRIGGERS and not _is_number(c)]


def _cephspine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cephspine", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def evil_model(tmp_path_factory: pytest.TempPathFactory, tiny_config: Any) -> Path:
    """A tiny model whose card names the model and its landmarks like formulas."""
    from tests.conftest import build_model_dir

    out = tmp_path_factory.mktemp("evil") / "model"
    return build_model_dir(out, tiny_config, name=EVIL_MODEL, anatomy="custom", landmarks=EVIL_NAMES)


@pytest.fixture
def evil(evil_model: Path) -> cephspine.Detector:
    return cephspine.Detector.from_pretrained(evil_model, device="cpu")


# --------------------------------------------------------------------------- the rule
@given(st.text(alphabet=st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", "'", "a", " ", "1", "é"])))
def test_escaping_round_trips_and_leaves_no_formula(text: str) -> None:
    escaped = escape_cell(text)
    assert unescape_cell(escaped) == text
    assert escaped[:1] not in FORMULA_TRIGGERS
    assert (escaped == text) is not needs_escape(text)
    if escaped != text:
        assert escaped == "'" + text


def test_escaping_examples() -> None:
    assert escape_cell("=1+1") == "'=1+1" and escape_cell("@SUM(1+1).png") == "'@SUM(1+1).png"
    assert escape_cell("-x") == "'-x" and escape_cell("+x") == "'+x" and escape_cell("\t=x") == "'\t=x"
    assert escape_cell("\r=x") == "'\r=x"
    # a leading apostrophe of the name itself: escaped too when a trigger follows, so reading is unambiguous
    assert escape_cell("'=A1") == "''=A1" and unescape_cell("''=A1") == "'=A1" and unescape_cell("'=A1") == "=A1"
    for plain in ("it's", "'quoted'", "'", "''", "a=b", " =x", "img.png", ""):
        assert escape_cell(plain) == plain and unescape_cell(plain) == plain
    for other in (-1.5, -3, None, np.nan):
        assert escape_cell(other) is other and unescape_cell(other) is other


def test_frames_escape_text_cells_only() -> None:
    df = pd.DataFrame(
        {
            "image": [FILM, "ok.png", None],
            "note": pd.array(["-2 to 2", "fine", pd.NA], dtype="string"),
            "angle": [-1.5, 2.0, np.nan],
            "count": [-1, 2, 3],
        }
    )
    before = df.copy()
    out = escape_frame(df)
    pd.testing.assert_frame_equal(df, before)  # the frame given is not changed
    assert out["count"].dtype == df["count"].dtype and out["angle"].dtype == np.float64
    assert out["image"].tolist()[:2] == ["'" + FILM, "ok.png"] and out["note"].tolist()[:2] == ["'-2 to 2", "fine"]
    text = out.to_csv(index=False)
    rows = _cells(text)
    assert rows[1][2:] == ["-1.5", "-1"] and rows[2][2:] == ["2.0", "2"]  # numbers stay numbers
    assert _formulas(text) == []
    back = unescape_frame(pd.read_csv(io.StringIO(text), dtype={"image": str, "note": str}))
    assert back["image"].tolist()[:2] == [FILM, "ok.png"] and back["note"].tolist()[:2] == ["-2 to 2", "fine"]
    np.testing.assert_array_equal(back["angle"].to_numpy()[:2], [-1.5, 2.0])


def test_write_frame_is_atomic_and_escaped(tmp_path: Path) -> None:
    path = write_frame(pd.DataFrame({"image": ["@SUM(1+1).png"], "x_px": [-2.5]}), tmp_path / "t.csv", "table")
    assert path.read_text() == "image,x_px\n'@SUM(1+1).png,-2.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


# --------------------------------------------------------------------------- the SDK's CSVs
def test_csv_export_escapes_names_and_read_annotations_reads_them_back(tmp_path: Path, evil: Any) -> None:
    film = _png(tmp_path / FILM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cephspine.analyze(film, "ceph", detector=evil, spacing=0.1)
    out = cephspine.export(a, tmp_path / "lm.csv", format="csv")
    text = out.read_text(encoding="utf-8")
    assert _formulas(text) == []
    rows = _cells(text)
    header = rows[0]
    assert {r[header.index("image")] for r in rows[1:]} == {"'" + FILM}
    assert {r[header.index("model")] for r in rows[1:]} == {"'" + EVIL_MODEL}
    assert [r[header.index("landmark")] for r in rows[1:7]] == [
        "'" + EVIL_NAMES[0], "'@SUM(1+1)", "'-2+3", "'+1", "''=quoted", "'\tTAB",
    ]  # fmt: skip
    assert all(_is_number(r[header.index("x_px")]) for r in rows[1:])

    ann = cephspine.read_annotations(out)
    assert list(ann) == [FILM] and ann.names == tuple(EVIL_NAMES)
    np.testing.assert_allclose(ann[FILM], a.prediction.xy_px)


def test_cohort_tables_escape_names_warnings_and_model_and_resume(tmp_path: Path, evil: Any) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    names = [FILM, "@SUM(1+1).png", "+plus.png", "-minus.png", "'=apostrophe.png", "plain.png"]
    for i, n in enumerate(names):
        _png(folder / n, i)
    out, lm = tmp_path / "rows.csv", tmp_path / "landmarks.csv"
    evil.calls = []
    predict = evil.predict

    def counting(image: Any, **kw: Any) -> Any:
        evil.calls.append(image.name)
        return predict(image, **kw)

    evil.predict = counting
    df = cohort(folder, detector=evil, out=out, landmarks_out=lm, spacing=0.1, progress=False)
    assert sorted(df["image"]) == sorted(names) and len(evil.calls) == len(names)
    for path in (out, lm):
        text = path.read_text(encoding="utf-8")
        assert _formulas(text) == [], path
    rows = _cells(out.read_text(encoding="utf-8"))
    header = rows[0]
    by_image = {r[0]: dict(zip(header, r)) for r in rows[1:]}
    assert set(by_image) == {
        "'" + FILM,
        "'@SUM(1+1).png",
        "'+plus.png",
        "'-minus.png",
        "''=apostrophe.png",
        "plain.png",
    }
    film = by_image["'" + FILM]
    assert film["model"] == "'" + EVIL_MODEL and film["warnings"].startswith("'" + FILM + ": ")
    numeric = [c for c in header if c not in row_schema("ceph").text]
    assert not any(r[header.index(c)].startswith("'") for r in rows[1:] for c in numeric)
    marks = _cells(lm.read_text(encoding="utf-8"))
    assert {r[marks[0].index("landmark")] for r in marks[1:]} >= {"'@SUM(1+1)", "''=quoted", "'-2+3"}

    evil.calls.clear()
    again = cohort(folder, detector=evil, out=out, landmarks_out=lm, spacing=0.1, progress=False)
    assert evil.calls == []  # the escaped keys are read back as the images' own
    pd.testing.assert_frame_equal(again, df)
    assert again.set_index("image").loc[FILM, "model"] == EVIL_MODEL
    assert again.set_index("image").loc[FILM, "warnings"].startswith(FILM + ": ")
    back = cephspine.read_annotations(lm)  # the landmark table reads back as annotations
    assert set(back) == set(names) and back.names == tuple(EVIL_NAMES)


def test_parquet_tables_keep_the_names_as_they_are(tmp_path: Path, evil: Any) -> None:
    pytest.importorskip("pyarrow")
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / FILM)
    cohort(folder, detector=evil, out=tmp_path / "rows.parquet", progress=False)
    back = pd.read_parquet(tmp_path / "rows.parquet")
    assert back["image"].tolist() == [FILM] and back["model"].tolist() == [EVIL_MODEL]


def test_cli_csv_outputs_escape_and_read_back(tmp_path: Path, tiny_model_dir: Path, evil_model: Path) -> None:
    _png(tmp_path / FILM)
    pred = _cephspine("predict", FILM, "-m", str(evil_model), "-f", "csv", "--spacing", "0.1", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    assert _formulas(pred.stdout) == []
    header, first = _cells(pred.stdout)[:2]
    cell = dict(zip(header, first))
    assert (cell["image"], cell["model"], cell["landmark"]) == ("'" + FILM, "'" + EVIL_MODEL, "'" + EVIL_NAMES[0])

    # the correction workflow with such a name: predict -f csv, then analyze with those landmarks
    pred = _cephspine("predict", FILM, "-m", str(tiny_model_dir), "-f", "csv", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    assert _formulas(pred.stdout) == [] and _cells(pred.stdout)[1][0] == "'" + FILM
    (tmp_path / "lm.csv").write_text(pred.stdout, encoding="utf-8")
    a = cephspine.analyze(tmp_path / FILM, "ceph", landmarks=tmp_path / "lm.csv", spacing=0.1)
    assert a.image == FILM
    np.testing.assert_allclose(a.prediction.xy_px, pd.read_csv(io.StringIO(pred.stdout))[["x_px", "y_px"]])

    row = _cephspine("analyze", FILM, "--landmarks", "lm.csv", "--spacing", "0.1", "-f", "csv", cwd=tmp_path)
    assert row.returncode == 0, row.stderr
    assert _formulas(row.stdout) == [] and _cells(row.stdout)[1][0] == "'" + FILM
    header, values = _cells(row.stdout)
    assert all(_is_number(v) for k, v in zip(header, values) if k.endswith("_deg") and v)

    table = _cephspine("cohort", ".", "-m", str(evil_model), "--no-progress", "-f", "csv", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert _formulas(table.stdout) == []
    assert [r[0] for r in _cells(table.stdout)[1:]] == ["'" + FILM]


@pytest.fixture(scope="module")
def evil_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three annotated images named like formulas, with the evil model's landmark names
    (the annotations written as cephspine writes CSVs: escaped)."""
    root = tmp_path_factory.mktemp("evilset")
    images = root / "images"
    images.mkdir()
    rows = []
    for i, name in enumerate([FILM, "@SUM(1+1).png", "+plus.png"]):
        _png(images / name, i)
        xy = np.random.default_rng(i).uniform(20, 200, (len(EVIL_NAMES), 2))
        rows += [
            {"image": name, "landmark": n, "x_px": x, "y_px": y, "spacing_mm": 0.1} for n, (x, y) in zip(EVIL_NAMES, xy)
        ]
    return images, write_frame(pd.DataFrame(rows), root / "annotations.csv", "annotations")


def test_evaluate_landmarks_cli_writes_escaped_tables(tmp_path: Path, evil_model: Path, evil_set: Any) -> None:
    images, annotations = evil_set
    run = _cephspine(
        "evaluate", "landmarks", "-m", str(evil_model), "--annotations", str(annotations), "--images", str(images),
        "--csv", "per_image.csv", "-f", "csv", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert _formulas(run.stdout) == []
    assert [r[0] for r in _cells(run.stdout)[1:7]] == [
        "all",
        "'" + EVIL_NAMES[0],
        "'@SUM(1+1)",
        "'-2+3",
        "'+1",
        "''=quoted",
    ]
    text = (tmp_path / "per_image.csv").read_text(encoding="utf-8")
    assert _formulas(text) == []
    back = unescape_frame(pd.read_csv(tmp_path / "per_image.csv", dtype={"image": str, "landmark": str}))
    assert set(back["image"]) == {FILM, "@SUM(1+1).png", "+plus.png"} and set(back["landmark"]) == set(EVIL_NAMES)
    assert pd.api.types.is_float_dtype(back["error_mm"])


def test_training_writes_escaped_held_out_predictions(tmp_path: Path, evil_set: Any, tiny_config: Any) -> None:
    from cephspine.training.custom import train_landmarks

    images, annotations = evil_set
    out = train_landmarks(images, annotations, tmp_path / "model", epochs=1, steps=1, cfg=tiny_config, name="=mine")
    text = (out / "training" / "held_out_predictions.csv").read_text(encoding="utf-8")
    assert _formulas(text) == [] and "'=" in text
