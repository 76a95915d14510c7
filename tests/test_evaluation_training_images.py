"""Evaluating a model on images it was trained on says so (its card's ``trained_ids``)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import cephspine
from cephspine.errors import TrainingImagesWarning
from cephspine.evaluation import evaluate_ceph, trained_on
from cephspine.registry import read_card, resolve

IDS = ("001", "002", "003")


@pytest.fixture
def isbi(tmp_path: Path) -> Path:
    """A folder in the ISBI 2015 layout with three small synthetic films."""
    from PIL import Image

    data = tmp_path / "isbi"
    for sub in ("images", "senior", "junior"):
        (data / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in IDS:
        Image.fromarray(rng.integers(0, 255, (96, 80), dtype=np.uint8)).save(data / "images" / f"{i}.bmp")
        for doctor in ("senior", "junior"):
            xy = rng.uniform(10, 70, (19, 2))
            (data / doctor / f"{i}.txt").write_text("\n".join(f"{x:.0f},{y:.0f}" for x, y in xy) + "\n")
    return data


def test_the_shipped_ceph_card_names_its_training_images() -> None:
    card = read_card(resolve("ceph"))
    assert trained_on(card, ["001", "121", "150", "151"]) == ["001", "121", "150"]
    assert trained_on({"name": "m"}, ["001"]) == []  # no trained_ids: nothing known


def test_evaluating_on_training_images_warns(isbi: Path, tmp_path: Path, make_model_dir) -> None:
    model = make_model_dir(tmp_path / "m", trained_ids="001-002")
    det = cephspine.Detector.from_pretrained(model, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate_ceph(det, isbi, progress=False)
    (w,) = [c for c in caught if issubclass(c.category, TrainingImagesWarning)]
    assert Path(w.filename).resolve() == Path(__file__).resolve()  # points at the caller
    assert ev.warnings == (str(w.message),)
    assert "tiny 0.0.1 was trained on 2 of the 3 evaluated image(s) (001-002)" in ev.warnings[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate_ceph(det, isbi, ids=["003"], progress=False)
    assert ev.warnings == () and not [c for c in caught if issubclass(c.category, TrainingImagesWarning)]


def test_cli_evaluate_ceph_warns_on_training_images(isbi: Path, tmp_path: Path, make_model_dir) -> None:
    model = make_model_dir(tmp_path / "m", trained_ids="001-003")

    def evaluate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cephspine", "evaluate", "ceph", "--data", str(isbi), "-m", str(model), *args],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    r = evaluate("--ids", "002-003")
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert line.startswith("warning: tiny 0.0.1 was trained on 2 of the 2 evaluated image(s) (002-003): ")
    assert "images it never saw" in line
    r = evaluate("--ids", "001", "-f", "json")
    assert r.returncode == 0 and "warning: tiny 0.0.1 was trained on 1 of the 1" in r.stderr
    assert r.stdout.lstrip().startswith("{")  # stdout stays the JSON
    plain = make_model_dir(tmp_path / "plain")  # a card without trained_ids
    r = subprocess.run(
        [sys.executable, "-m", "cephspine", "evaluate", "ceph", "--data", str(isbi), "-m", str(plain)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0 and "warning:" not in r.stderr


def test_the_shipped_spine_card_names_its_training_films() -> None:
    card = read_card(resolve("spine"))
    trained = card["trained_images"]
    assert len(trained) == 363 and len(set(trained)) == 363  # the card's "363 AASCE training images"
    assert trained_on(card, [trained[0], "not-a-film.jpg"]) == [trained[0]]


@pytest.mark.shared_data
def test_evaluating_the_spine_model_on_its_training_films_warns(shared_data: Path) -> None:
    from cephspine.evaluation import evaluate_spine
    from cephspine.training.spine import split_spine

    train, val, _ = split_spine(shared_data / "aasce")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = cephspine.Detector.from_pretrained("spine", device="cpu")
    with pytest.warns(TrainingImagesWarning, match="trained on 1 of the 2 evaluated"):
        ev = evaluate_spine(det, shared_data / "aasce", ids=[train[0], val[0]], progress=False)
    assert len(ev.warnings) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingImagesWarning)
        assert evaluate_spine(det, shared_data / "aasce", ids=[val[0]], progress=False).warnings == ()
