"""The shipped ``ceph`` model on the bundled example (ISBI image 145; the shipped model was
trained on all 150 ISBI training images, so these check the pipeline, not generalisation:
see the cross-validated numbers in the model card) and on copies that mimic other scanners:
other pixel spacing and image size, a left-facing patient, no spacing at all."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import zoom

import cephspine
from cephspine.data import example_path
from cephspine.errors import SpacingWarning

TRUTH = np.loadtxt(Path(__file__).parent / "data" / "ceph_example_truth.csv", delimiter=",", skiprows=2)


@pytest.fixture(scope="module")
def detector() -> cephspine.Detector:
    return cephspine.Detector.from_pretrained("ceph", device="cpu")


@pytest.fixture(scope="module")
def example() -> cephspine.Radiograph:
    return cephspine.load_image(example_path("ceph"), spacing=0.1)


def mre_mm(xy: np.ndarray, truth: np.ndarray, spacing_mm: float) -> float:
    return float(np.linalg.norm((xy - truth) * spacing_mm, axis=1).mean())


def test_example_is_accurate(detector: cephspine.Detector, example: cephspine.Radiograph) -> None:
    pred = detector.predict(example)
    assert pred.xy_px.shape == (19, 2)
    assert pred.names == cephspine.CEPH_LANDMARKS
    assert mre_mm(pred.xy_px, TRUTH, 0.1) < 2.0
    assert pred.xy_mm is not None
    np.testing.assert_allclose(pred.xy_mm, pred.xy_px * 0.1)
    assert np.all((pred.confidence >= 0) & (pred.confidence <= 1))
    assert not pred.meta["mirrored"]


def test_other_spacing_and_size(detector: cephspine.Detector, example: cephspine.Radiograph) -> None:
    """A scanner with 0.14 mm pixels and a wider field of view (extra border left and top)."""
    factor = 0.1 / 0.14
    small = zoom(example.pixels, factor, order=1).astype(np.float32)
    pad_top, pad_left = 150, 90
    canvas = np.full((small.shape[0] + pad_top + 60, small.shape[1] + pad_left + 200), small.min(), np.float32)
    canvas[pad_top : pad_top + small.shape[0], pad_left : pad_left + small.shape[1]] = small
    truth = (TRUTH + 0.5) * np.array([small.shape[1] / example.width, small.shape[0] / example.height]) - 0.5
    truth = truth + np.array([pad_left, pad_top])
    pred = detector.predict(canvas, spacing=0.14)
    assert pred.image_shape == canvas.shape
    assert mre_mm(pred.xy_px, truth, 0.14) < 2.5


def test_left_facing_image_is_mirrored_back(detector: cephspine.Detector, example: cephspine.Radiograph) -> None:
    flipped = example.pixels[:, ::-1].copy()
    truth = TRUTH.copy()
    truth[:, 0] = example.width - 1 - truth[:, 0]
    pred = detector.predict(flipped, spacing=0.1)
    assert pred.meta["mirrored"]
    assert mre_mm(pred.xy_px, truth, 0.1) < 2.0


def test_mirror_runs_only_when_the_first_pass_is_not_clearly_right_facing(
    detector: cephspine.Detector, example: cephspine.Radiograph, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert np.isfinite(detector.facing_clear_peak)  # the shipped card sets the threshold
    pred = detector.predict(example)
    assert pred.meta["facing"]["peak"] >= detector.facing_clear_peak
    assert pred.meta["facing"]["mirror_peak"] is None and not pred.meta["mirrored"]
    flipped = detector.predict(example.pixels[:, ::-1].copy(), spacing=0.1)
    assert flipped.meta["facing"]["peak"] < detector.facing_clear_peak
    assert flipped.meta["facing"]["mirror_peak"] > flipped.meta["facing"]["peak"] and flipped.meta["mirrored"]
    monkeypatch.setattr(detector, "facing_clear_peak", np.inf)  # always both orientations
    both = detector.predict(example)
    assert both.meta["facing"]["mirror_peak"] < both.meta["facing"]["peak"] and not both.meta["mirrored"]
    np.testing.assert_allclose(both.xy_px, pred.xy_px)


def test_missing_spacing_warns_and_has_no_mm(detector: cephspine.Detector) -> None:
    with pytest.warns(SpacingWarning, match="spacing unknown"):
        pred = detector.predict(example_path("ceph"))
    assert pred.xy_mm is None
    assert any("spacing unknown" in w for w in pred.warnings)
    assert mre_mm(pred.xy_px, TRUTH, 0.1) < 2.0


def test_registration_always_keeps_accuracy(example: cephspine.Radiograph) -> None:
    det = cephspine.Detector.from_pretrained("ceph", device="cpu", register="always")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = det.predict(example)
    reg = pred.meta["registration"]
    assert "ok" in reg
    if reg["ok"]:
        assert reg["used"]
    assert mre_mm(pred.xy_px, TRUTH, 0.1) < 2.5


_REGISTERED_IN_A_NEW_PROCESS = """
import json, sys, warnings
import torch
import cephspine
from cephspine.data import example_path
warnings.simplefilter("ignore")
torch.set_num_threads(int(sys.argv[1]))
det = cephspine.Detector.from_pretrained("ceph", device="cpu", register="always")
pred = det.predict(cephspine.load_image(example_path("ceph"), spacing=0.1))
print(json.dumps({"matrix": pred.meta["registration"]["matrix"], "xy": pred.xy_px.tolist()}))
"""


def test_registration_is_deterministic(example: cephspine.Radiograph) -> None:
    """The same film registers to the same matrix and gives the same landmarks every time,
    in this process and in a fresh one (a fixed sampling seed, one ITK thread). The fresh
    one runs the network on as many torch threads as this one: the network's sums, not the
    registration, depend on that."""
    import json
    import subprocess
    import sys

    import SimpleITK as sitk
    import torch

    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    det = cephspine.Detector.from_pretrained("ceph", device="cpu", register="always")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = det.predict(example), det.predict(example)
    assert first.meta["registration"]["ok"] and first.meta["registration"]["used"]
    assert first.meta["registration"]["matrix"] == second.meta["registration"]["matrix"]
    np.testing.assert_array_equal(first.xy_px, second.xy_px)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads  # restored afterwards
    run = subprocess.run(
        [sys.executable, "-c", _REGISTERED_IN_A_NEW_PROCESS, str(torch.get_num_threads())],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    other = json.loads(run.stdout.strip().splitlines()[-1])
    assert other["matrix"] == first.meta["registration"]["matrix"]
    np.testing.assert_array_equal(np.array(other["xy"]), first.xy_px)


def test_registration_rejects_the_wall_clock_seed() -> None:
    from cephspine.errors import InvalidArgumentError
    from cephspine.registration import Template, register

    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with pytest.raises(InvalidArgumentError, match="non-zero"):
        register(image, Template(image, np.ones_like(image, dtype=bool)), seed=0)
