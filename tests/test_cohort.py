"""`cephspine.cohort`: error rows, CSV/Parquet output, resume after an interruption, privacy."""

from __future__ import annotations

import csv
import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cephspine
from cephspine.cohorts import CohortWriter, analyze_row, cohort, landmark_columns, list_images, row_columns
from cephspine.errors import (
    CohortSettingsError,
    InputNotFoundError,
    InvalidArgumentError,
    MissingDependencyError,
    OutputError,
)
from tests.conftest import write_dicom

ROOT = Path(__file__).resolve().parents[1]
N_LANDMARKS = 19


def _png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (300, 240), dtype=np.uint8)).save(path)
    return path


def _folder(folder: Path, n: int, start: int = 0) -> list[Path]:
    return [_png(folder / f"img{i:02d}.png", i) for i in range(start, start + n)]


def _lines(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- rows
def test_good_and_corrupt_images_give_one_row_each(tmp_path: Path, det: Any) -> None:
    folder = tmp_path / "scans"
    _folder(folder, 3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")  # unknown suffix: not a candidate
    (folder / ".hidden.png").write_bytes(b"x")  # hidden: skipped
    _png(folder / "sub" / "img00.png", 9)  # sub-folder: only with recursive=True
    before = _snapshot(folder)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        df = cohort(folder, detector=det, spacing=0.1, progress=False)
    assert not leaked, [str(w.message) for w in leaked]  # captured into rows, not issued
    assert list(df["image"]) == ["broken.jpg", "img00.png", "img01.png", "img02.png"]
    assert list(df.columns) == list(row_columns("ceph")[0])
    ok, bad = df[df["status"] == "ok"], df[df["status"] == "error"].iloc[0]
    assert len(ok) == 3 and ok["error"].isna().all() and ok["anb_deg"].notna().all()
    assert ok["warnings"].str.contains("low confidence").all() and (ok["n_warnings"] >= 1).all()
    assert bad["error"].startswith("ImageReadError: broken.jpg:") and "\n" not in bad["error"]
    assert bad["kind"] == "ceph" and bad["pseudonym"] is pd.NA and np.isnan(bad["anb_deg"])
    assert np.isnan(bad["mean_confidence"]) and bad["model"] is pd.NA and bad["height_px"] is pd.NA
    assert _snapshot(folder) == before  # inputs untouched

    deep = cohort(folder, detector=det, spacing=0.1, progress=False, recursive=True)
    assert list(deep["image"]) == ["broken.jpg", "img00.png", "img01.png", "img02.png", "sub/img00.png"]
    assert (
        deep.set_index("image").loc["sub/img00.png", "pseudonym"]
        != deep.set_index("image").loc["img00.png", "pseudonym"]
    )
    assert _snapshot(folder) == before


def test_list_images_takes_suffixless_and_uid_named_files(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.dcm", "IM0001", "1.2.840.7", "x.csv", "DICOMDIR", ".a.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["1.2.840.7", "IM0001", "a.dcm", "b.JPG"]


def test_unexpected_exception_of_one_image_is_an_error_row(tmp_path: Path, det: Any) -> None:
    paths = _folder(tmp_path / "in", 3)
    counting = det.predict

    def flaky(image: Any, **kw: Any) -> Any:
        if image.name == "img01.png":
            raise RuntimeError("out of cheese")
        return counting(image, **kw)

    det.predict = flaky
    df = cohort([str(p) for p in reversed(paths)], detector=det, progress=False)  # explicit paths, input order
    assert list(df["image"]) == ["img02.png", "img01.png", "img00.png"]
    assert list(df["status"]) == ["ok", "error", "ok"]
    assert df.loc[1, "error"] == "RuntimeError: out of cheese"
    row = analyze_row(paths[1], "ceph", det)
    assert row["status"] == "error" and set(row) == set(row_columns("ceph")[0])


def test_arguments_are_checked_before_any_work(tmp_path: Path, det: Any, tiny_model_dir: Path) -> None:
    _folder(tmp_path / "in", 1)
    bad = InvalidArgumentError
    for engine in ("dask", "Local"):
        with pytest.raises(bad, match="engine must be one of 'local', 'ray'"):
            cohort(tmp_path / "in", detector=det, engine=engine, workers=2)
    with pytest.raises(bad, match="workers must be at least 1"):
        cohort(tmp_path / "in", detector=det, workers=0)
    with pytest.raises(bad, match="address is an option of engine='ray'"):
        cohort(tmp_path / "in", detector=det, address="ray://x:1")
    with pytest.raises(bad, match=r"out must end in \.csv or \.parquet, got .*o\.xlsx"):
        cohort(tmp_path / "in", detector=det, out=tmp_path / "o.xlsx")
    with pytest.raises(bad, match="different files"):
        cohort(tmp_path / "in", detector=det, out=tmp_path / "o.csv", landmarks_out=tmp_path / "o.csv")
    with pytest.raises(bad, match="spine detector"):
        cohort(tmp_path / "in", "spine", detector=det)
    with pytest.raises(bad, match="kind must be one of ceph, spine; got 'knee'"):
        cohort(tmp_path / "in", "knee", detector=det)
    with pytest.raises(bad, match="detector or model, not both"):
        cohort(tmp_path / "in", detector=det, model=tiny_model_dir)
    with pytest.raises(cephspine.SpacingError):
        cohort(tmp_path / "in", detector=det, spacing=-1)
    with pytest.raises(InputNotFoundError, match="missing: no such folder or file"):
        cohort(tmp_path / "missing", detector=det)
    with pytest.raises(InputNotFoundError, match="nofolder"):
        cohort("nofolder/", detector=det)
    a, b = _png(tmp_path / "x" / "s.png", 1), _png(tmp_path / "y" / "s.png", 2)
    with pytest.raises(bad, match="two images named 's.png'"):
        cohort([a, b], detector=det)
    assert det.calls == [] and not (tmp_path / "o.csv").exists()
    assert len(cohort([a, a], detector=det, progress=False)) == 1  # the same file twice: once


def test_progress_bar_on_stderr_only_when_asked(tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    _folder(tmp_path / "in", 2)
    for progress in (True, False):
        err = Terminal()
        monkeypatch.setattr(sys, "stderr", err)
        cohort(tmp_path / "in", detector=det, progress=progress)
        assert ("cohort ceph" in err.getvalue() and "2/2" in err.getvalue()) is progress


# ---------------------------------------------------------------------------- files
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_outputs_hold_the_returned_table_and_landmarks(tmp_path: Path, det: Any, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    _folder(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out, lm = tmp_path / f"rows.{fmt}", tmp_path / f"landmarks.{fmt}"
    df = cohort(tmp_path / "in", detector=det, out=out, landmarks_out=lm, spacing=0.1, progress=False)
    back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(back.columns) == list(df.columns) and len(back) == 3
    pd.testing.assert_frame_equal(
        back.set_index("image").sort_index()[["anb_deg", "mw_mm", "height_px"]],
        df.set_index("image").sort_index()[["anb_deg", "mw_mm", "height_px"]],
        check_dtype=False,
        check_index_type=False,
    )
    assert back.set_index("image").loc["broken.png", "status"] == "error"
    marks = pd.read_csv(lm) if fmt == "csv" else pd.read_parquet(lm)
    assert list(marks.columns) == list(landmark_columns("ceph")[0])
    assert marks.groupby("image").size().to_dict() == {"img00.png": N_LANDMARKS, "img01.png": N_LANDMARKS}
    assert marks["x_mm"].notna().all()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no sidecar or temp left
    memory = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False)
    pd.testing.assert_frame_equal(df, memory)


def test_missing_pyarrow_names_the_extra(tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _folder(tmp_path / "in", 1)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'cephspine\[parquet\]'"):
        cohort(tmp_path / "in", detector=det, out=tmp_path / "o.parquet")
    assert det.calls == []


def test_ray_engine_without_ray_names_the_extra(tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _folder(tmp_path / "in", 1)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'cephspine\[ray\]'"):
        cohort(tmp_path / "in", detector=det, engine="ray", out=tmp_path / "o.csv")
    assert det.calls == [] and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_resume_processes_only_new_images(tmp_path: Path, det: Any, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    folder, out, lm = tmp_path / "in", tmp_path / f"o.{fmt}", tmp_path / f"lm.{fmt}"
    _folder(folder, 3)
    (folder / "bad.png").write_bytes(b"garbage")
    first = cohort(folder, detector=det, out=out, landmarks_out=lm, progress=False)
    assert len(first) == 4 and len(det.calls) == 3  # bad.png fails before predicting
    det.calls.clear()
    _folder(folder, 2, start=3)
    df = cohort(folder, detector=det, out=out, landmarks_out=lm, progress=False)
    assert sorted(det.calls) == ["img03.png", "img04.png"]  # the error row is a result: not retried
    expected = ["bad.png"] + [f"img{i:02d}.png" for i in range(5)]
    assert list(df["image"]) == expected
    back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert sorted(back["image"]) == expected
    marks = pd.read_csv(lm) if fmt == "csv" else pd.read_parquet(lm)
    assert (marks.groupby("image").size() == N_LANDMARKS).all() and marks["image"].nunique() == 5
    det.calls.clear()
    again = cohort(folder, detector=det, out=out, landmarks_out=lm, progress=False)
    assert det.calls == [] and list(again["image"]) == expected
    pd.testing.assert_frame_equal(again, df)


def test_resume_with_another_identifiers_setting_or_other_columns_is_refused(tmp_path: Path, det: Any) -> None:
    _folder(tmp_path / "in", 1)
    cohort(tmp_path / "in", detector=det, out=tmp_path / "o.csv", progress=False)
    with pytest.raises(CohortSettingsError, match="include_identifiers: False → True"):
        cohort(tmp_path / "in", detector=det, out=tmp_path / "o.csv", include_identifiers=True)
    # the settings record agrees but the columns differ (a table from another version)
    cols, text = row_columns("ceph")
    (tmp_path / "o.csv").write_text(",".join(cols[:-1]) + "\n" + ",".join(["a.png"] + [""] * (len(cols) - 2)) + "\n")
    with pytest.raises(CohortSettingsError, match="other columns"):
        cohort(tmp_path / "in", detector=det, out=tmp_path / "o.csv")


def test_truncated_last_line_is_repaired(tmp_path: Path, det: Any) -> None:
    folder, out, lm = tmp_path / "in", tmp_path / "o.csv", tmp_path / "lm.csv"
    _folder(folder, 3)
    cohort(folder, detector=det, out=out, landmarks_out=lm, progress=False)
    rows = _lines(out)
    # a kill while writing img02's row: half a line, no newline
    text = out.read_text()
    out.write_text(text[: text.rindex("img02.png")] + "img02.png,3f2a,ce")
    # ... after its landmarks were partly written: 7 complete lines and a cut one
    lm_lines = lm.read_text().splitlines(keepends=True)
    block = [line for line in lm_lines if line.startswith("img02.png,")]
    kept = [line for line in lm_lines if not line.startswith("img02.png,")]
    lm.write_text("".join(kept + block[:7]) + block[7][:12])
    det.calls.clear()
    df = cohort(folder, detector=det, out=out, landmarks_out=lm, progress=False)
    assert det.calls == ["img02.png"]
    assert _lines(out) == rows  # the same lines as an uninterrupted run leaves
    assert list(df["image"]) == ["img00.png", "img01.png", "img02.png"]
    marks = _lines(lm)
    assert all(len(r) == len(marks[0]) for r in marks)
    assert pd.read_csv(lm).groupby("image").size().to_dict() == dict.fromkeys(df["image"], N_LANDMARKS)

    # a header cut short: the table starts again
    out.write_text("image,pseud")
    det.calls.clear()
    cohort(folder, detector=det, out=out, progress=False)
    assert len(det.calls) == 3 and len(pd.read_csv(out)) == 3


def test_one_writer_per_file(tmp_path: Path) -> None:
    cols, text = row_columns("ceph")
    with CohortWriter(tmp_path / "o.csv", cols, text) as first:
        first.write({"image": "a.png", "kind": "ceph", "status": "error", "error": "x"})
        with pytest.raises(OutputError, match="in use by another cohort run"):
            CohortWriter(tmp_path / "o.csv", cols, text)
    with CohortWriter(tmp_path / "o.csv", cols, text) as again:
        assert again.done() == {"a.png"} and again.status("a.png") == "error"


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    import torch
    torch.set_num_threads(1)
    import cephspine
    det = cephspine.Detector.from_pretrained(sys.argv[1], device="cpu")
    predict = det.predict
    def slow(image, **kw):
        time.sleep(0.4)
        return predict(image, **kw)
    det.predict = slow
    cephspine.cohort(sys.argv[2], out=sys.argv[3], landmarks_out=sys.argv[4], detector=det, progress=False)
    print("finished")
    """
)


def _done_on_disk(out: Path) -> int:
    if out.suffix == ".csv":
        return max(0, out.read_bytes().count(b"\n") - 1) if out.exists() else 0  # complete lines
    journal = out.with_name(f".{out.name}.parts") / "rows.jsonl"  # a header, then a line per image
    return max(0, journal.read_bytes().count(b"\n") - 1) if journal.exists() else 0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_run_killed_part_way_resumes_to_every_image_once(
    tmp_path: Path, det: Any, tiny_model_dir: Path, fmt: str
) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    folder, out, lm = tmp_path / "in", tmp_path / f"o.{fmt}", tmp_path / f"lm.{fmt}"
    _folder(folder, 8)
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tiny_model_dir), str(folder), str(out), str(lm)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while _done_on_disk(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    assert b"finished" not in stdout
    written = _done_on_disk(out)
    assert 2 <= written < 8

    df = cohort(folder, detector=det, out=out, landmarks_out=lm, progress=False)
    assert len(det.calls) == 8 - written  # only the images without a row
    names = [f"img{i:02d}.png" for i in range(8)]
    assert list(df["image"]) == names and (df["status"] == "ok").all()
    back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert sorted(back["image"]) == names and back["anb_deg"].notna().all()
    marks = pd.read_csv(lm) if fmt == "csv" else pd.read_parquet(lm)
    assert marks.groupby("image").size().to_dict() == dict.fromkeys(names, N_LANDMARKS)
    if fmt == "csv":
        for path in (out, lm):
            lines = _lines(path)
            assert all(len(r) == len(lines[0]) for r in lines) and path.read_bytes().endswith(b"\n")
    else:
        assert not out.with_name(f".{out.name}.parts").exists()


# ---------------------------------------------------------------------------- privacy
def _dicom(path: Path, pixels: bytes | None = None) -> Path:
    return write_dicom(path, pixels, PatientName="Doe^Jane", PatientID="PID-4711", PatientBirthDate="19700101")


SECRETS = ("Doe", "Jane", "PID-4711", "19700101")


def test_dicom_identifiers_appear_in_no_output_by_default(
    tmp_path: Path, det: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _dicom(folder / "scan.dcm")
    _dicom(folder / "echo.dcm")
    _dicom(folder / "short.dcm", pixels=b"\x00\x01" * 100)  # pixel data cut short: an error row
    _png(folder / "plain.png", 1)
    counting = det.predict

    def chatty(image: Any, **kw: Any) -> Any:  # a library that echoes metadata into its messages
        if image.name == "echo.dcm":
            raise RuntimeError("header of patient Jane Doe (PID-4711) unreadable")
        if image.name == "scan.dcm":
            warnings.warn("odd value PID-4711 in DICOM header", UserWarning, stacklevel=1)
        return counting(image, **kw)

    det.predict = chatty
    before = _snapshot(folder)
    caplog.set_level(logging.DEBUG)
    out, lm = tmp_path / "o.csv", tmp_path / "lm.csv"
    df = cohort(folder, detector=det, out=out, landmarks_out=lm, progress=True)
    assert list(df["image"]) == ["echo.dcm", "plain.png", "scan.dcm", "short.dcm"]
    assert list(df["status"]) == ["error", "ok", "ok", "error"]
    row = df.set_index("image").loc["scan.dcm"]
    assert row["spacing_source"] and row["spacing_row_mm"] == pytest.approx(0.1)
    assert "odd value <redacted> in DICOM header" in row["warnings"] and "short.dcm" in df.loc[3, "error"]
    captured = capsys.readouterr()
    texts = {
        "frame": df.to_csv(),
        "out": out.read_text(),
        "landmarks": lm.read_text(),
        "stdout": captured.out,
        "stderr": captured.err,
        "log": "\n".join(r.getMessage() for r in caplog.records),
    }
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, (where, secret)
    assert not any(c.startswith("dicom_") for c in df.columns)
    assert df.loc[0, "error"] == "RuntimeError: header of patient <redacted> <redacted> (<redacted>) unreadable"

    det.predict = counting
    with_ids = cohort(folder, detector=det, out=tmp_path / "ids.csv", include_identifiers=True, progress=False)
    assert list(with_ids.columns) == list(row_columns("ceph", include_identifiers=True)[0])
    scan = with_ids.set_index("image").loc["scan.dcm"]
    assert scan["dicom_PatientName"] == "Doe^Jane" and scan["dicom_PatientID"] == "PID-4711"
    assert with_ids.set_index("image").loc["plain.png", "dicom_PatientID"] is pd.NA
    assert "PID-4711" in (tmp_path / "ids.csv").read_text()
    assert _snapshot(folder) == before


# ---------------------------------------------------------------------------- API, example
def test_exported_and_callable_whatever_was_imported_first() -> None:
    code = (
        "import cephspine.cohorts, cephspine.reports, cephspine; "
        "from cephspine.cohorts import cohort; "
        "print(callable(cephspine.cohort), callable(cephspine.report), 'cohort' in cephspine.__all__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "True", "True"]
    assert callable(cephspine.cohort)


def test_example_script_prints_the_group_bys(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "cohort_analysis.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "4 images: 3 ok, 1 error(s)" in run.stdout
    assert "Images per ANB class" in run.stdout and "Mean measures per ANB class" in run.stdout
    assert "anb_deg" in run.stdout and "Class" in run.stdout
    assert "broken.jpg" in run.stdout and "ImageReadError" in run.stdout
