"""A tiny spine training run on three AASCE images: train, finalize, load, predict, evaluate."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from cephspine.anatomy import SPINE_LANDMARKS
from cephspine.pipeline import StageConfig
from tests.conftest import TINY_CONFIG_KW

pytestmark = pytest.mark.shared_data


@pytest.mark.parametrize(
    "coarse_target, refine_target", [("landmarks", "landmarks"), ("vertebrae", "landmarks"), ("vertebrae", "vertebrae")]
)
def test_train_finalize_predict_spine(
    shared_data: Path, tmp_path: Path, coarse_target: str, refine_target: str
) -> None:
    import cephspine
    from cephspine.training.ceph import train_coarse, train_refine
    from cephspine.training.finalize import finalize_spine
    from cephspine.training.spine import build_spine_cache, split_spine

    data = shared_data / "aasce"
    tr, va, excluded = split_spine(data)
    assert len(tr) + len(va) + len(excluded) == 481
    assert "sunhl-1th-30-Dec-2016-161_A_AP.jpg" in excluded  # corners out of order
    assert not set(tr) & set(va) and not set(excluded) & (set(tr) | set(va))
    kw = {
        "n_landmarks": 68,
        "fine_height_px": 128,
        "context_kernel": (5, 3),
        "coarse_target": coarse_target,
        "refine_target": refine_target,
    }
    cfg = StageConfig(**(TINY_CONFIG_KW | kw))  # type: ignore[arg-type]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    train = build_spine_cache(data, tr[:2], cfg)
    train_coarse(train, None, cfg, run, epochs=1)
    train_refine(train, cfg, run, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        card = finalize_spine(run, data, run / "model", va[:2], {"version": "0.0.0"})
        assert card["landmarks"] == list(SPINE_LANDMARKS)
        assert {"mre_mm", "sdr_2mm_pct", "sdr_6mm_pct", "cobb_smape_pct"} <= set(card["metrics"])
        det = cephspine.Detector.from_pretrained(run / "model", device="cpu")
        rec = cephspine.AasceDataset(data)[va[0]]
        pred = det.predict(rec.radiograph)
    assert pred.xy_px.shape == (68, 2) and np.isfinite(pred.xy_px).all()
    card_md = (run / "model" / "MODEL_CARD.md").read_text()
    assert card_md.count("Cobb SMAPE") == 1
    assert ("vertebra centres" in card_md) == (coarse_target == "vertebrae")
    assert ("one per vertebra" in card["architecture"]) == (refine_target == "vertebrae")


def test_mirror_augmentation_keeps_left_corners_left(shared_data: Path) -> None:
    """Mirrored training images swap TL/TR and BL/BR, so that a left corner stays left,
    and their targets peak where the mirrored image's own corners are."""
    import torch

    from cephspine.training.ceph import coarse_batch
    from cephspine.training.spine import FLIP_PERM, build_spine_cache, split_spine

    data = shared_data / "aasce"
    tr, _, _ = split_spine(data)
    cfg = StageConfig(**(TINY_CONFIG_KW | {"n_landmarks": 68, "fine_height_px": 128, "coarse_sigma_px": 1.0}))  # type: ignore[arg-type]
    cache = build_spine_cache(data, tr[:1], cfg)
    idx = np.zeros(16, dtype=int)
    rng = np.random.default_rng(0)
    # no other augmentation: compare against the unaugmented batch
    plain_x, plain_y = coarse_batch(cache, idx[:1], rng, cfg, augment=False)
    x, y = coarse_batch(cache, idx, np.random.default_rng(1), cfg, augment=True, flip_perm=FLIP_PERM)
    assert x.shape[0] == 16 and y.shape == (16, 68, *plain_y.shape[-2:])
    h, w = plain_y.shape[-2:]
    peaks = y.flatten(2).argmax(-1)  # (B, 68)
    px = (peaks % w).float().view(16, 17, 4)
    # left corners left of right corners in every sample, mirrored or not
    assert bool((px[:, :, 0] <= px[:, :, 1]).float().mean() > 0.95)
    assert bool((px[:, :, 2] <= px[:, :, 3]).float().mean() > 0.95)
    # some samples are mirrored: their left/right extent of the spine differs from the original's
    plain_px = (plain_y.flatten(2).argmax(-1) % w).float()
    assert not all(torch.allclose(px[k].flatten(), plain_px[0], atol=3) for k in range(16))
    assert np.array_equal(FLIP_PERM[FLIP_PERM], np.arange(68))
