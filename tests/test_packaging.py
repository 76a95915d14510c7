"""Packaging: which packages the project ships, and how an editable install finds them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_INIT = REPO / "cephspine" / "__init__.py"


def _project_copy(root: Path) -> Path:
    """A minimal project with the real pyproject.toml, the package's folder layout and
    look-alike folders next to it (the quickstart's output, another cephspine* name)."""
    root.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, root / name)
    for pkg in ("cephspine", "cephspine/io", "cephspine/geometry"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "cephspine" / "py.typed").write_text("")
    (root / "cephspine" / "weights" / "ceph").mkdir(parents=True)
    (root / "cephspine" / "weights" / "ceph" / "MODEL_CARD.md").write_text("card\n")
    (root / "cephspine-quickstart").mkdir()
    (root / "cephspine-quickstart" / "ceph_measures.csv").write_text("measure\n")
    (root / "cephspine_notes").mkdir()
    (root / "cephspine_notes" / "__init__.py").write_text("")
    return root


def _is_cephspine(pkg: str) -> bool:
    return pkg == "cephspine" or pkg.startswith("cephspine.")


def test_package_list_holds_only_cephspine_and_its_subpackages(tmp_path: Path) -> None:
    pyprojecttoml = pytest.importorskip("setuptools.config.pyprojecttoml")
    root = _project_copy(tmp_path / "project")
    config = pyprojecttoml.read_configuration(root / "pyproject.toml", expand=True)
    packages = config["tool"]["setuptools"]["packages"]
    assert "cephspine" in packages and "cephspine.io" in packages and "cephspine.geometry" in packages
    assert [p for p in packages if not _is_cephspine(p)] == []

    # the real checkout too, whatever output folders lie next to the package
    packages = pyprojecttoml.read_configuration(REPO / "pyproject.toml", expand=True)["tool"]["setuptools"]["packages"]
    assert "cephspine.geometry" in packages
    assert [p for p in packages if not _is_cephspine(p)] == []


def test_editable_install_puts_the_checkout_on_the_path_not_an_import_hook(tmp_path: Path) -> None:
    """An import hook (setuptools' meta-path finder) loses to a namespace package named
    ``cephspine`` in the working directory; a .pth path entry does not."""
    pytest.importorskip("setuptools")
    root = _project_copy(tmp_path / "project")
    out = tmp_path / "wheel"
    out.mkdir()
    code = f"from setuptools import build_meta; print(build_meta.build_editable({str(out)!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = out / proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        pth = [n for n in names if n.endswith(".pth")]
        assert len(pth) == 1, names
        entries = zf.read(pth[0]).decode().split()
    assert [n for n in names if n.endswith(".py")] == []  # no finder module
    assert [Path(e) for e in entries] == [root.resolve()]


@pytest.mark.parametrize("shadow", ["empty folder", "clone"])
def test_import_from_the_folder_holding_a_folder_named_cephspine(tmp_path: Path, shadow: str) -> None:
    """``import cephspine`` next to a folder named ``cephspine`` (e.g. the parent folder of
    a clone named ``cephspine/``) imports the installed package, not a namespace package.
    Checks the environment's install, as done by the README's command and ``.ci/run``."""
    if shadow == "empty folder":
        (tmp_path / "cephspine").mkdir()
    else:
        (tmp_path / "cephspine").symlink_to(REPO, target_is_directory=True)
    code = (
        "import json, cephspine; "
        "print(json.dumps([getattr(cephspine, '__file__', None), hasattr(cephspine, 'analyze')]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    file, has_analyze = json.loads(proc.stdout.strip().splitlines()[-1])
    assert file is not None, "imported a namespace package"
    assert Path(file).resolve() == PACKAGE_INIT
    assert has_analyze
