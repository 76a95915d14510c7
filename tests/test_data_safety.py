"""Data-safety guarantees of cohorts: garbage in gives typed error rows, and memory stays
bounded however many images a cohort has."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import cephspine
import cephspine.cohorts as cohorts_module
from cephspine import errors
from cephspine.radiograph import Radiograph
from tests.conftest import no_hang

TYPED = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, errors.CephspineError)}


@pytest.fixture(scope="module")
def detector(tiny_model_dir: Path) -> Any:
    return cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")


def _png(path: Path, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (300, 240), dtype=np.uint8)).save(path)
    return path


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blobs=st.lists(st.binary(max_size=1024), min_size=1, max_size=4),
    suffixes=st.lists(st.sampled_from([".png", ".jpg", ".tif", ".dcm"]), min_size=4, max_size=4),
    truncate=st.floats(0.0, 0.99),
)
def test_cohort_on_garbage_gives_typed_error_rows_and_keeps_good_ones(
    tmp_path_factory: pytest.TempPathFactory, detector: Any, blobs: list[bytes], suffixes: list[str], truncate: float
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    good = _png(folder / "good.png", 0)
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: int(len(data) * truncate)])
    for i, blob in enumerate(blobs):
        (folder / f"junk{i}{suffixes[i]}").write_bytes(blob)
    with no_hang(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = cephspine.cohort(folder, kind="ceph", detector=detector, spacing=0.1, progress=False, workers=2)
    assert len(df) == len(blobs) + 2 and df["image"].is_unique
    rows = df.set_index("image")
    assert rows.loc["good.png", "status"] == "ok"
    for name, row in rows.drop(index="good.png").iterrows():
        if row["status"] == "error":
            kind_of_error = str(row["error"]).split(":", 1)[0]
            assert kind_of_error in TYPED, (name, row["error"])
            assert str(name) in str(row["error"])


def test_cohort_holds_a_bounded_number_of_images(
    tmp_path: Path, detector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long the cohort, at most a few radiographs are alive at once."""
    for i in range(16):
        _png(tmp_path / f"img{i:02d}.png", i)
    original = cohorts_module.analyze_image
    alive: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        gc.collect()
        alive.append(sum(isinstance(o, Radiograph) for o in gc.get_objects()))
        return result

    monkeypatch.setattr(cohorts_module, "analyze_image", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = cephspine.cohort(tmp_path, kind="ceph", detector=detector, spacing=0.1, progress=False, workers=2)
    assert (df["status"] == "ok").all() and len(alive) == 16
    assert max(alive) <= 4 + 1, alive  # ≤ 2 × workers in flight (+ one being collected)
