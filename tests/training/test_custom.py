"""Training and evaluating a model on the user's own landmark set (six shared ISBI images,
five landmarks, a tiny network and a few steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cephspine.anatomy import CEPH_LANDMARKS

IDS = ("001", "002", "003", "004", "005", "006")
FIVE = ("sella", "nasion", "menton", "gonion", "articulare")
pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def isbi_images() -> Path:
    from tests.conftest import SHARED_DATA

    root = SHARED_DATA / "isbi2015"
    needed = [root / "images" / f"{i}.jpg" for i in IDS] + [
        root / w / f"{i}.txt" for w in ("senior", "junior") for i in IDS
    ]
    if not all(p.is_file() for p in needed):
        from tests.conftest import NO_DATA_REASON

        pytest.skip(NO_DATA_REASON)
    return (root / "images").resolve()


def write_csv(path: Path, isbi_images: Path, ids=IDS, names=FIVE, spacing: bool = True) -> Path:
    """The five landmarks of ``ids`` (mean of the two doctors) as an annotation CSV."""
    rows = ["image,landmark,x_px,y_px" + (",spacing_mm" if spacing else "")]
    for i in ids:
        pts = [np.loadtxt(isbi_images.parent / w / f"{i}.txt", delimiter=",") for w in ("senior", "junior")]
        xy = (pts[0] + pts[1]) / 2
        for n in names:
            x, y = xy[CEPH_LANDMARKS.index(n)]
            rows.append(f"{i}.jpg,{n},{x:.1f},{y:.1f}" + (",0.1" if spacing else ""))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(isbi_images: Path, tmp_path_factory, tiny_config) -> tuple[Path, Path]:
    from cephspine.training.custom import train_landmarks

    tmp = tmp_path_factory.mktemp("custom")
    csv = write_csv(tmp / "five.csv", isbi_images)
    out = train_landmarks(isbi_images, csv, tmp / "model", epochs=1, steps=2, cfg=tiny_config, name="mine")
    return out, csv


def test_trained_model_loads_and_predicts_the_users_landmarks(trained, isbi_images: Path, tiny_config) -> None:
    from cephspine.detector import Detector

    out, _ = trained
    card = json.loads((out / "card.json").read_text())
    assert card["landmarks"] == list(FIVE)
    assert card["user_trained"] is True and card["anatomy"] == "custom"
    assert "not a model shipped with cephspine" in (out / "MODEL_CARD.md").read_text()
    det = Detector.from_pretrained(out, device="cpu")
    assert det.names == FIVE and det.config.n_landmarks == 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = det.predict(isbi_images / "006.jpg", spacing=0.1)
    assert pred.names == FIVE and pred.xy_px.shape == (5, 2) and np.isfinite(pred.xy_px).all()
    assert not [w for w in caught if "does not look like" in str(w.message)]  # no ceph plausibility check


def test_card_numbers_come_from_its_own_held_out_images(trained, isbi_images: Path) -> None:
    from cephspine.detector import Detector
    from cephspine.training.custom import evaluate_landmarks, load_landmark_set, split_images

    out, csv = trained
    m = json.loads((out / "card.json").read_text())["metrics"]
    train, held = split_images([f"{i}.jpg" for i in IDS])
    assert m["held_out"] == held and m["n_images"] == len(held) == 1 and not set(held) & set(train)
    ls = load_landmark_set(isbi_images, csv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_landmarks(Detector.from_pretrained(out, device="cpu"), ls, held, progress=False)
    assert m["mre_mm"] == pytest.approx(float(ev.errors_mm.mean()), rel=1e-6)
    assert m["sdr_2mm_pct"] == pytest.approx(100 * float((ev.errors_mm <= 2).mean()))
    assert set(m["per_landmark_mre_mm"]) == set(FIVE)
    assert {"sdr_2.5mm_pct", "sdr_3mm_pct", "sdr_4mm_pct"} <= set(m)


def test_split_is_seeded_and_holds_out_at_least_one() -> None:
    from cephspine.errors import InvalidArgumentError
    from cephspine.training.custom import split_images

    names = [f"{i:03d}.png" for i in range(10)]
    assert split_images(names) == split_images(list(reversed(names)))
    assert len(split_images(names)[1]) == 2
    assert len(split_images(names[:2])[1]) == 1 and len(split_images(names[:2])[0]) == 1
    with pytest.raises(InvalidArgumentError):
        split_images(names[:1])


def test_init_maps_output_channels_by_landmark_name(tmp_path: Path, tiny_config, make_model_dir) -> None:
    from cephspine.training.ceph import init_state
    from cephspine.training.custom import mapped_init

    src = make_model_dir(tmp_path / "src", tiny_config)  # the 19 ISBI landmarks
    names = ("menton", "my_point", "sella")
    cfg = type(tiny_config)(**{**tiny_config.to_dict(), "n_landmarks": 3})
    files = mapped_init(src, cfg, names, tmp_path)
    for stage in ("coarse", "refine"):
        old, new = init_state(src, stage), torch.load(files[stage], weights_only=True)
        target = getattr(cfg, f"build_{stage}")().state_dict()
        assert set(new) == set(target)  # every tensor has a start (copied or fresh)
        out_layers = [k for k in new if new[k].shape != old[k].shape and new[k].shape[0] == 3]
        assert out_layers, stage
        for k in out_layers:
            ax = next(a for a, (p, q) in enumerate(zip(old[k].shape, new[k].shape)) if p != q)
            for i, n in ((0, "menton"), (2, "sella")):
                src_i = CEPH_LANDMARKS.index(n)
                assert torch.equal(new[k].select(ax, i), old[k].select(ax, src_i)), (k, n)
            assert not any(
                torch.equal(new[k].select(ax, 1), old[k].select(ax, j)) for j in range(19)
            )  # an unknown name starts fresh


def test_bad_inputs_give_typed_errors_naming_the_file(isbi_images: Path, tmp_path: Path, tiny_config) -> None:
    from cephspine.errors import InputNotFoundError, InvalidArgumentError, LandmarkError, SpacingError
    from cephspine.training.custom import train_landmarks

    def train(csv: Path) -> None:
        train_landmarks(isbi_images, csv, tmp_path / "m", epochs=1, steps=1, cfg=tiny_config)

    missing = write_csv(tmp_path / "missing.csv", isbi_images, ids=IDS[:2])
    missing.write_text(missing.read_text() + "".join(f"999.jpg,{n},10,10,0.1\n" for n in FIVE))
    with pytest.raises(InputNotFoundError, match=r"missing\.csv.*999\.jpg"):
        train(missing)
    one = write_csv(tmp_path / "one.csv", isbi_images, ids=IDS[:1])
    with pytest.raises(InvalidArgumentError, match=r"one\.csv: 1 annotated image"):
        train(one)
    mixed = tmp_path / "mixed.csv"
    a = write_csv(tmp_path / "a.csv", isbi_images, ids=IDS[:1]).read_text()
    b = write_csv(tmp_path / "b.csv", isbi_images, ids=IDS[1:2], names=FIVE[:4]).read_text()
    mixed.write_text(a + "".join(b.splitlines(keepends=True)[1:]))
    with pytest.raises(LandmarkError, match=r"mixed\.csv.*002\.jpg.*missing articulare"):
        train(mixed)
    bare = write_csv(tmp_path / "bare.csv", isbi_images, ids=IDS[:2], spacing=False)
    with pytest.raises(SpacingError, match=r"bare\.csv: no pixel spacing for 2 image"):
        train(bare)
    assert not (tmp_path / "m").exists()  # nothing written on bad input


def test_evaluate_rejects_landmarks_the_model_lacks(trained, isbi_images: Path, tmp_path: Path) -> None:
    from cephspine.detector import Detector
    from cephspine.errors import LandmarkError
    from cephspine.training.custom import evaluate_landmarks, load_landmark_set

    out, _ = trained
    csv = write_csv(tmp_path / "other.csv", isbi_images, ids=IDS[:1], names=("sella", "pogonion"))
    with pytest.raises(LandmarkError, match=r"other\.csv: landmark\(s\) pogonion"):
        evaluate_landmarks(Detector.from_pretrained(out, device="cpu"), load_landmark_set(isbi_images, csv))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cephspine", *args], capture_output=True, text=True, env=env)


def test_cli_train_then_evaluate(isbi_images: Path, tmp_path: Path, tiny_config, make_model_dir) -> None:
    """``--init`` with a tiny model directory: its (tiny) network settings are used."""
    init = make_model_dir(tmp_path / "tiny", tiny_config)
    csv = write_csv(tmp_path / "five.csv", isbi_images, ids=IDS[:3], spacing=False)
    out = tmp_path / "model"
    r = _cli(
        "train", "landmarks", "--images", str(isbi_images), "--annotations", str(csv), "--out", str(out),
        "--init", str(init), "--epochs", "1", "--steps", "1", "--spacing", "0.1", "--threads", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"model written to {out}" in r.stdout and "held-out (1 images): MRE" in r.stdout
    card = json.loads((out / "card.json").read_text())
    assert card["landmarks"] == list(FIVE) and card["config"]["coarse_base"] == tiny_config.coarse_base
    r = _cli(
        "evaluate", "landmarks", "-m", str(out), "--annotations", str(csv), "--images", str(isbi_images),
        "--spacing", "0.1", "-f", "json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["landmark"] for row in rows] == ["all", *FIVE] and rows[0]["n_points"] == 15
    r = _cli("evaluate", "landmarks", "-m", str(out), "--annotations", str(csv), "--images", str(isbi_images))
    assert r.returncode == 1 and "no pixel spacing for 3 image(s)" in r.stderr and "--spacing" in r.stderr


def test_cli_retraining_into_the_same_out_with_other_settings_is_refused(
    isbi_images: Path, tmp_path: Path, tiny_config, make_model_dir
) -> None:
    init = make_model_dir(tmp_path / "tiny", tiny_config)
    csv = write_csv(tmp_path / "five.csv", isbi_images, ids=IDS[:3])
    out = tmp_path / "model"

    def train(*extra: str, annotations: Path = csv) -> subprocess.CompletedProcess[str]:
        return _cli(
            "train", "landmarks", "--images", str(isbi_images), "--annotations", str(annotations), "--out", str(out),
            "--init", str(init), "--threads", "1", *extra,
        )  # fmt: skip

    r = train("--epochs", "1", "--steps", "1")
    assert r.returncode == 0, r.stderr
    weights = (out / "model.safetensors").read_bytes()
    r = train("--epochs", "2", "--steps", "1")
    assert r.returncode == 1 and "made with other epochs (1 there, 2 now)" in r.stderr
    r = train("--epochs", "1", "--steps", "3")
    assert r.returncode == 1 and "made with other steps (1 there, 3 now)" in r.stderr
    original = csv.read_text()
    lines = original.splitlines(keepends=True)
    image, name, x, rest = lines[1].split(",", 3)
    csv.write_text(lines[0] + f"{image},{name},{float(x) + 1:.1f},{rest}" + "".join(lines[2:]))  # one pixel
    r = train("--epochs", "1", "--steps", "1")
    assert r.returncode == 1 and "made with other landmark positions;" in r.stderr
    bare = write_csv(tmp_path / "bare.csv", isbi_images, ids=IDS[:3], spacing=False)
    r = train("--epochs", "1", "--steps", "1", "--spacing", "0.2", annotations=bare)
    assert r.returncode == 1 and "made with other annotation file, pixel spacings;" in r.stderr
    assert (out / "model.safetensors").read_bytes() == weights  # nothing changed by a refused run
    csv.write_text(original)
    r = train("--epochs", "1", "--steps", "1")  # the same settings: resumes
    assert r.returncode == 0, r.stderr


def test_card_records_its_training_images_and_evaluating_on_them_warns(trained, isbi_images: Path) -> None:
    from cephspine.detector import Detector
    from cephspine.errors import TrainingImagesWarning
    from cephspine.training.custom import evaluate_landmarks, load_landmark_set, split_images

    out, csv = trained
    train, held = split_images([f"{i}.jpg" for i in IDS])
    assert json.loads((out / "card.json").read_text())["trained_images"] == train
    det = Detector.from_pretrained(out, device="cpu")
    ls = load_landmark_set(isbi_images, csv)
    with pytest.warns(TrainingImagesWarning, match=f"trained on {len(train)} of the {len(IDS)} evaluated"):
        ev = evaluate_landmarks(det, ls, progress=False)
    assert len(ev.warnings) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", TrainingImagesWarning)
        assert evaluate_landmarks(det, ls, held, progress=False).warnings == ()
