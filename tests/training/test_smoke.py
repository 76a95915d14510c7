"""Train a tiny model for a couple of steps on three shared ISBI images, then load and use it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cephspine.anatomy import CEPH_LANDMARKS

IDS = ("001", "002", "003")


@pytest.fixture
def isbi(shared_data: Path) -> Path:
    root = shared_data / "isbi2015"
    needed = [root / "images" / f"{i}.jpg" for i in IDS]
    needed += [root / who / f"{i}.txt" for who in ("senior", "junior") for i in IDS]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"ISBI 2015 files missing: {missing[:2]}")
    return root


@pytest.mark.shared_data
def test_train_ceph_tiny_then_predict(isbi: Path, tmp_path: Path, tiny_config) -> None:
    from cephspine.detector import Detector
    from cephspine.training.ceph import train_ceph

    run = tmp_path / "run"
    model_dir = train_ceph(isbi, run, epochs=1, steps=2, train_ids=["001", "002"], val_ids=["003"], cfg=tiny_config)
    assert model_dir == run / "model"
    for name in ("coarse_final.pt", "refine_final.pt"):
        assert (run / name).is_file(), name
    for stage in ("coarse", "refine"):  # both stages really took optimiser steps
        assert torch.load(run / f"{stage}_ckpt.pt", weights_only=True)["opt"]["state"], stage
    card = json.loads((model_dir / "card.json").read_text())
    assert card["landmarks"] == list(CEPH_LANDMARKS)
    assert card["config"] == tiny_config.to_dict()
    assert card["metrics"]["n_images"] == 1
    assert np.isfinite(card["metrics"]["mre_mm"])
    assert all(np.isfinite(c) for c in card["confidence"]["coef"])
    assert "## Confidence" in (model_dir / "MODEL_CARD.md").read_text()

    det = Detector.from_pretrained(model_dir, device="cpu")
    assert det.config == tiny_config
    with Image.open(isbi / "images" / "003.jpg") as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)[::4, ::4]  # 0.4 mm pixels: quick
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = det.predict(pixels, spacing=0.4)
    assert pred.xy_px.shape == (19, 2)
    assert np.isfinite(pred.xy_px).all()
    assert ((pred.confidence >= 0) & (pred.confidence <= 1)).all()


def _synthetic_cache(cfg, m: int = 2):
    """Prepared training data made of noise images with random landmark positions."""
    from cephspine.pipeline import prepare
    from cephspine.training.ceph import CephCache

    rng = np.random.default_rng(0)
    fine, coarse, xy_fine, xy_orig, factors, sizes = [], [], [], [], [], []
    for _ in range(m):
        f, c = prepare(rng.uniform(0, 1, (200, 160)).astype(np.float32), (0.1, 0.1), cfg)
        xy = rng.uniform(20, 140, (cfg.n_landmarks, 2))
        fine.append(f.image.half())
        coarse.append(c)
        xy_orig.append(xy)
        xy_fine.append(f.to_resampled(xy))
        factors.append(f.factor_xy)
        sizes.append(f.size_hw)
    return CephCache(
        [f"{i:03d}" for i in range(m)],
        fine,
        torch.cat(coarse),
        np.stack(xy_fine),
        np.stack(xy_orig),
        np.stack(factors),
        sizes,
        np.full((m, 2), 0.1),
    )


@pytest.mark.parametrize("n_images", [2, 5])
def test_coarse_training_steps_with_fewer_images_than_a_batch(tmp_path: Path, tiny_config, n_images) -> None:
    from cephspine.training.ceph import train_coarse

    cache = _synthetic_cache(tiny_config, n_images)
    final = train_coarse(cache, None, tiny_config, tmp_path, epochs=1, batch=4)
    state = torch.load(final, weights_only=True)
    assert set(state) == set(tiny_config.build_coarse().state_dict())
    assert torch.load(tmp_path / "coarse_ckpt.pt", weights_only=True)["opt"]["state"]


def test_refine_training_resumes_from_its_checkpoint(tmp_path: Path, tiny_config) -> None:
    from cephspine.training.ceph import train_refine

    cache = _synthetic_cache(tiny_config)
    train_refine(cache, tiny_config, tmp_path, steps=2, batch=4, ckpt_every=1)
    assert torch.load(tmp_path / "refine_ckpt.pt", weights_only=True)["step"] == 2
    train_refine(cache, tiny_config, tmp_path, steps=3, batch=4, ckpt_every=1)
    assert torch.load(tmp_path / "refine_ckpt.pt", weights_only=True)["step"] == 3


def test_run_stage_trains_each_stage_in_a_run_folder(tmp_path: Path, tiny_config) -> None:
    from cephspine.pipeline import StageConfig
    from cephspine.training.ceph import run_stage

    def build(data, ids, cfg, cache_file):
        return _synthetic_cache(cfg, len(ids))

    run = tmp_path / "run"
    for stage in ("coarse", "refine"):
        run_stage(stage, build, tmp_path, run, tiny_config, ["a", "b"], ["c"], epochs=1, steps=2)
    assert (run / "coarse_final.pt").is_file() and (run / "refine_final.pt").is_file()
    assert StageConfig.from_dict(json.loads((run / "config.json").read_text())) == tiny_config
