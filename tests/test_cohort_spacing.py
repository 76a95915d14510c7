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
from cephspine.errors import CohortInterrupted, CohortSettingsError, InputNotFoundError, InvalidArgumentError
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


def test_an_interrupted_run_says_how_far_it_got(tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    films = _films(tmp_path / "films", 4)
    original = cohorts.analyze_image

    def stop_at_the_third(path: Path, *args: Any) -> Any:
        if path.name == "f2.png":
            raise KeyboardInterrupt
        return original(path, *args)

    monkeypatch.setattr(cohorts, "analyze_image", stop_at_the_third)
    with pytest.raises(CohortInterrupted) as info:
        cohort(films, detector=det, out=tmp_path / "r.csv", progress=False, workers=1)
    assert isinstance(info.value, KeyboardInterrupt) and not isinstance(info.value, Exception)
    assert (info.value.done, info.value.analysed, info.value.images) == (2, 2, 4)
    assert str(info.value) == "cohort interrupted: 2 of 4 image(s) done, in " + str(tmp_path / "r.csv") + (
        "; running the same call again resumes"
    )
