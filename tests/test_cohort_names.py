"""Cohort keys of file names with line breaks, tabs, backslashes and other control
characters: one unambiguous key per file, one row per image, and a resume that settles."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import cephspine
from cephspine.cohorts import cohort, image_key
from cephspine.cohorts.columns import escape_key, unescape_key

N_LANDMARKS = 19
NAMES = ["new\nline.png", "new line.png", "x\ny.png", "x y.png", "cr\rlf.png", "tab\there.png", "back\\nslash.png"]
"""Real file names: each pair differs only in a character that a folding of line breaks
into spaces (or a backslash escape without escaping the backslash) would make equal."""


def _png(path: Path, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (300, 240), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    scans = tmp_path / "scans"
    (scans / "sub\ndir").mkdir(parents=True)
    for i, name in enumerate(NAMES):
        _png(scans / name, i)
    _png(scans / "sub\ndir" / "a.png", 99)
    return scans


def _control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or ch in "\u2028\u2029" or 0xD800 <= code <= 0xDFFF


@given(st.text(st.characters(exclude_categories=())))
def test_keys_are_one_printable_line_and_give_the_name_back(name: str) -> None:
    key = escape_key(name)
    assert unescape_key(key) == name
    assert not any(_control(ch) for ch in key) and len(key.splitlines()) <= 1
    key.encode("utf-8")  # also for a name that is not UTF-8 (surrogate escapes)


def test_key_examples() -> None:
    assert escape_key("new\nline.png") == "new\\nline.png" and escape_key("new line.png") == "new line.png"
    assert escape_key("back\\nslash.png") == "back\\\\nslash.png"  # not the key of a name with a line break
    assert escape_key("t\tab\r\x1b[31m.png") == "t\\tab\\r\\x1b[31m.png"
    assert escape_key("caf\u00e9.png") == "caf\u00e9.png" and escape_key("\udcff.png") == "\\udcff.png"
    assert len({escape_key(n) for n in NAMES}) == len(NAMES)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_image_gets_one_row_and_a_resume_settles(folder: Path, tmp_path: Path, det: Any, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out, lm = tmp_path / f"rows.{fmt}", tmp_path / f"landmarks.{fmt}"
    df = cohort(folder, detector=det, out=out, landmarks_out=lm, recursive=True, progress=False)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    keys = {image_key(p, folder) for p in files}
    assert len(df) == len(files) == len(keys) == len(NAMES) + 1 and set(df["image"]) == keys
    assert {folder / unescape_key(k) for k in df["image"]} == set(files)
    assert "sub\\ndir/a.png" in keys and "new\\nline.png" in keys and "new line.png" in keys
    assert (df["status"] == "ok").all() and len(det.calls) == len(files)
    nl = df.set_index("image").loc["new\\nline.png"]
    assert nl["warnings"].startswith("new\\nline.png: ")  # the image named as its row names it
    back = pd.read_csv(out, dtype=str, keep_default_na=False) if fmt == "csv" else pd.read_parquet(out)
    assert sorted(back["image"]) == sorted(keys)
    marks = pd.read_csv(lm, dtype=str) if fmt == "csv" else pd.read_parquet(lm)
    assert marks.groupby("image").size().to_dict() == dict.fromkeys(keys, N_LANDMARKS)
    if fmt == "csv":
        assert out.read_text(encoding="utf-8").count("\n") == len(files) + 1  # one line per image
        # the landmark table reads back as the supplied landmarks of such an image
        a = cephspine.analyze(folder / "new\nline.png", landmarks=lm, spacing=0.1)
        block = marks[marks["image"] == "new\\nline.png"][["x_px", "y_px"]].astype(float).to_numpy()
        np.testing.assert_allclose(a.prediction.xy_px, block)
    table = out.read_bytes()

    for _ in range(2):  # a resume analyses nothing and writes nothing, every time
        det.calls.clear()
        again = cohort(folder, detector=det, out=out, landmarks_out=lm, recursive=True, progress=False)
        assert det.calls == []
        pd.testing.assert_frame_equal(again, df)
        assert out.read_bytes() == table


def test_a_list_of_files_is_keyed_by_escaped_names(folder: Path, det: Any) -> None:
    df = cohort([folder / n for n in NAMES], detector=det, progress=False)
    assert list(df["image"]) == [escape_key(n) for n in NAMES] and df["image"].is_unique


def test_cli_cohort_resumes_names_with_line_breaks(folder: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "cephspine", "cohort", str(folder), "-m", str(tiny_model_dir), "-r"]
    args += ["-o", "r.csv", "--landmarks-out", "lm.csv", "--no-progress"]
    first = subprocess.run([*args, "-f", "csv"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    printed = list(csv.reader(io.StringIO(first.stdout)))
    assert len(printed) == 1 + len(NAMES) + 1 and all(len(r) == len(printed[0]) for r in printed)
    assert {r[0] for r in printed[1:]} == {escape_key(n) for n in NAMES} | {"sub\\ndir/a.png"}
    table, marks = (tmp_path / "r.csv").read_bytes(), (tmp_path / "lm.csv").read_bytes()
    assert table.count(b"\n") == len(NAMES) + 2

    again = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{len(NAMES) + 1} images: {len(NAMES) + 1} ok, 0 error(s)" in again.stdout
    assert (tmp_path / "r.csv").read_bytes() == table and (tmp_path / "lm.csv").read_bytes() == marks
    lines = again.stdout.splitlines()
    assert lines[0].split()[:2] == ["image", "status"] and len(lines) == 1 + len(NAMES) + 1 + 2
