"""Reading landmark annotations (COCO keypoints JSON, CSV) with typed errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cephspine
from cephspine.errors import InputNotFoundError, InvalidArgumentError, LandmarkError
from cephspine.io.annotations import Annotations, read_annotations
from cephspine.radiograph import Spacing

NAMES = ("a", "b", "c")


def _coco(images: list[dict[str, Any]] | None = None, annotations: list[dict[str, Any]] | None = None) -> dict:
    """A general COCO keypoints document (not written by cephspine) with two images."""
    return {
        "images": images
        if images is not None
        else [
            {"id": 7, "file_name": "one.png", "width": 40, "height": 30},
            {"id": 9, "file_name": "two.png", "width": 40, "height": 30},
        ],
        "annotations": annotations
        if annotations is not None
        else [
            {"id": 1, "image_id": 7, "category_id": 3, "keypoints": [1, 2, 2, 3.5, 4.25, 1, 5, 6, 2]},
            {"id": 2, "image_id": 9, "category_id": 3, "keypoints": [7, 8, 2, 9, 10, 2, 11, 12, 2]},
            {"id": 3, "image_id": 9, "category_id": 4, "bbox": [0, 0, 1, 1]},  # a plain box: ignored
        ],
        "categories": [{"id": 3, "name": "thing", "keypoints": list(NAMES), "skeleton": []}, {"id": 4, "name": "box"}],
    }


def _write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _rows(images: dict[str, np.ndarray], names: tuple[str, ...] = NAMES) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"image": img, "landmark": n, "x_px": x, "y_px": y}
            for img, xy in images.items()
            for n, (x, y) in zip(names, xy)
        ]
    )


# --------------------------------------------------------------------------- COCO


def test_general_coco_keypoints(tmp_path: Path) -> None:
    ann = read_annotations(_write_json(tmp_path / "kp.json", _coco()))
    assert isinstance(ann, Annotations) and ann.names == NAMES
    assert list(ann) == ["one.png", "two.png"] and len(ann) == 2
    np.testing.assert_array_equal(ann["one.png"], [[1, 2], [3.5, 4.25], [5, 6]])
    assert ann["two.png"].dtype == np.float64 and ann["two.png"].shape == (3, 2)
    assert ann.image_sizes == {"one.png": (30, 40), "two.png": (30, 40)}
    assert ann.spacing == {}


def test_coco_spacing_is_kept(tmp_path: Path) -> None:
    doc = _coco()
    doc["images"][0]["pixel_spacing_mm"] = [0.1, 0.2]
    ann = read_annotations(_write_json(tmp_path / "kp.json", doc))
    assert ann.spacing == {"one.png": Spacing(0.1, 0.2)}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: d["annotations"][0].update(image_id=99), InvalidArgumentError, "image id 99, which is not among"),
        (lambda d: d["annotations"][0]["keypoints"].pop(), LandmarkError, "one.png: 8 keypoint values where 3"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(5, 0), LandmarkError, r"one.png: landmark\(s\) b not"),
        (lambda d: d["annotations"][1].update(image_id=7), LandmarkError, "one.png has more than one keypoint"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, 40.5), LandmarkError, r"a \(40.5, 2\)"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, None), LandmarkError, "a have no finite"),
        (lambda d: d["images"].append(dict(d["images"][0], id=8)), LandmarkError, "one.png' listed more than once"),
        (lambda d: d.update(categories=[]), InvalidArgumentError, "no category with keypoint names"),
        (lambda d: d.update(annotations=[]), InvalidArgumentError, "no keypoint annotations"),
        (lambda d: d["annotations"][0].update(category_id=4), InvalidArgumentError, "category 4, which has no"),
        (lambda d: d.pop("images"), InvalidArgumentError, "not a COCO file"),
        (
            lambda d: (
                d["categories"].append({"id": 5, "keypoints": ["a", "b", "z"]})
                or d["annotations"][1].update(category_id=5)
            ),
            LandmarkError,
            "same for every image",
        ),
    ],
)
def test_coco_errors_name_the_file_and_cause(tmp_path: Path, change: Any, error: type, match: str) -> None:
    doc = _coco()
    change(doc)
    path = _write_json(tmp_path / "bad.json", doc)
    with pytest.raises(error, match=match) as info:
        read_annotations(path)
    assert str(info.value).startswith(str(path))


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="x.json: not a JSON file"):
        read_annotations(path)


# --------------------------------------------------------------------------- CSV


def test_csv_with_spacing_in_any_landmark_order(tmp_path: Path) -> None:
    one = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    df = _rows({"one.png": one, "two.png": one + 10})
    df["spacing_mm"] = [0.1] * 3 + [np.nan] * 3
    df = pd.concat([df.iloc[:3], df.iloc[3:].iloc[::-1]])  # two.png's rows in another order
    df.to_csv(tmp_path / "lm.csv", index=False)
    ann = cephspine.read_annotations(tmp_path / "lm.csv")
    assert ann.names == NAMES
    np.testing.assert_array_equal(ann["two.png"], one + 10)
    assert ann.spacing == {"one.png": Spacing(0.1, 0.1)}


def test_csv_row_col_spacing(tmp_path: Path) -> None:
    df = _rows({"one.png": np.ones((3, 2))})
    df["row_mm"], df["col_mm"] = 0.1, 0.15
    df.to_csv(tmp_path / "lm.csv", index=False)
    assert read_annotations(tmp_path / "lm.csv").spacing == {"one.png": Spacing(0.1, 0.15)}


def _bad_rows(kind: str) -> pd.DataFrame:
    xy = np.ones((3, 2))
    df = _rows({"one.png": xy, "two.png": xy})
    if kind == "missing column":
        return df.drop(columns=["y_px"])
    if kind == "duplicate":
        df.loc[1, "landmark"] = "a"
    elif kind == "missing":
        df = df.drop(index=4)
    elif kind == "inconsistent":
        df.loc[5, "landmark"] = "z"
    elif kind == "non-finite":
        df.loc[2, "x_px"] = np.inf
    elif kind == "not a number":
        df["x_px"] = df["x_px"].astype(object)
        df.loc[2, "x_px"] = "left"
    elif kind == "bad spacing":
        df["spacing_mm"] = -1.0
    elif kind == "spacing differs":
        df["spacing_mm"] = [0.1, 0.2, 0.1, 0.1, 0.1, 0.1]
    return df


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("missing column", InvalidArgumentError, "missing column.s. y_px; an annotation CSV needs image, landmark"),
        ("duplicate", LandmarkError, r"one.png: landmark\(s\) a given more than once"),
        ("missing", LandmarkError, "two.png: landmarks differ from those of image one.png .missing b"),
        ("inconsistent", LandmarkError, "two.png: .*z not in image one.png"),
        ("non-finite", LandmarkError, r"one.png: landmark\(s\) c have no finite"),
        ("not a number", LandmarkError, r"one.png: landmark\(s\) c have no finite"),
        ("bad spacing", InvalidArgumentError, "one.png: pixel spacing .* not positive"),
        ("spacing differs", InvalidArgumentError, "one.png: spacing_mm differs between its rows"),
    ],
)
def test_csv_errors_name_the_file_and_cause(tmp_path: Path, kind: str, error: type, match: str) -> None:
    path = tmp_path / "bad.csv"
    _bad_rows(kind).to_csv(path, index=False)
    with pytest.raises(error, match=match) as info:
        read_annotations(path)
    assert str(info.value).startswith(str(path))


# --------------------------------------------------------------------------- files and folders


def test_missing_file_and_other_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="gone.csv: no such annotation file"):
        read_annotations(tmp_path / "gone.csv")
    (tmp_path / "lm.txt").write_text("x")
    with pytest.raises(InvalidArgumentError, match="lm.txt: annotations must be a COCO keypoints .json or a .csv"):
        read_annotations(tmp_path / "lm.txt")


def test_images_folder_gives_the_sizes(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "one.png")
    _rows({"one.png": np.array([[1.0, 2.0], [39.5, 29.5], [0, 0]])}).to_csv(tmp_path / "lm.csv", index=False)
    ann = read_annotations(tmp_path / "lm.csv", images=tmp_path)
    assert ann.image_sizes == {"one.png": (30, 40)}
    _rows({"one.png": np.array([[1.0, 2.0], [39.5, 30.0], [0, 0]])}).to_csv(tmp_path / "out.csv", index=False)
    with pytest.raises(LandmarkError, match=r"out.csv: image one.png: landmark\(s\) outside the image .40 × 30 px.: b"):
        read_annotations(tmp_path / "out.csv", images=tmp_path)
    _rows({"other.png": np.ones((3, 2))}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(InputNotFoundError, match="other.csv: image other.png is not in"):
        read_annotations(tmp_path / "other.csv", images=tmp_path)
    with pytest.raises(InputNotFoundError, match="no such image folder"):
        read_annotations(tmp_path / "lm.csv", images=tmp_path / "nope")
