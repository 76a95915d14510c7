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


def test_train_finalize_predict_spine(shared_data: Path, tmp_path: Path) -> None:
    import cephspine
    from cephspine.training.ceph import train_coarse, train_refine
    from cephspine.training.finalize import finalize_spine
    from cephspine.training.spine import build_spine_cache, split_spine

    data = shared_data / "aasce"
    tr, va, excluded = split_spine(data)
    assert len(tr) + len(va) + len(excluded) == 481
    assert "sunhl-1th-30-Dec-2016-161_A_AP.jpg" in excluded  # corners out of order
    assert not set(tr) & set(va) and not set(excluded) & (set(tr) | set(va))
    cfg = StageConfig(**(TINY_CONFIG_KW | {"n_landmarks": 68, "fine_height_px": 128, "context_kernel": (5, 3)}))  # type: ignore[arg-type]
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
    assert (run / "model" / "MODEL_CARD.md").read_text().count("Cobb SMAPE") == 1
