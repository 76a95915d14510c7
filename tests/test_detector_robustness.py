"""Bad inputs to the detector give typed cephspine errors (or a handled, reported fallback)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cephspine
from cephspine.errors import (
    CephspineError,
    DeviceError,
    ImageReadError,
    ModelLoadError,
    RegistrationWarning,
    SpacingError,
)
from cephspine.radiograph import Radiograph, Spacing


@pytest.fixture(scope="module")
def shipped() -> cephspine.Detector:
    return cephspine.Detector.from_pretrained("ceph", device="cpu")


def test_blank_image_falls_back_with_a_registration_warning(shipped: cephspine.Detector) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = shipped.predict(np.zeros((400, 320), np.float32), spacing=0.1)
    reg = pred.meta["registration"]
    assert reg["ok"] is False and reg["reason"] == "blank image"
    assert any(issubclass(w.category, RegistrationWarning) for w in caught)
    assert np.isfinite(pred.xy_px).all()


def test_implausible_spacing_is_a_spacing_error(shipped: cephspine.Detector) -> None:
    with pytest.raises(SpacingError, match="outside the range of radiographs"):
        shipped.predict(np.ones((100, 100), np.float32), spacing=2000.0)
    with pytest.raises(SpacingError, match="check the spacing"):  # within the range, but a 15 m film
        shipped.predict(np.ones((8000, 100), np.float32), spacing=1.9)


@pytest.mark.parametrize(
    "pixels",
    [
        np.full((64, 64), np.nan, np.float32),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((2, 2), np.float32),
    ],
)
def test_bad_radiograph_pixels_are_refused(shipped: cephspine.Detector, pixels: np.ndarray) -> None:
    rg = Radiograph(pixels, Spacing(0.1, 0.1), "user", Path("bad.png"))
    with pytest.raises(ImageReadError, match="bad.png"):
        shipped.predict(rg)


def test_unknown_or_unavailable_device(tiny_model_dir: Path) -> None:
    import torch

    with pytest.raises(DeviceError, match="unknown device"):
        cephspine.Detector.from_pretrained(tiny_model_dir, device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            cephspine.Detector.from_pretrained(tiny_model_dir, device="cuda")


def test_truncated_template_is_a_model_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (d / "template.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelLoadError, match="template.npz"):
        cephspine.Detector.from_pretrained(d, device="cpu")


def test_bad_confidence_entry_is_a_model_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    card = json.loads((d / "card.json").read_text())
    card["confidence"] = {"coef": [1.0]}
    (d / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="card.json"):
        cephspine.Detector.from_pretrained(d, device="cpu")


def test_evaluate_unknown_ids_is_one_line_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from cephspine.cli import app

    data = tmp_path / "isbi"
    for sub in ("images", "senior", "junior"):
        (data / sub).mkdir(parents=True)
    result = CliRunner().invoke(
        app, ["evaluate", "ceph", "--data", str(data), "--model", str(tiny_model_dir), "--ids", "999"]
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output


def test_errors_are_cephspine_errors() -> None:
    for cls in (DeviceError, SpacingError, ModelLoadError, ImageReadError):
        assert issubclass(cls, CephspineError)
