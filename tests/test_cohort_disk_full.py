"""A full disk while a cohort writes its tables: an ``OutputError`` naming the file, no
partial line or temporary file left behind, a resume that finishes, and a Parquet journal
about as compact as the CSV table."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import cephspine._atomic as atomic
from cephspine.cli import app
from cephspine.cohorts import CohortWriter, analyze_image, cohort, landmark_schema, row_schema
from cephspine.errors import OutputError

N_LANDMARKS = 19
ENOSPC = "No space left on device"


def _folder(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (300, 240), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    return [f"img{i:02d}.png" for i in range(n)]


def _full(*_: Any) -> Any:
    raise OSError(errno.ENOSPC, ENOSPC)


def _replace_failing_for(target: Path) -> Callable[[Any, Any], None]:
    """``os.replace`` that fails with ENOSPC for a move onto ``target``."""
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst) == target:
            _full()
        real(src, dst)

    return replace


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_full_disk_while_appending_cuts_the_partial_line_and_names_the_file(
    tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _folder(tmp_path / "in", 3)
    out, lm = tmp_path / "rows.csv", tmp_path / "landmarks.csv"
    real = os.write
    state = {"partial": False}

    def fills_up(fd: int, data: Any) -> int:
        if state["partial"]:
            return _full()
        if b"img02.png" in bytes(data):  # the disk fills up in the middle of img02's landmarks
            state["partial"] = True
            return real(fd, bytes(data)[:7])
        return real(fd, data)

    with monkeypatch.context() as m:
        m.setattr(os, "write", fills_up)
        with pytest.raises(OutputError) as info:
            cohort(tmp_path / "in", detector=det, out=out, landmarks_out=lm, workers=1, progress=False)
    assert str(info.value) == f"cannot write the cohort table to {lm}: {ENOSPC}"
    assert info.value.errno == errno.ENOSPC and state["partial"]
    text = lm.read_text()
    assert text.endswith("\n") and "img02.png" not in text and text.count("\n") == 1 + 2 * N_LANDMARKS
    assert pd.read_csv(out)["image"].tolist() == names[:2]
    assert _hidden(tmp_path) == []

    det.calls.clear()
    df = cohort(tmp_path / "in", detector=det, out=out, landmarks_out=lm, progress=False)
    assert det.calls == ["img02.png"] and df["image"].tolist() == names
    assert pd.read_csv(lm).groupby("image").size().to_dict() == dict.fromkeys(names, N_LANDMARKS)


def test_full_disk_while_consolidating_parquet_keeps_the_journal(
    tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyarrow")
    names = _folder(tmp_path / "in", 3)
    out = tmp_path / "rows.parquet"
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "replace", _replace_failing_for(out))
        with pytest.raises(OutputError, match=f"^cannot write the cohort table to {out}: {ENOSPC}$"):
            cohort(tmp_path / "in", detector=det, out=out, progress=False)
    assert not out.exists() and _hidden(tmp_path) == [".rows.parquet.parts"]  # no temporary table left
    assert (tmp_path / ".rows.parquet.parts" / "rows.jsonl").is_file()

    det.calls.clear()
    df = cohort(tmp_path / "in", detector=det, out=out, progress=False)
    assert det.calls == [] and df["image"].tolist() == names
    assert sorted(pd.read_parquet(out)["image"]) == names and _hidden(tmp_path) == []


def test_full_disk_while_repairing_or_recording_settings_leaves_no_temporary(
    tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _folder(tmp_path / "in", 2)
    out = tmp_path / "o.csv"
    cohort(tmp_path / "in", detector=det, out=out, progress=False)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines + lines[-1:]))  # a duplicate line: the table is rewritten on opening
    before = out.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "replace", _replace_failing_for(out))
        with pytest.raises(OutputError, match=f"^cannot write the cohort table to {out}: {ENOSPC}$"):
            cohort(tmp_path / "in", detector=det, out=out, progress=False)
    assert out.read_bytes() == before and _hidden(tmp_path) == []

    fresh = tmp_path / "fresh.csv"
    record = tmp_path / "fresh.csv.settings.json"
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "replace", _replace_failing_for(record))
        with pytest.raises(OutputError, match=f"^cannot write the cohort settings record to {record}: {ENOSPC}$"):
            cohort(tmp_path / "in", detector=det, out=fresh, progress=False)
    assert not record.exists() and _hidden(tmp_path) == []


def test_temporaries_left_by_a_killed_run_are_removed(tmp_path: Path) -> None:
    cols, text = row_schema("ceph").columns, row_schema("ceph").text
    stale = [
        ".o.csv.tmp",
        ".o.csv.0123456789ab.tmp",
        ".o.csv.settings.json.tmp",
        ".o.csv.settings.json.a1b2c3d4e5f6.tmp",
    ]
    others = [".o.csv.lm.csv.0123456789ab.tmp", ".other.csv.tmp", "o.csv.tmp"]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"x" * 100)
    with CohortWriter(tmp_path / "o.csv", cols, text):
        pass
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == sorted(others)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def test_parquet_journal_is_about_as_compact_as_the_csv_table(tmp_path: Path, det: Any) -> None:
    pytest.importorskip("pyarrow")
    _folder(tmp_path / "in", 4)
    results = [analyze_image(p, "ceph", det, spacing=0.1) for p in sorted((tmp_path / "in").iterdir())]
    for name, schema, per in (("rows", row_schema("ceph"), 1), ("landmarks", landmark_schema("ceph"), N_LANDMARKS)):
        sizes = {}
        for fmt in ("csv", "parquet"):
            w = CohortWriter(
                tmp_path / f"{name}.{fmt}", schema.columns, schema.text, integer_columns=schema.integer,
                rows_per_image=per,
            )  # fmt: skip
            header = _size(w.path) if fmt == "csv" else _size(w.parts_dir)
            for r in results:
                w.write_rows([r.row] if per == 1 else r.landmarks)
            sizes[fmt] = (_size(w.path) if fmt == "csv" else _size(w.parts_dir)) - header
            w.close()
        assert sizes["parquet"] <= 1.5 * sizes["csv"], (name, sizes)  # one Parquet file per image: ~25 times more
        back = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert len(back) == len(results) * per


def test_parts_of_an_earlier_version_are_still_consolidated(tmp_path: Path, det: Any) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    names = _folder(tmp_path / "in", 2)
    out = tmp_path / "o.parquet"
    cohort(tmp_path / "in", detector=det, out=out, progress=False)
    old = pd.read_parquet(out)
    out.unlink()  # as an interrupted earlier run left it: img00's part, not consolidated
    parts = tmp_path / ".o.parquet.parts"
    parts.mkdir()
    pq.write_table(pa.Table.from_pandas(old.iloc[:1], preserve_index=False), parts / "part-00000000.parquet")
    det.calls.clear()
    df = cohort(tmp_path / "in", detector=det, out=out, progress=False)
    assert det.calls == ["img01.png"] and df["image"].tolist() == names
    assert sorted(pd.read_parquet(out)["image"]) == names and not parts.exists()


def test_cli_names_the_file_when_the_disk_is_full(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _folder(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "write", _full)
    result = CliRunner().invoke(app, ["cohort", "in", "-m", str(tiny_model_dir), "-o", "r.csv", "--no-progress"])
    assert result.exit_code == 1
    assert result.output == f"error: cannot write the cohort table to r.csv: {ENOSPC}\n"


def _limit_file_size(limit: int) -> Callable[[], None]:
    def limit_it() -> None:  # a write past ``limit`` bytes fails with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_it


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs file size limits (POSIX)")
def test_cli_out_of_room_for_the_table_names_it_and_resumes(tmp_path: Path, tiny_model_dir: Path) -> None:
    names = _folder(tmp_path / "in", 6)
    args = [sys.executable, "-m", "cephspine", "cohort", "in", "-m", str(tiny_model_dir), "-o", "r.csv"]
    args += ["--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    limit = 5000  # the settings record, the header and a few rows
    run = subprocess.run(
        args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, preexec_fn=_limit_file_size(limit)
    )
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == "error: cannot write the cohort table to r.csv: File too large\n"
    table = (tmp_path / "r.csv").read_bytes()
    assert table.endswith(b"\n") and len(table) <= limit  # complete lines only
    written = pd.read_csv(tmp_path / "r.csv")["image"].tolist()
    assert 1 <= len(written) < len(names) and written == names[: len(written)]
    assert _hidden(tmp_path) == []

    again = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(pd.read_csv(tmp_path / "r.csv")["image"]) == names
