"""ISBI 2015 and AASCE readers, on small synthetic folders and on the shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cephspine.anatomy import CORNERS, SPINE_LANDMARKS, VERTEBRAE
from cephspine.errors import DatasetError
from cephspine.io.datasets import AasceDataset, IsbiDataset, spine_order_defects
from cephspine.radiograph import Spacing

# ----------------------------------------------------------------------------- ISBI


def _isbi_points(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(5, 55, size=(19, 2)), 1)


def _write_points(path: Path, xy: np.ndarray, extra: str = "") -> None:
    path.write_text("".join(f"{x:g},{y:g}\n" for x, y in xy) + extra)


@pytest.fixture
def isbi_root(tmp_path: Path) -> Path:
    root = tmp_path / "isbi"
    for sub in ("images", "senior", "junior"):
        (root / sub).mkdir(parents=True)
    for i in (1, 2, 3):
        Image.fromarray(np.full((64, 60), 40 * i, np.uint8)).convert("RGB").save(root / "images" / f"{i:03d}.jpg")
        _write_points(root / "senior" / f"{i:03d}.txt", _isbi_points(i), extra="1\n2\n")
        _write_points(root / "junior" / f"{i:03d}.txt", _isbi_points(i) + 1.0)
    # 002: a junior point outside the 60 px wide image; 003: senior file missing
    junior = _isbi_points(2) + 1.0
    junior[4] = (75.0, 10.0)
    _write_points(root / "junior" / "002.txt", junior)
    (root / "senior" / "003.txt").unlink()
    return root


def test_isbi_records(isbi_root: Path) -> None:
    ds = IsbiDataset(isbi_root)
    assert len(ds) == 3
    assert ds.ids == ("001", "002", "003")
    assert "002" in ds
    rec = ds["001"]
    assert rec is not ds["001"]  # built fresh
    assert ds[0].id == "001"
    np.testing.assert_allclose(rec.senior, _isbi_points(1))
    np.testing.assert_allclose(rec.junior, _isbi_points(1) + 1.0)
    np.testing.assert_allclose(rec.landmarks, _isbi_points(1) + 0.5)
    assert rec.landmarks.shape == (19, 2)
    assert rec.image_shape == (64, 60)
    assert rec.defects == ()
    assert [r.id for r in ds] == ["001", "002", "003"]


def test_isbi_radiograph_is_lazy_with_dataset_spacing(isbi_root: Path) -> None:
    rec = IsbiDataset(isbi_root)["001"]
    assert "radiograph" not in vars(rec)
    rg = rec.radiograph
    assert rec.radiograph is rg  # cached on the record
    assert rg.spacing == Spacing(0.1, 0.1)
    assert rg.spacing_source == "dataset"
    assert rg.shape == (64, 60)


def test_isbi_defects_reported_not_raised(isbi_root: Path) -> None:
    ds = IsbiDataset(isbi_root)
    defective = ds.defective()
    assert set(defective) == {"002", "003"}
    kinds_2 = [d.kind for d in defective["002"]]
    assert kinds_2 == ["outside_image"]
    assert "junior" in defective["002"][0].message
    assert "subspinale" in defective["002"][0].message
    kinds_3 = {d.kind for d in defective["003"]}
    assert "missing_annotation" in kinds_3
    rec3 = ds["003"]
    assert np.isnan(rec3.senior).all()
    assert np.isnan(rec3.landmarks).all()  # the mean needs both doctors
    assert not np.isnan(rec3.junior).any()


def test_isbi_single_doctor_ground_truth(isbi_root: Path) -> None:
    senior = IsbiDataset(isbi_root, ground_truth="senior")["001"]
    np.testing.assert_allclose(senior.landmarks, senior.senior)
    junior = IsbiDataset(isbi_root, ground_truth="junior")["003"]
    np.testing.assert_allclose(junior.landmarks, junior.junior)
    with pytest.raises(DatasetError, match="ground_truth"):
        IsbiDataset(isbi_root, ground_truth="both")  # type: ignore[arg-type]


def test_isbi_bad_lines(isbi_root: Path) -> None:
    (isbi_root / "senior" / "001.txt").write_text("1,2\nfoo,bar\n3,4\n")
    rec = IsbiDataset(isbi_root)["001"]
    messages = " | ".join(str(d) for d in rec.defects)
    assert "line 2" in messages
    assert "has 3 of 19 lines" in messages
    assert "missing_points" in messages
    np.testing.assert_allclose(rec.senior[0], (1, 2))
    assert np.isnan(rec.senior[1]).all()


def test_isbi_unreadable_image_is_a_defect(isbi_root: Path) -> None:
    (isbi_root / "images" / "002.jpg").write_bytes(b"garbage")
    rec = IsbiDataset(isbi_root)["002"]
    assert rec.image_shape is None
    assert rec.defects[0].kind == "unreadable_image"


def test_isbi_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'images/' is missing"):
        IsbiDataset(tmp_path)
    ds_root = tmp_path / "x"
    for sub in ("images", "senior", "junior"):
        (ds_root / sub).mkdir(parents=True)
    ds = IsbiDataset(ds_root)
    assert len(ds) == 0
    with pytest.raises(KeyError, match="no image with id"):
        ds["001"]


# ----------------------------------------------------------------------------- AASCE


def _spine(top: float = 20.0, x0: float = 30.0) -> np.ndarray:
    """A clean synthetic spine: 17 boxes 30 px wide, 8 px high, 2 px apart."""
    xy = np.zeros((68, 2))
    for v in range(17):
        y0 = top + v * 10
        xy[4 * v : 4 * v + 4] = [(x0, y0), (x0 + 30, y0), (x0, y0 + 8), (x0 + 30, y0 + 8)]
    return xy


def _tidy(name: str, xy: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image": name,
            "vertebra": [v for v in VERTEBRAE for _ in CORNERS],
            "corner": list(CORNERS) * len(VERTEBRAE),
            "x_px": xy[:, 0],
            "y_px": xy[:, 1],
        }
    )


@pytest.fixture
def aasce_root(tmp_path: Path) -> Path:
    root = tmp_path / "aasce"
    (root / "images").mkdir(parents=True)
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    for n in names + ["e.jpg"]:
        Image.fromarray(np.zeros((200, 100), np.uint8)).save(root / "images" / n)
    clean = _spine()
    swapped = _spine()
    swapped[[20, 21]] = swapped[[21, 20]]  # T6: TL and TR exchanged
    below = _spine(top=40.0)  # L5 bottom at y = 208 on a 200 px image
    tables = [_tidy("a.jpg", clean), _tidy("b.jpg", swapped), _tidy("c.jpg", below)]
    partial = _tidy("d.jpg", clean).drop(index=[5, 6])
    tables.append(partial)
    pd.concat(tables).to_csv(root / "landmarks.csv", index=False)
    pd.DataFrame(
        {
            "image": ["a.jpg", "b.jpg", "c.jpg"],
            "source_name": ["a one.jpg", "b.jpg", "c.jpg"],
            "pt_deg": [10.5, 20.0, 30.0],
            "mt_deg": [5.0, 6.0, 7.0],
            "tl_deg": [1.0, 2.0, 3.0],
        }
    ).to_csv(root / "angles.csv", index=False)
    return root


def test_aasce_records(aasce_root: Path) -> None:
    ds = AasceDataset(aasce_root)
    assert ds.ids == ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")
    rec = ds["a.jpg"]
    assert rec.landmarks.shape == (68, 2)
    np.testing.assert_allclose(rec.landmarks, _spine())
    np.testing.assert_allclose(rec.angles_deg, [10.5, 5.0, 1.0])
    assert rec.source_name == "a one.jpg"
    assert rec.image_shape == (200, 100)
    assert rec.defects == ()
    assert rec.names == SPINE_LANDMARKS
    assert ds[0].id == "a.jpg"


def test_aasce_radiograph_lazy_without_spacing(aasce_root: Path) -> None:
    rec = AasceDataset(aasce_root)["a.jpg"]
    assert "radiograph" not in vars(rec)
    assert rec.radiograph.spacing is None
    assert rec.radiograph.shape == (200, 100)


def test_aasce_defects(aasce_root: Path) -> None:
    ds = AasceDataset(aasce_root)
    found = {k: {d.kind for d in v} for k, v in ds.defective().items()}
    assert "a.jpg" not in found
    assert found["b.jpg"] == {"corner_order"}
    assert "T6" in str(ds["b.jpg"].defects[0])
    assert found["c.jpg"] == {"outside_image"}
    assert "L5_BL" in ds["c.jpg"].defects[0].message
    assert found["d.jpg"] == {"missing_points", "missing_angles"}
    assert np.isnan(ds["d.jpg"].landmarks[5:7]).all()
    assert found["e.jpg"] == {"missing_annotation", "missing_angles"}


def test_aasce_bad_labels_and_duplicates(aasce_root: Path) -> None:
    table = pd.read_csv(aasce_root / "landmarks.csv")
    table.loc[0, "vertebra"] = "C7"
    table.loc[5, "corner"] = "TL"  # duplicates T2_TL, leaves T2_TR missing
    table.to_csv(aasce_root / "landmarks.csv", index=False)
    defects = AasceDataset(aasce_root)["a.jpg"].defects
    text = " | ".join(map(str, defects))
    assert "unknown vertebra/corner label(s): ['C7/TL']" in text
    assert "duplicated point(s) T2_TL" in text
    assert "2 of 68 points missing" in text


def test_aasce_layout_errors(tmp_path: Path, aasce_root: Path) -> None:
    with pytest.raises(DatasetError, match="'landmarks.csv' is missing"):
        AasceDataset(tmp_path)
    pd.DataFrame({"image": ["a.jpg"], "x": [1]}).to_csv(aasce_root / "landmarks.csv", index=False)
    with pytest.raises(DatasetError, match=r"missing column\(s\)"):
        AasceDataset(aasce_root)


def test_spine_order_defects_vertebra_order() -> None:
    xy = _spine()
    assert spine_order_defects(xy) == []
    xy[64:68, 1] -= 200  # L5 moved above everything
    kinds = [d.kind for d in spine_order_defects(xy)]
    assert kinds == ["vertebra_order"]
    xy = _spine()
    xy[[0, 2]] = xy[[2, 0]]  # T1: TL and BL swapped (top/bottom)
    messages = [d.message for d in spine_order_defects(xy)]
    assert messages == ["T1: corners out of order (TL not above BL)"]


# ----------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
def test_shared_isbi(shared_data: Path) -> None:
    ds = IsbiDataset(shared_data / "isbi2015")
    assert len(ds) == 150
    assert ds.ids[0] == "001" and ds.ids[-1] == "150"
    rec = ds["001"]
    assert rec.image_shape == (2400, 1935)
    first_senior = np.loadtxt(shared_data / "isbi2015" / "senior" / "001.txt", delimiter=",")
    np.testing.assert_allclose(rec.senior, first_senior[:19])
    np.testing.assert_allclose(rec.landmarks, (rec.senior + rec.junior) / 2)
    assert ds.defective() == {}


@pytest.mark.shared_data
def test_shared_aasce_known_defects(shared_data: Path) -> None:
    ds = AasceDataset(shared_data / "aasce")
    assert len(ds) == 481
    below = ds["sunhl-1th-25-Jul-2016-49_A_AP.jpg"]
    assert "outside_image" in {d.kind for d in below.defects}
    assert below.image_shape == (2325, 964)
    assert np.nanmax(below.landmarks[:, 1]) == pytest.approx(2382)
    swapped = ds["sunhl-1th-30-Dec-2016-161_A_AP.jpg"]
    assert "corner_order" in {d.kind for d in swapped.defects}
    assert swapped.angles_deg[0] == pytest.approx(156.39, abs=0.01)
    defective = ds.defective()
    assert below.id in defective and swapped.id in defective
    assert len(defective) < len(ds) // 4  # most records are clean
    clean = ds["sunhl-1th-02-Jan-2017-162_A_AP.jpg"]
    assert clean.defects == ()
    np.testing.assert_allclose(clean.angles_deg, [41.139, 14.63, 40.147])
    np.testing.assert_allclose(clean.landmarks[0], [361.0, 72.0])


def test_parse_ids_ranges_and_lists() -> None:
    from cephspine.io.datasets import parse_ids

    assert parse_ids("121-123") == ["121", "122", "123"]
    assert parse_ids("001-002,010") == ["001", "002", "010"]
    assert parse_ids("abc, 7") == ["abc", "7"]
