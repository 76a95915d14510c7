"""The flat public API: every exported name resolves, and importing stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cephspine

PACKAGE_DIR = Path(cephspine.__file__).resolve().parent


@pytest.mark.parametrize("name", cephspine.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    if name == "Detector" and not (PACKAGE_DIR / "detector.py").exists():
        pytest.skip("cephspine/detector.py is not part of this tree")
    assert getattr(cephspine, name) is not None


def test_all_is_unique_and_listed_in_dir() -> None:
    assert len(set(cephspine.__all__)) == len(cephspine.__all__)
    assert set(cephspine.__all__) <= set(dir(cephspine))


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cephspine.nope  # noqa: B018


def test_version_is_a_string() -> None:
    assert isinstance(cephspine.__version__, str) and cephspine.__version__


def test_errors_subclass_builtins() -> None:
    assert issubclass(cephspine.ImageReadError, cephspine.CephspineError)
    assert issubclass(cephspine.ImageReadError, ValueError)
    assert issubclass(cephspine.UnsupportedImageError, cephspine.ImageReadError)
    assert issubclass(cephspine.SpacingWarning, cephspine.CephspineWarning)
    assert issubclass(cephspine.CephspineWarning, UserWarning)


def test_example_path() -> None:
    path = cephspine.example_path()
    assert path.is_file() and path.suffix == ".jpg"
    with pytest.raises(KeyError, match="known: \\['ceph'\\]"):
        cephspine.example_path("knee")


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, cephspine; "
        "heavy = [m for m in ('torch', 'pandas', 'pydicom', 'SimpleITK', 'reportlab') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE_DIR.parent,
    )
    assert out.stdout.strip() == ""


def test_every_error_and_warning_is_exported() -> None:
    import inspect

    from cephspine import errors

    public = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, (errors.CephspineError, errors.CephspineWarning))
    }
    assert public, "no error classes found"
    assert public <= set(cephspine.__all__)


# --------------------------------------------------------------------- typed errors


def _error_paths(tiny_model_dir: Path) -> dict[str, tuple[type[BaseException], Any]]:
    """Calls of the public API with bad input, and the built-in each error must also be."""
    import numpy as np

    from cephspine import metrics
    from cephspine.analysis import check_kind
    from cephspine.detector import resolve_device
    from cephspine.plausibility import shape_distance

    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    img = np.random.default_rng(0).random((64, 48)).astype(np.float32)
    pred = cephspine.Prediction(cephspine.CEPH_LANDMARKS, np.zeros((19, 2)), np.ones(19), (64, 48), None, "tiny", "0")
    return {
        "analyze unknown kind": (ValueError, lambda: cephspine.analyze(img, kind="cephalo", detector=det)),
        "analyze kind without its detector": (ValueError, lambda: cephspine.analyze(img, kind="spine", detector=det)),
        "check_kind": (ValueError, lambda: check_kind("knee")),
        "Analysis.from_dict": (ValueError, lambda: cephspine.Analysis.from_dict({"kind": "ceph"})),
        "Analysis.from_json": (ValueError, lambda: cephspine.Analysis.from_json('{"prediction": {}}')),
        "load_image missing file": (ValueError, lambda: cephspine.load_image("no/such/file.jpg")),
        "load_image bad spacing": (ValueError, lambda: cephspine.load_image(img, spacing=-1)),
        "unknown model": (KeyError, lambda: cephspine.Detector.from_pretrained("no_such_model")),
        "unknown register mode": (
            ValueError,
            lambda: cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu", register="sometimes"),
        ),
        "unknown device": (ValueError, lambda: resolve_device("tpu")),
        "predict_iter errors mode": (ValueError, lambda: list(det.predict_iter([img], errors="ignore"))),
        "Prediction, wrong shape": (
            ValueError,
            lambda: cephspine.Prediction(pred.names, np.zeros((18, 2)), np.ones(19), (9, 9), None, "", ""),
        ),
        "by_vertebra on a ceph prediction": (ValueError, lambda: pred.by_vertebra()),
        "mre nan_policy": (ValueError, lambda: metrics.mre([1.0, 2.0], nan_policy="drop")),  # type: ignore[arg-type]
        "sdr radii": (ValueError, lambda: metrics.sdr([1.0, 2.0], radii=[-1.0])),
        "scr convention": (ValueError, lambda: metrics.scr([1, 2], [1, 2], convention="nope")),  # type: ignore[arg-type]
        "shape_distance shapes": (ValueError, lambda: shape_distance(np.zeros((3, 2)), np.zeros((4, 2)))),
    }


def test_public_error_paths_raise_cephspine_errors(tiny_model_dir: Path) -> None:
    for what, (builtin, call) in _error_paths(tiny_model_dir).items():
        with pytest.raises(Exception) as info:  # noqa: PT011, B017 - the type is checked below
            call()
        e = info.value
        assert isinstance(e, cephspine.CephspineError), f"{what}: {type(e).__name__}: {e}"
        assert isinstance(e, builtin), f"{what}: {type(e).__name__} is not a {builtin.__name__}"
        assert str(e), what


def test_an_unknown_kind_is_an_invalid_argument(tiny_model_dir: Path) -> None:
    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    with pytest.raises(cephspine.InvalidArgumentError, match="kind must be one of ceph, spine; got 'cephalo'"):
        cephspine.analyze(cephspine.example_path(), kind="cephalo", detector=det)
