"""The shipped, experimental ``spine`` model on held-out AASCE training images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import cephspine
from cephspine.errors import ExperimentalModelWarning

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def detector() -> cephspine.Detector:
    with pytest.warns(ExperimentalModelWarning, match="Cobb SMAPE"):
        return cephspine.Detector.from_pretrained("spine", device="cpu")


def test_card_says_experimental_with_measured_numbers(detector: cephspine.Detector) -> None:
    m = detector.card["metrics"]
    assert detector.experimental and detector.card["metrics"]["n_images"] == 91
    assert f"{m['cobb_smape_pct']:.1f} %" in detector.experimental_note
    assert detector.names == cephspine.SPINE_LANDMARKS


def test_held_out_images_land_on_the_spine(detector: cephspine.Detector, shared_data: Path) -> None:
    from cephspine.training.spine import split_spine

    data = shared_data / "aasce"
    _, held_out, _ = split_spine(data)
    ds = cephspine.AasceDataset(data)
    for image_id in held_out[:3]:
        rec = ds[image_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = cephspine.analyze(rec.radiograph, kind="spine", detector=detector)
        pred = a.prediction
        assert pred.xy_px.shape == (68, 2) and pred.by_vertebra().shape == (17, 4, 2)
        assert "experimental" in pred.warnings[0]
        # vertebra centres within two vertebral levels of the truth (a blind guess is not)
        centres, truth = pred.by_vertebra().mean(axis=1), rec.landmarks.reshape(17, 4, 2).mean(axis=1)
        level = (truth[-1, 1] - truth[0, 1]) / 16
        assert np.median(np.linalg.norm(centres - truth, axis=1)) < 2 * level, image_id
        assert a.cobb is not None and np.isfinite([a.cobb.pt, a.cobb.mt, a.cobb.tl]).all()
