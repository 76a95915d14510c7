"""Model directories, the registry and ``Detector`` end to end with tiny random-weight models."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cephspine.anatomy import CEPH_LANDMARKS
from cephspine.detector import Detector
from cephspine.errors import (
    CephspineError,
    ImageReadError,
    LowConfidenceWarning,
    ModelLoadError,
    SpacingWarning,
    UnknownModelError,
)
from cephspine.heatmaps import gaussian_targets
from cephspine.prediction import Prediction
from cephspine.radiograph import Radiograph, Spacing
from cephspine.registry import CARD_FILE, WEIGHTS_FILE, available_models, resolve

# random-weight models are unsure of everything; that warning is tested on its own below
pytestmark = pytest.mark.filterwarnings("ignore::cephspine.errors.LowConfidenceWarning")


@pytest.fixture(scope="module")
def detector(tiny_model_dir: Path) -> Detector:
    return Detector.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny model directory."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny"))


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (h, w))


def _check(pred, n: int = 19) -> None:
    assert pred.xy_px.shape == (n, 2)
    assert np.isfinite(pred.xy_px).all()
    assert pred.confidence.shape == (n,)
    assert ((pred.confidence >= 0) & (pred.confidence <= 1)).all()


# --- loading --------------------------------------------------------------------------


def test_from_pretrained_loads_card_and_weights(detector: Detector, tiny_config) -> None:
    assert detector.names == CEPH_LANDMARKS
    assert detector.config == tiny_config
    assert detector.name == "tiny" and detector.version == "0.0.1"
    assert detector.device == torch.device("cpu")
    assert "tiny" in repr(detector) and "19 landmarks" in repr(detector)
    assert not detector.coarse.training and not detector.refine.training


def test_exported_weights_are_the_trained_ones_in_fp16(tmp_path: Path, tiny_config) -> None:
    from cephspine.training.export import write_model_dir

    torch.manual_seed(3)
    coarse, refine = tiny_config.build_coarse(), tiny_config.build_refine()
    for m in [*coarse.modules(), *refine.modules()]:  # trained-looking norms, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    card = {
        "name": "x",
        "version": "1",
        "anatomy": "ceph",
        "landmarks": list(CEPH_LANDMARKS),
        "config": tiny_config.to_dict(),
        "architecture": "test",
    }
    out = write_model_dir(tmp_path / "m", coarse.state_dict(), refine.state_dict(), card)
    assert {CARD_FILE, WEIGHTS_FILE, "MODEL_CARD.md"} <= {p.name for p in out.iterdir()}
    assert not any(p.suffix == ".tmp" for p in out.iterdir())
    assert json.loads((out / CARD_FILE).read_text()) == card
    assert "# Model card: `x` 1" in (out / "MODEL_CARD.md").read_text()
    from safetensors.torch import load_file

    stored = load_file(str(out / WEIGHTS_FILE))
    for prefix, mine in (("coarse.", coarse), ("refine.", refine)):
        for k, v in mine.state_dict().items():
            got = stored[prefix + k]
            expected = v.half() if v.is_floating_point() else v
            torch.testing.assert_close(got, expected, atol=0, rtol=0)
    # the detector computes the stored (fp16-rounded) networks, batch norms folded in
    det = Detector.from_pretrained(out, device="cpu")
    for mine, loaded in ((coarse, det.coarse), (refine, det.refine)):
        rounded = {k: v.half().to(v.dtype) if v.is_floating_point() else v for k, v in mine.state_dict().items()}
        mine.load_state_dict(rounded)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
        trained_dtype = next(mine.parameters()).dtype
        assert all(t.dtype == trained_dtype for t in loaded.state_dict().values() if t.is_floating_point())
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(det.refine(x), refine.eval()(x), atol=1e-4, rtol=1e-4)
        xc = torch.rand(1, 1, 128, 96)
        torch.testing.assert_close(det.coarse(xc), coarse.eval()(xc), atol=1e-4, rtol=1e-4)


# --- predicting -----------------------------------------------------------------------


@pytest.mark.parametrize("hw, spacing", [((300, 240), 0.1), ((517, 389), 0.3), ((260, 300), (0.1, 0.15))])
def test_predict_arrays_with_spacing(detector: Detector, hw, spacing) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpacingWarning)
        pred = detector.predict(_image(*hw), spacing=spacing)
    _check(pred)
    assert pred.image_shape == hw
    assert pred.names == CEPH_LANDMARKS
    sp = Spacing(*(spacing if isinstance(spacing, tuple) else (spacing, spacing)))
    assert pred.spacing == sp
    np.testing.assert_allclose(pred.xy_mm, pred.xy_px * [sp.col_mm, sp.row_mm])
    assert pred.model == "tiny" and pred.model_version == "0.0.1"
    assert set(pred.meta["features"]) == {"refine_peak", "coarse_peak", "shift_mm"}


def test_predict_without_spacing_warns(detector: Detector) -> None:
    with pytest.warns(SpacingWarning, match="spacing"):
        pred = detector.predict(_image(300, 240))
    _check(pred)
    assert pred.spacing is None
    assert pred.xy_mm is None
    assert any("spacing" in w for w in pred.warnings)
    assert pred.to_dataframe()["x_mm"].isna().all()


def test_predict_radiograph_and_file(detector: Detector, tmp_path: Path) -> None:
    pixels = _image(280, 230, seed=5)
    rg = Radiograph(pixels.astype(np.float32), Spacing(0.1, 0.1), "user")
    from_rg = detector.predict(rg)
    from_array = detector.predict(pixels, spacing=0.1)
    _check(from_rg)
    np.testing.assert_allclose(from_rg.xy_px, from_array.xy_px)

    path = tmp_path / "ceph.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    with pytest.warns(SpacingWarning):
        from_file = detector.predict(path)
    _check(from_file)
    assert from_file.source == "ceph.png"
    assert from_file.image_shape == (280, 230)
    batch = detector.predict_batch([rg, rg])
    assert len(batch) == 2
    np.testing.assert_allclose(batch[1].xy_px, from_rg.xy_px)


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_predict_iter_keeps_order_and_goes_past_bad_images(detector: Detector, tmp_path: Path, prefetch: int) -> None:
    paths = []
    for i in range(4):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(_image(200 + 10 * i, 180, seed=i).astype(np.uint8)).save(p)
        paths.append(p)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    items = [paths[0], bad, paths[1], paths[2], paths[3]]
    out = list(detector.predict_iter(items, spacing=0.1, prefetch=prefetch, errors="return"))
    assert [type(o).__name__ for o in out] == ["Prediction", "ImageReadError"] + ["Prediction"] * 3
    assert [o.image_shape[0] for o in out if isinstance(o, Prediction)] == [200, 210, 220, 230]
    assert "bad.png" in str(out[1])
    single = detector.predict(paths[2], spacing=0.1)
    np.testing.assert_allclose(out[3].xy_px, single.xy_px)
    with pytest.raises(ImageReadError, match="bad.png"):
        detector.predict_batch(items, spacing=0.1, prefetch=prefetch)
    with pytest.raises(ValueError, match="errors"):
        list(detector.predict_iter(items, errors="skip"))


def test_predict_iter_consumes_lazily(detector: Detector) -> None:
    """Only ``prefetch`` images ahead are decoded: an endless generator is fine."""
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield _image(150, 120, seed=i).astype(np.float32)
            i += 1

    it = detector.predict_iter(endless(), spacing=0.1, prefetch=2)
    for _ in range(3):
        next(it)
    assert len(made) <= 3 + 2 + 1
    it.close()


def test_closing_predict_iter_stops_the_decoding_thread(detector: Detector) -> None:
    import threading
    import time

    def endless():
        i = 0
        while True:
            yield _image(150, 120, seed=i).astype(np.float32)
            i += 1

    def loaders() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("cephspine-load")]

    it = detector.predict_iter(endless(), spacing=0.1, prefetch=2)
    next(it)
    assert loaders()
    it.close()
    deadline = time.monotonic() + 120  # ends as soon as the thread does; generous for a loaded machine
    while loaders() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not loaders()


class _Echo(torch.nn.Module):
    """Heatmaps = input image (times an optional weight map), copied to every landmark."""

    def __init__(self, n: int, prefer_left: bool = False) -> None:
        super().__init__()
        self.n, self.prefer_left = n, prefer_left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prefer_left:  # peaks are higher on the left: decides which way the face looks
            w = x.shape[-1]
            x = x * torch.linspace(1.0, 0.2, w).view(1, 1, 1, w)
        return x.expand(-1, self.n, -1, -1)


def _card(cfg, **extra) -> dict:
    card = {
        "name": "echo",
        "version": "0",
        "anatomy": "ceph",
        "landmarks": list(CEPH_LANDMARKS),
        "config": cfg.to_dict(),
        "architecture": "test",
    }
    return card | extra


@pytest.mark.parametrize("x_frac, mirrored", [(0.25, False), (0.75, True)])
def test_predict_finds_a_blob_in_either_orientation(tiny_config, monkeypatch, x_frac: float, mirrored: bool) -> None:
    """With echoing networks the prediction must land on a bright blob, also when the
    detector decides to work on the mirrored image."""
    # min-max scaling keeps the blob's top round (percentile clipping would flatten it)
    monkeypatch.setattr(
        "cephspine.detector.normalize_intensity",
        lambda p: ((p - p.min()) / (p.max() - p.min())).astype(np.float32),
    )
    n = tiny_config.n_landmarks
    det = Detector(_card(tiny_config), _Echo(n, prefer_left=True), _Echo(n), torch.device("cpu"))
    h, w = 240, 320
    xy = np.array([x_frac * w + 0.3, 101.6])
    blob = gaussian_targets(torch.tensor(xy[None, None], dtype=torch.float32), h, w, 10.0)[0, 0]
    pred = det.predict(blob.numpy() * 1000, spacing=0.1)
    assert pred.meta["mirrored"] is mirrored
    np.testing.assert_allclose(pred.xy_px, np.broadcast_to(xy, (n, 2)), atol=0.1)


def test_card_calibrator_sets_the_confidence(tiny_config) -> None:
    n = tiny_config.n_landmarks
    high = _card(tiny_config, confidence={"coef": [2.0, 0.0, 0.0, 0.0], "radius_mm": 2.0})
    det = Detector(high, _Echo(n), _Echo(n), torch.device("cpu"))
    pred = det.predict(_image(200, 180), spacing=0.1)
    np.testing.assert_allclose(pred.confidence, 1 / (1 + np.exp(-2.0)))

    low = _card(tiny_config, confidence={"coef": [-3.0, 0.0, 0.0, 0.0], "radius_mm": 2.0})
    det = Detector(low, _Echo(n), _Echo(n), torch.device("cpu"))
    with pytest.warns(LowConfidenceWarning, match="sella"):
        pred = det.predict(_image(200, 180), spacing=0.1)
    assert any("low confidence" in w for w in pred.warnings)


# --- the registry and load errors -----------------------------------------------------


def test_unknown_model_lists_known_names(tiny_model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CEPHSPINE_WEIGHTS", str(tiny_model_dir.parent))
    with pytest.raises(UnknownModelError) as info:
        Detector.from_pretrained("nope", device="cpu")
    msg = str(info.value)
    assert "nope" in msg
    for name in available_models():
        assert name in msg
    assert "tiny" in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, CephspineError)


def test_available_models_honours_the_environment(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CEPHSPINE_WEIGHTS", raising=False)
    shipped = available_models()
    assert "tiny" not in shipped
    (tmp_path / "not_a_model").mkdir()  # folders without a card are not models
    shutil.copytree(tiny_model_dir, tmp_path / "tiny")
    monkeypatch.setenv("CEPHSPINE_WEIGHTS", str(tmp_path))
    assert available_models() == sorted({*shipped, "tiny"})
    assert resolve("tiny") == tmp_path / "tiny"
    assert Detector.from_pretrained("tiny", device="cpu").names == CEPH_LANDMARKS
    monkeypatch.setenv("CEPHSPINE_WEIGHTS", str(tmp_path / "does_not_exist"))
    assert available_models() == shipped


def test_model_name_wins_over_an_unrelated_folder_of_that_name(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """A folder called like a model in the working directory must not hide the model."""
    monkeypatch.setenv("CEPHSPINE_WEIGHTS", str(tiny_model_dir.parent))
    (tmp_path / "tiny").mkdir()  # e.g. the user's own folder of images
    monkeypatch.chdir(tmp_path)
    assert resolve("tiny") == tiny_model_dir
    assert resolve("./tiny") == Path("./tiny")  # an explicit path is taken as a path


def test_missing_card(model_copy: Path) -> None:
    (model_copy / CARD_FILE).unlink()
    with pytest.raises(ModelLoadError, match=CARD_FILE):
        Detector.from_pretrained(model_copy, device="cpu")


def test_missing_weights(model_copy: Path) -> None:
    (model_copy / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match=WEIGHTS_FILE):
        Detector.from_pretrained(model_copy, device="cpu")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"name": "x"}'])
def test_bad_card(model_copy: Path, text: str) -> None:
    (model_copy / CARD_FILE).write_text(text)
    with pytest.raises(ModelLoadError, match=CARD_FILE):
        Detector.from_pretrained(model_copy, device="cpu")


@pytest.mark.parametrize("change", [{"coarse_base": 8}, {"refine_depth": 3}, {"context_kernel": [5, 3]}])
def test_card_config_not_matching_the_tensors(model_copy: Path, tiny_config, change) -> None:
    card = json.loads((model_copy / CARD_FILE).read_text())
    card["config"] = dataclasses.replace(
        tiny_config, **{k: tuple(v) if isinstance(v, list) else v for k, v in change.items()}
    ).to_dict()
    (model_copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError) as info:
        Detector.from_pretrained(model_copy, device="cpu")
    assert str(model_copy / WEIGHTS_FILE) in str(info.value)


def test_card_with_wrong_number_of_names(model_copy: Path) -> None:
    card = json.loads((model_copy / CARD_FILE).read_text())
    card["landmarks"] = card["landmarks"][:-1]
    (model_copy / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="18 landmark names"):
        Detector.from_pretrained(model_copy, device="cpu")


def test_garbage_weights(model_copy: Path) -> None:
    (model_copy / WEIGHTS_FILE).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match=WEIGHTS_FILE):
        Detector.from_pretrained(model_copy, device="cpu")


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_pickle_named_safetensors_is_refused(model_copy: Path, tiny_config, how: str) -> None:
    state = {"coarse." + k: v for k, v in tiny_config.build_coarse().state_dict().items()}
    path = model_copy / WEIGHTS_FILE
    if how == "torch":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps({k: v.numpy() for k, v in state.items()}))
    with pytest.raises(ModelLoadError, match="safetensors"):
        Detector.from_pretrained(model_copy, device="cpu")


def test_non_finite_weights_are_refused(model_copy: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = model_copy / WEIGHTS_FILE
    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if k.startswith("refine.") and v.is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(path))
    with pytest.raises(ModelLoadError, match="NaN"):
        Detector.from_pretrained(model_copy, device="cpu")


def test_other_landmark_count_and_kernel(make_model_dir, tiny_config, tmp_path: Path) -> None:
    """Everything follows the card: 5 landmarks and the spine's (5, 3) context kernel."""
    cfg = dataclasses.replace(tiny_config, n_landmarks=5, context_kernel=(5, 3))
    det = Detector.from_pretrained(make_model_dir(tmp_path / "five", cfg, seed=1), device="cpu")
    assert det.config.context_kernel == (5, 3)
    pred = det.predict(_image(333, 250), spacing=0.12)
    _check(pred, n=5)
    assert pred.names == CEPH_LANDMARKS[:5]


# --- experimental models -------------------------------------------------------------


def test_experimental_model_says_so_on_load_in_predictions_and_card(make_model_dir, tmp_path: Path) -> None:
    from cephspine import ExperimentalModelWarning
    from cephspine.registry import read_card
    from cephspine.training.export import render_model_card

    note = "held-out Cobb SMAPE 30 % against a target of 11 %"
    d = make_model_dir(tmp_path / "exp", status="experimental", status_note=note)
    with pytest.warns(ExperimentalModelWarning, match="experimental: held-out Cobb SMAPE 30 %"):
        det = Detector.from_pretrained(d, device="cpu")
    assert det.experimental and note in det.experimental_note
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExperimentalModelWarning)  # said at load, not at each prediction
        warnings.simplefilter("ignore", LowConfidenceWarning)
        pred = det.predict(_image(200, 180), spacing=0.1)
    assert pred.warnings[0] == f"<array>: model {det.name} {det.version} is experimental: {note}"
    assert "**Experimental.** Held-out Cobb SMAPE 30 % against a target of 11 %." in render_model_card(read_card(d))

    regular = make_model_dir(tmp_path / "regular")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExperimentalModelWarning)
        det = Detector.from_pretrained(regular, device="cpu")
    assert not det.experimental and det.experimental_note == ""
    assert "Experimental" not in render_model_card(read_card(regular))
