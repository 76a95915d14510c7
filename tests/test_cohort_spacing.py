"""``cohort()``: per-image pixel spacing (a mapping or a CSV file), a folder without
images, and an interrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import cephspine.cohorts as cohorts
from cephspine.cohorts import cohort, read_settings, read_spacing_table
from cephspine.errors import (
    CohortInterrupted,
    CohortSettingsError,
    InputNotFoundError,
    InvalidArgumentError,
    SpacingWarning,
)
from cephspine.radiograph import Spacing


def _films(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (300, 240), dtype=np.uint8)).save(
            folder / f"f{i}.png"
        )
    return folder


def test_a_spacing_table_reads_one_spacing_per_image(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("image,spacing_mm\na.png,0.1\nb.png,\n")
    assert read_spacing_table(tmp_path / "s.csv") == {"a.png": Spacing(0.1, 0.1)}
    # an annotation CSV: one row per landmark, the spacing repeated (row_mm, col_mm here)
    (tmp_path / "ann.csv").write_text(
        "image,landmark,x_px,y_px,row_mm,col_mm\na.png,s,1,2,0.1,0.2\na.png,n,3,4,0.1,0.2\n"
    )
    assert read_spacing_table(tmp_path / "ann.csv") == {"a.png": Spacing(0.1, 0.2)}
    (tmp_path / "two.csv").write_text("image,spacing_mm\na.png,0.1\na.png,0.2\n")
    with pytest.raises(InvalidArgumentError, match="two.csv: image a.png has two spacings"):
        read_spacing_table(tmp_path / "two.csv")
    (tmp_path / "cols.csv").write_text("file,mm\na.png,0.1\n")
    with pytest.raises(InvalidArgumentError, match="needs the columns image and spacing_mm"):
        read_spacing_table(tmp_path / "cols.csv")


def test_cohort_takes_a_spacing_per_image(tmp_path: Path, det: Any) -> None:
    films = _films(tmp_path / "films", 3)
    out = tmp_path / "r.csv"
    df = cohort(films, detector=det, spacing={"f0.png": 0.1, "f1.png": (0.1, 0.2)}, out=out, progress=False)
    sp = df.set_index("image")[["spacing_row_mm", "spacing_col_mm"]]
    assert tuple(sp.loc["f0.png"]) == (0.1, 0.1) and tuple(sp.loc["f1.png"]) == (0.1, 0.2)
    assert sp.loc["f2.png"].isna().all()  # left out: the file's own (a PNG has none)
    assert read_settings(out)["spacing"] == {"f0.png": [0.1, 0.1], "f1.png": [0.1, 0.2]}  # type: ignore[index]
    assert df.attrs["cohort"] == {"images": 3, "reused": 0, "analysed": 3, "not_analysed": 0}
    (tmp_path / "s.csv").write_text("image,spacing_mm\nf0.png,0.1\nf1.png,0.3\n")
    with pytest.raises(CohortSettingsError, match="other spacings for f1.png"):
        cohort(films, detector=det, spacing=tmp_path / "s.csv", out=out, progress=False)
    again = cohort(films, detector=det, spacing={"f0.png": 0.1, "f1.png": (0.1, 0.2)}, out=out, progress=False)
    assert again.attrs["cohort"]["reused"] == 3 and again.attrs["cohort"]["analysed"] == 0


def test_a_folder_without_images_is_an_error_and_writes_nothing(tmp_path: Path, det: Any) -> None:
    (tmp_path / "films").mkdir()
    (tmp_path / "films" / "notes.txt").write_text("x")
    with pytest.raises(InputNotFoundError, match=r"films: no image files in this folder .*\.dcm"):
        cohort(tmp_path / "films", detector=det, out=tmp_path / "r.csv", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["films"]


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the cohort's analysis of the image ``name`` raise KeyboardInterrupt (Ctrl-C)."""
    original = cohorts.analyze_image

    def stop_there(path: Path, *args: Any) -> Any:
        if path.name == name:
            raise KeyboardInterrupt
        return original(path, *args)

    monkeypatch.setattr(cohorts, "analyze_image", stop_there)


def test_an_interrupted_run_says_how_far_it_got(tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    films = _films(tmp_path / "films", 4)
    _interrupt_at(monkeypatch, "f2.png")
    with pytest.raises(CohortInterrupted) as info:
        cohort(films, detector=det, out=tmp_path / "r.csv", progress=False, workers=1)
    assert isinstance(info.value, KeyboardInterrupt) and not isinstance(info.value, Exception)
    assert (info.value.done, info.value.analysed, info.value.images) == (2, 2, 4)
    assert str(info.value) == "cohort interrupted: 2 of 4 image(s) done, in " + str(tmp_path / "r.csv") + (
        "; running the same call again resumes"
    )


def test_a_landmark_csv_of_cephspine_gives_its_spacing(tmp_path: Path) -> None:
    import warnings

    import cephspine

    films = _films(tmp_path / "films", 1)
    xy = np.random.default_rng(0).uniform(10, 190, size=(19, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = cephspine.analyze(films / "f0.png", kind="ceph", spacing=(0.1, 0.12), landmarks=xy)
    out = cephspine.export(a, tmp_path / "lm.csv", format="csv")  # spacing_row_mm, spacing_col_mm on every row
    assert read_spacing_table(out) == {"f0.png": Spacing(0.1, 0.12)}


def test_an_image_added_to_a_folder_with_a_spacing_table_is_analysed_on_resume(tmp_path: Path, det: Any) -> None:
    films = _films(tmp_path / "films", 3)
    (films / "f2.png").rename(tmp_path / "f2.png")
    table = tmp_path / "s.csv"
    table.write_text("image,spacing_mm\nf0.png,0.1\nf1.png,0.125\nf2.png,0.2\n")
    out = tmp_path / "r.csv"
    with pytest.warns(SpacingWarning, match="not in the cohort: f2.png"):
        cohort(films, detector=det, spacing=table, out=out, progress=False)
    assert read_settings(out)["spacing"] == {"f0.png": [0.1, 0.1], "f1.png": [0.125, 0.125]}  # type: ignore[index]

    (tmp_path / "f2.png").rename(films / "f2.png")
    det.calls.clear()
    df = cohort(films, detector=det, spacing=table, out=out, progress=False)
    assert det.calls == ["f2.png"] and df.attrs["cohort"]["reused"] == 2
    assert df.set_index("image").loc["f2.png", "spacing_row_mm"] == 0.2
    assert read_settings(out)["spacing"] == {  # type: ignore[index]
        "f0.png": [0.1, 0.1], "f1.png": [0.125, 0.125], "f2.png": [0.2, 0.2]
    }  # fmt: skip

    # an image that has a row made without a spacing of the table is not given one on resume
    Image.fromarray(np.zeros((300, 240), dtype=np.uint8)).save(films / "f3.png")
    cohort(films, detector=det, spacing=table, out=out, progress=False)
    table.write_text("image,spacing_mm\nf0.png,0.1\nf1.png,0.125\nf2.png,0.2\nf3.png,0.2\n")
    with pytest.raises(CohortSettingsError, match="the file's own → a spacing of the table for f3.png"):
        cohort(films, detector=det, spacing=table, out=out, progress=False)
    # another spacing for an image of the record is refused
    table.write_text("image,spacing_mm\nf0.png,0.15\nf1.png,0.125\nf2.png,0.2\n")
    det.calls.clear()
    with pytest.raises(CohortSettingsError, match=r"spacing: .* → other spacings for f0.png \(this run\)"):
        cohort(films, detector=det, spacing=table, out=out, progress=False)
    assert det.calls == []
    assert len(read_settings(out)["spacing"]) == 3  # type: ignore[index]


def test_a_table_of_an_earlier_row_format_is_not_resumed(tmp_path: Path, det: Any) -> None:
    import json

    from cephspine.cohorts import settings_path

    films = _films(tmp_path / "films", 2)
    out = tmp_path / "r.csv"
    cohort(films, detector=det, out=out, progress=False)
    record = json.loads(settings_path(out).read_text())
    assert record["settings"]["row_format"] == 2
    del record["settings"]["row_format"]  # as an earlier version wrote it
    settings_path(out).write_text(json.dumps(record))
    before = out.read_bytes()
    det.calls.clear()
    with pytest.raises(CohortSettingsError) as err:
        cohort(films, detector=det, out=out, progress=False)
    assert str(err.value) == (
        f"{out}: its rows were written by an earlier version of cephspine (row format 1; this version writes 2), "
        "so new rows could not be compared with them; write a new table: delete r.csv and r.csv.settings.json, "
        "or write to another file"
    )
    assert out.read_bytes() == before and det.calls == []


def test_an_interrupted_run_with_only_landmarks_out_says_what_was_written(
    tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    films = _films(tmp_path / "films", 4)
    _interrupt_at(monkeypatch, "f2.png")
    lm = tmp_path / "lm.csv"
    with pytest.raises(CohortInterrupted) as info:
        cohort(films, detector=det, landmarks_out=lm, progress=False, workers=1)
    assert (info.value.done, info.value.analysed, info.value.landmarks_done) == (0, 2, 2)
    assert info.value.out is None and info.value.landmarks_out == str(lm)
    assert str(info.value) == (
        f"cohort interrupted: 2 of 4 image(s) analysed; the landmarks of 2 image(s) are in {lm} (running the same "
        "call again adds the others), no row was kept (no out)"
    )


def test_an_interruption_after_a_row_is_on_disk_counts_it(
    tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import pandas as pd

    import cephspine.cohorts.storage as storage

    films = _films(tmp_path / "films", 4)
    out = tmp_path / "r.csv"
    real_fsync = os.fsync
    flushed: list[int] = []

    def ctrl_c_in_the_third_flush(fd: int) -> None:
        st = os.fstat(fd)
        if out.exists() and (st.st_dev, st.st_ino) == (out.stat().st_dev, out.stat().st_ino):
            flushed.append(fd)
            if len(flushed) == 4:  # the header, two rows, then the third row: written, not yet flushed
                raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", ctrl_c_in_the_third_flush)
    with pytest.raises(CohortInterrupted) as info:
        cohort(films, detector=det, out=out, progress=False, workers=1)
    assert len(pd.read_csv(out)) == 3
    assert (info.value.done, info.value.images) == (3, 4)
