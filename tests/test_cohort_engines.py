"""Cohort engines: threads sharing one model in-process, and Ray actors (local Ray)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cephspine
from cephspine.cohorts import cohort


def _folder(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (180 + 7 * i, 150), dtype=np.uint8)).save(p)
        out.append(p)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return out


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["warnings", "n_warnings"]).sort_values("image").reset_index(drop=True)


@pytest.fixture
def det(tiny_model_dir: Path) -> Any:
    return cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")


def test_threads_give_the_same_table_and_each_image_its_own_warnings(tmp_path: Path, det: Any) -> None:
    _folder(tmp_path / "in", 6)
    original = det._predict_radiograph

    def slow_and_chatty(rg: Any, timings: Any) -> Any:
        warnings.warn(f"{rg.name}: note about this very image", stacklevel=2)
        time.sleep(0.05 if rg.name.endswith(("1.png", "3.png")) else 0.0)  # interleave the threads
        return original(rg, timings)

    det._predict_radiograph = slow_and_chatty
    one = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False)
    two = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False, workers=3, out=tmp_path / "o.csv")
    assert list(two["image"]) == list(one["image"])  # input order
    pd.testing.assert_frame_equal(_comparable(one), _comparable(two))
    for _, row in two[two["status"] == "ok"].iterrows():
        notes = [w for w in row["warnings"].split(" | ") if "note about" in w]
        assert notes == [f"{row['image']}: note about this very image"]
    assert (two["status"] == "error").sum() == 1
    assert len(pd.read_csv(tmp_path / "o.csv")) == 7


def test_model_option_loads_that_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    _folder(tmp_path / "in", 2)
    df = cohort(tmp_path / "in", model=tiny_model_dir, device="cpu", spacing=0.1, progress=False)
    assert set(df["model"].dropna()) >= {"tiny"} and (df["status"] == "ok").sum() == 2


def test_ray_engine_matches_the_local_engine(tmp_path: Path, det: Any, tiny_model_dir: Path) -> None:
    ray = pytest.importorskip("ray")
    _folder(tmp_path / "in", 5)
    local = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        far = cohort(
            tmp_path / "in",
            engine="ray",
            workers=2,
            model=tiny_model_dir,
            device="cpu",
            spacing=0.1,
            progress=False,
            out=tmp_path / "ray.csv",
            landmarks_out=tmp_path / "lm.csv",
        )
        # a re-run resumes: nothing left to do, the same table comes back
        again = cohort(tmp_path / "in", engine="ray", workers=2, model=tiny_model_dir, out=tmp_path / "ray.csv")
    finally:
        ray.shutdown()
    assert list(far["image"]) == list(local["image"])
    pd.testing.assert_frame_equal(_comparable(local), _comparable(far), check_dtype=False)
    pd.testing.assert_frame_equal(_comparable(again), _comparable(far))
    err = far[far["status"] == "error"]
    assert list(err["image"]) == ["broken.jpg"] and "broken.jpg" in err["error"].iloc[0]
    assert len(pd.read_csv(tmp_path / "lm.csv")) == 5 * 19


def test_ray_engine_needs_a_model_directory(tmp_path: Path, det: Any) -> None:
    pytest.importorskip("ray")
    _folder(tmp_path / "in", 1)
    det.directory = None
    with pytest.raises(ValueError, match="loaded from a directory"):
        cohort(tmp_path / "in", engine="ray", detector=det, progress=False)


def test_ray_actors_load_the_detector_with_its_options(tmp_path: Path) -> None:
    from cephspine.anatomy import SPINE_LANDMARKS
    from cephspine.cohorts import _model_ref
    from tests.conftest import build_model_dir
    from tests.test_end_prior import SPINE_PRIOR

    d = build_model_dir(tmp_path / "sp", SPINE_PRIOR, anatomy="spine", landmarks=list(SPINE_LANDMARKS))
    (tmp_path / "in").mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (700, 260), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / f"s{i}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = cephspine.Detector.from_pretrained(d, device="cpu", end_prior=False, refine_flip=False)
        default = cephspine.Detector.from_pretrained(d, device="cpu")
    assert _model_ref("spine", None, plain) == (str(d), {"register": "auto", "end_prior": False, "refine_flip": False})
    assert _model_ref("spine", d, plain) == (str(d), {})
    local = cohort(tmp_path / "in", kind="spine", detector=plain, progress=False)
    other = cohort(tmp_path / "in", kind="spine", detector=default, progress=False)
    assert not _comparable(local).equals(_comparable(other))  # the options change the corners
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        far = cohort(tmp_path / "in", kind="spine", engine="ray", workers=1, detector=plain, progress=False)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(_comparable(local), _comparable(far), check_dtype=False)
