"""Cohort tables: missing values and dtypes that agree between memory, CSV and Parquet, and
the settings record that keeps a resumed table from mixing rows made with other settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cephspine
from cephspine.cohorts import cohort, read_settings, row_schema, settings_path
from cephspine.errors import CohortSettingsError


def _folder(folder: Path, n: int, broken: bool = True) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (300, 240), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    if broken:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- dtypes
def test_missing_values_and_dtypes_agree_in_memory_csv_and_parquet(tmp_path: Path, det: Any) -> None:
    pytest.importorskip("pyarrow")
    names = _folder(tmp_path / "in", 3)
    memory = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False)
    schema = row_schema("ceph")
    assert memory["anb_class"].dtype == "string" and memory["image"].dtype == "string"
    for c in ("height_px", "width_px", "n_warnings", "n_low_confidence", "anb_type", "mw_type"):
        assert memory[c].dtype == "Int64", c
    assert memory["anb_deg"].dtype == np.float64 and memory["spacing_row_mm"].dtype == np.float64
    assert {c for c in memory.columns if memory[c].dtype == "Int64"} == set(schema.integer)

    bad = memory.set_index("image").loc["broken.jpg"]
    for c in ("anb_class", "pseudonym", "model", "spacing_source", "warnings", "height_px", "anb_type"):
        assert bad[c] is pd.NA, c
    assert np.isnan(bad["anb_deg"])
    ok = memory[memory["status"] == "ok"]
    assert ok["error"].isna().all() and (ok["height_px"] == 300).all()
    groups = memory.groupby("anb_class").size()  # the error row is no group of its own
    assert "" not in groups.index and groups.sum() == 3

    for fmt in ("csv", "parquet"):
        out, lm = tmp_path / f"o.{fmt}", tmp_path / f"lm.{fmt}"
        written = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False, out=out, landmarks_out=lm)
        pd.testing.assert_frame_equal(written, memory)  # dtypes included
        resumed = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False, out=out)
        pd.testing.assert_frame_equal(resumed, memory)
        marks = pd.read_csv(lm) if fmt == "csv" else pd.read_parquet(lm)
        assert marks["pseudonym"].notna().all() and marks["image"].nunique() == 3
    assert list(memory["image"]) == names

    # Parquet files carry the nullable dtypes themselves
    raw = pd.read_parquet(tmp_path / "o.parquet").set_index("image")
    assert raw["height_px"].dtype == "Int64" and raw.loc["broken.jpg", "height_px"] is pd.NA
    assert pd.api.types.is_string_dtype(raw["anb_class"]) and pd.isna(raw.loc["broken.jpg", "anb_class"])
    assert raw.loc["img00.png", "height_px"] == 300
    # a CSV read with pandas' defaults: missing cells are NaN, never an empty string
    plain = pd.read_csv(tmp_path / "o.csv").set_index("image")
    assert pd.isna(plain.loc["broken.jpg", "anb_class"]) and "" not in set(plain["anb_class"].dropna())
    assert (tmp_path / "o.csv").read_text().splitlines()[1].startswith("broken.jpg,,ceph,error,")


# ---------------------------------------------------------------------------- settings
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_resume_with_other_spacing_is_refused_and_names_the_change(tmp_path: Path, det: Any, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    _folder(tmp_path / "in", 2)
    out = tmp_path / f"r.{fmt}"
    first = cohort(tmp_path / "in", detector=det, out=out, progress=False)
    assert first["mw_mm"].isna().all()
    recorded = read_settings(out)
    assert recorded is not None and recorded["spacing"] is None and recorded["model"] == "tiny"
    assert json.loads(settings_path(out).read_text())["table"] == out.name
    before = out.read_bytes()
    det.calls.clear()
    (tmp_path / "in" / "img99.png").write_bytes((tmp_path / "in" / "img00.png").read_bytes())
    with pytest.raises(CohortSettingsError) as err:
        cohort(tmp_path / "in", detector=det, out=out, spacing=0.1, progress=False)
    message = str(err.value)
    assert message.startswith(f"{out}: its rows were made with other settings than this run: ")
    assert "spacing: each file's own → 0.1 mm (this run)" in message
    assert f"delete {out.name} and {out.name}.settings.json, or write to another file" in message
    assert out.read_bytes() == before and det.calls == []  # nothing analysed, nothing written
    assert read_settings(out) == recorded

    again = cohort(tmp_path / "in", detector=det, out=out, progress=False)  # the same settings: resumes
    assert det.calls == ["img99.png"] and len(again) == 4


def test_resume_with_another_model_or_option_is_refused(tmp_path: Path, det: Any, make_model_dir: Any) -> None:
    _folder(tmp_path / "in", 1, broken=False)
    out, lm = tmp_path / "r.csv", tmp_path / "lm.csv"
    cohort(tmp_path / "in", detector=det, out=out, landmarks_out=lm, progress=False)
    newer = make_model_dir(tmp_path / "newer", version="0.0.2")
    with pytest.raises(CohortSettingsError, match="model version: '0.0.1' → '0.0.2' \\(this run\\)"):
        cohort(tmp_path / "in", model=newer, device="cpu", out=out, progress=False)
    never = cephspine.Detector.from_pretrained(det.directory, device="cpu", register="never")
    with pytest.raises(CohortSettingsError, match="registration mode \\(register\\): 'auto' → 'never'"):
        cohort(tmp_path / "in", detector=never, out=out, progress=False)
    with pytest.raises(CohortSettingsError, match="kind: 'ceph' → 'spine'"):
        cohort(tmp_path / "in", "spine", model="spine", device="cpu", out=out, progress=False)
    # the landmark table is checked as well, whatever the cohort table says
    with pytest.raises(CohortSettingsError, match=f"{lm}: its rows were made with other settings.*spacing"):
        cohort(tmp_path / "in", detector=det, spacing=0.1, out=tmp_path / "new.csv", landmarks_out=lm, progress=False)


def test_table_without_settings_record_is_refused_and_a_new_one_starts_afresh(tmp_path: Path, det: Any) -> None:
    _folder(tmp_path / "in", 1, broken=False)
    out = tmp_path / "r.csv"
    cohort(tmp_path / "in", detector=det, out=out, progress=False)
    settings_path(out).unlink()  # e.g. a table written by an older version
    with pytest.raises(CohortSettingsError, match="has rows but no record of the settings"):
        cohort(tmp_path / "in", detector=det, out=out, progress=False)
    out.unlink()  # starting over: the new run records its own settings
    df = cohort(tmp_path / "in", detector=det, out=out, spacing=0.1, progress=False)
    assert (df["status"] == "ok").all() and read_settings(out)["spacing"] == [0.1, 0.1]  # type: ignore[index]

    # a table holding no row yet (a run stopped before its first image) takes any settings
    empty = tmp_path / "empty"
    empty.mkdir()
    cohort([], detector=det, out=tmp_path / "e.csv", progress=False)
    shutil.copy(tmp_path / "in" / "img00.png", empty / "img00.png")
    assert len(cohort(empty, detector=det, out=tmp_path / "e.csv", spacing=0.2, progress=False)) == 1
    assert read_settings(tmp_path / "e.csv")["spacing"] == [0.2, 0.2]  # type: ignore[index]


def test_same_card_with_other_weights_is_refused(tmp_path: Path, make_model_dir: Any) -> None:
    """Two trainings that both call themselves 'tiny' 0.0.1 differ in their weights."""
    _folder(tmp_path / "in", 1, broken=False)
    out = tmp_path / "r.csv"
    first = make_model_dir(tmp_path / "a", seed=0)
    other = make_model_dir(tmp_path / "b", seed=1)
    cohort(tmp_path / "in", model=first, device="cpu", out=out, progress=False)
    recorded = read_settings(out)
    assert recorded is not None and len(recorded["weights"]) == 16
    with pytest.raises(CohortSettingsError, match=r"model weights \(model.safetensors\): '[0-9a-f]{16}' → "):
        cohort(tmp_path / "in", model=other, device="cpu", out=out, progress=False)
    same = shutil.copytree(first, tmp_path / "copy")  # the same weights elsewhere: resumes
    assert len(cohort(tmp_path / "in", model=same, device="cpu", out=out, progress=False)) == 1


def test_equal_settings_written_differently_resume(tmp_path: Path, det: Any) -> None:
    _folder(tmp_path / "in", 1, broken=False)
    out = tmp_path / "r.csv"
    cohort(tmp_path / "in", detector=det, out=out, spacing=0.1, progress=False)
    for spacing in (np.float32(0.1), (0.1, 0.1), [0.1, 0.1]):
        assert len(cohort(tmp_path / "in", detector=det, out=out, spacing=spacing, progress=False)) == 1
    # a record written before a setting existed does not refuse this run over that setting
    record = json.loads(settings_path(out).read_text())
    del record["settings"]["weights"]
    settings_path(out).write_text(json.dumps(record))
    assert len(cohort(tmp_path / "in", detector=det, out=out, spacing=0.1, progress=False)) == 1


def test_spine_decoding_options_do_not_refuse_a_ceph_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    _folder(tmp_path / "in", 1, broken=False)
    out = tmp_path / "r.csv"
    plain = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    cohort(tmp_path / "in", detector=plain, out=out, progress=False)
    assert read_settings(out)["end_prior"] is None  # type: ignore[index]
    other = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu", end_prior=False, refine_flip=False)
    assert len(cohort(tmp_path / "in", detector=other, out=out, progress=False)) == 1


def test_out_of_memory_is_not_the_image_s_error(tmp_path: Path, det: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running out of memory leaves the image without a row (a resume analyses it), never an
    error row; the other images are kept."""
    import cephspine.cohorts.image as image_mod

    names = _folder(tmp_path / "in", 2, broken=False)
    out = tmp_path / "r.csv"
    real = image_mod.analyze

    def flaky(path: Any, *a: Any, **kw: Any) -> Any:
        if Path(path).name == names[1]:
            raise MemoryError
        return real(path, *a, **kw)

    monkeypatch.setattr(image_mod, "analyze", flaky)
    with pytest.warns(
        cephspine.CohortIncompleteWarning, match=f"1 image\\(s\\) not analysed: {names[1]}: .*out of memory"
    ):
        df = cohort(tmp_path / "in", detector=det, out=out, progress=False)
    assert list(df["image"]) == names[:1] and (df["status"] == "ok").all()
    monkeypatch.setattr(image_mod, "analyze", real)
    again = cohort(tmp_path / "in", detector=det, out=out, progress=False)
    assert list(again["image"]) == names and (again["status"] == "ok").all()


def test_settings_of_a_model_only_the_workers_can_read(tmp_path: Path) -> None:
    from cephspine.cohorts.settings import cohort_settings

    where = str(tmp_path / "on-the-workers-only")
    s = cohort_settings("ceph", False, None, (where, {"register": "never"}))
    assert s["model"] == where and s["model_version"] is None and s["weights"] is None
    assert s["register"] == "never" and s["spacing"] is None
