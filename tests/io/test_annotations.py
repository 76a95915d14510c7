"""Reading landmark annotations (COCO keypoints JSON, CSV) with typed errors."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cephspine
import cephspine.io
from cephspine.errors import ImageReadError, InputNotFoundError, InvalidArgumentError, LandmarkError
from cephspine.io import annotations as annotations_module
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


# --------------------------------------------------------------------------- untrusted annotation files


def _png(path: Path, h: int = 30, w: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w), np.uint8)).save(path)
    return path


def _one_image(tmp_path: Path, fmt: str, image: str) -> Path:
    """An annotation file (``"coco"`` or ``"csv"``) of one image named ``image``."""
    if fmt == "coco":
        doc = _coco(
            images=[{"id": 1, "file_name": image}],
            annotations=[{"id": 1, "image_id": 1, "category_id": 3, "keypoints": [1, 1, 2] * 3}],
        )
        return _write_json(tmp_path / "ann.json", doc)
    path = tmp_path / "ann.csv"
    _rows({image: np.ones((3, 2))}).to_csv(path, index=False)
    return path


def _image_folder(tmp_path: Path) -> Path:
    """``tmp_path/images`` with images and links into and out of it, beside ``secret.png``."""
    folder = tmp_path / "images"
    _png(folder / "one.png")
    _png(folder / "sub" / "two.png")
    _png(tmp_path / "secret.png")
    (folder / "alias.png").symlink_to(folder / "one.png")
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    (folder / "gone-link.png").symlink_to(tmp_path / "gone.png")
    (folder / "up").symlink_to(tmp_path, target_is_directory=True)
    return folder


@pytest.mark.parametrize("fmt", ["coco", "csv"])
@pytest.mark.parametrize(
    ("existing", "missing"),
    [
        ("../secret.png", "../gone.png"),
        ("sub/../../secret.png", "sub/../../gone.png"),
        ("{root}/secret.png", "{root}/gone.png"),
        ("link.png", "gone-link.png"),
        ("up/secret.png", "up/gone.png"),
        ("alias.png/../../secret.png", "alias.png/../../gone.png"),
    ],
)
def test_image_names_leaving_the_folder_are_refused_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, existing: str, missing: str
) -> None:
    folder = _image_folder(tmp_path)
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail(f"opened {a}"))
    monkeypatch.setattr(cephspine.io, "load_image", lambda *a, **k: pytest.fail(f"loaded {a}"))
    messages = []
    for name in (existing.format(root=tmp_path), missing.format(root=tmp_path)):
        path = _one_image(tmp_path, fmt, name)
        with pytest.raises(InvalidArgumentError, match="is not a path inside the image folder") as info:
            read_annotations(path, images=folder)
        message = str(info.value)
        assert message.startswith(f"{path}: image {name!r} ")
        messages.append(message.replace(repr(name), "NAME"))
    assert messages[0] == messages[1]  # nothing tells whether the file outside exists


@pytest.mark.parametrize("fmt", ["coco", "csv"])
@pytest.mark.parametrize("name", ["sub/two.png", "./one.png", "sub/../one.png", "alias.png", "up/images/one.png"])
def test_image_names_inside_the_folder_are_read(tmp_path: Path, fmt: str, name: str) -> None:
    ann = read_annotations(_one_image(tmp_path, fmt, name), images=_image_folder(tmp_path))
    assert ann.image_sizes == {name: (30, 40)}


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("one.png\x00.txt", InvalidArgumentError, "is not a path inside the image folder"),
        ("sub", InvalidArgumentError, "image sub in .* is not a regular file"),
        ("fifo.png", InvalidArgumentError, "image fifo.png in .* is not a regular file"),
        ("x" * 5000 + ".png", InputNotFoundError, "is not in"),
    ],
)
def test_odd_image_names_are_typed_errors(tmp_path: Path, name: str, error: type, match: str) -> None:
    folder = _image_folder(tmp_path)
    os.mkfifo(folder / "fifo.png")
    path = _one_image(tmp_path, "coco", name)
    with pytest.raises(error, match=match) as info:
        _within(10, lambda: read_annotations(path, images=folder))
    assert str(info.value).startswith(str(path))


def test_image_sizes_are_bounded_like_load_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "images"
    _png(folder / "one.png", h=4, w=40)
    with pytest.raises(ImageReadError, match="one.png: absurd image dimensions 4x40"):
        read_annotations(_one_image(tmp_path, "csv", "one.png"), images=folder)
    _png(folder / "one.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40 × 30 px is now a decompression bomb
    with pytest.raises(ImageReadError, match="one.png: image too large to decode safely"):
        read_annotations(_one_image(tmp_path, "csv", "one.png"), images=folder)


_HUGE = 10**400  # a JSON integer beyond the float range


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["images"][0].update(width=float("inf")), r"images\[0\]: width is inf; it must be a whole number"),
        (lambda d: d["images"][0].update(height=float("nan")), r"images\[0\]: height is nan"),
        (lambda d: d["images"][0].update(width=_HUGE), r"images\[0\]: width is 1000"),
        (lambda d: d["images"][0].update(width=0), r"images\[0\]: width is 0"),
        (lambda d: d["images"][0].update(width=40.5), r"images\[0\]: width is 40.5"),
        (lambda d: d["images"][0].update(width="40"), r"images\[0\]: width is '40'"),
        (lambda d: d["images"][0].update(width=True), r"images\[0\]: width is true"),
        (lambda d: d["images"][1].update(height=30_001), r"images\[1\]: height is 30001; .* from 1 to 30000"),
        (lambda d: d["images"][0].update(id=[7]), r"images\[0\]: id is \[7\]; an image id must be an integer or"),
        (lambda d: d["images"][0].update(id=7.0), r"images\[0\]: id is 7.0"),
        (lambda d: d["images"][0].update(id=None), r"images\[0\]: id is null"),
        (lambda d: d["images"][0].update(file_name={"a": 1}), r"images\[0\]: file_name is an object; it must be"),
        (lambda d: d["images"][0].update(file_name=""), r"images\[0\]: file_name is ''"),
        (lambda d: d["images"].append([1, 2]), r"images\[2\] is \[1, 2\], not an object"),
        (lambda d: d["images"][0].update(pixel_spacing_mm=[_HUGE, 0.1]), "pixel spacing .* not positive and finite"),
        (lambda d: d["images"][0].update(pixel_spacing_mm=["0.1", "0.1"]), "pixel spacing .* is not two numbers"),
        (lambda d: d["images"][0].update(pixel_spacing_mm=[0.1, 0.1, 0.1]), "pixel spacing .* is not two numbers"),
        (lambda d: d["annotations"][0].update(image_id=[7]), r"annotations\[0\]: image_id is \[7\]; it must be"),
        (lambda d: d["annotations"][0].update(category_id={}), r"annotations\[0\]: category_id is an object"),
        (lambda d: d["annotations"].append("box"), r"annotations\[3\] is 'box', not an object"),
        (lambda d: d["annotations"][0].update(keypoints=5), r"annotations\[0\] \(image one.png\): keypoints is 5"),
        (lambda d: d["annotations"][0].update(keypoints=[[1, 2, 2]] * 3), r"keypoints hold \[1, 2, 2\]; they must"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, "1"), "keypoints hold '1'; they must be a flat"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(1, True), "keypoints hold true"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(5, 3), r"landmark\(s\) b have a visibility v other"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(2, None), r"landmark\(s\) a have a visibility"),
        (lambda d: d.update(categories=5), "categories is 5, not an array"),
        (lambda d: d["categories"].append(None), r"categories\[2\] is null, not an object"),
        (lambda d: d["categories"][0].update(keypoints="abc"), r"categories\[0\]: keypoints is 'abc'; it must be an"),
        (lambda d: d["categories"][0].update(keypoints=[1, 2, 3]), r"categories\[0\]: keypoints is \[1, 2, 3\]"),
        (lambda d: d["categories"][0].update(id=[3]), r"categories\[0\]: id is \[3\]; a category id must be"),
        (lambda d: d["categories"].append(dict(d["categories"][0])), "category id 3 listed more than once"),
    ],
)
def test_coco_fields_are_checked_by_type_and_range(tmp_path: Path, change: Any, match: str) -> None:
    doc = _coco()
    change(doc)
    path = _write_json(tmp_path / "bad.json", doc)
    with pytest.raises(InvalidArgumentError, match=match) as info:
        read_annotations(path)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, _HUGE), r"image one.png: landmark\(s\) a have no"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(4, float("-inf")), r"landmark\(s\) b have no finite"),
        (lambda d: d["categories"][0].update(keypoints=["a", "b", "a"]), r"landmark\(s\) a named more than once"),
    ],
)
def test_coco_landmark_errors(tmp_path: Path, change: Any, match: str) -> None:
    doc = _coco()
    change(doc)
    path = _write_json(tmp_path / "bad.json", doc)
    with pytest.raises(LandmarkError, match=match) as info:
        read_annotations(path)
    assert str(info.value).startswith(str(path))


def test_coco_without_sizes_and_with_boxes_only_categories(tmp_path: Path) -> None:
    doc = _coco()
    for img in doc["images"]:
        del img["width"], img["height"]
    doc["categories"].append({"name": "no id, no keypoints"})
    doc["annotations"][2]["keypoints"] = None  # a box with no keypoints
    assert read_annotations(_write_json(tmp_path / "kp.json", doc)).image_sizes == {}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[" * 100_000 + "]" * 100_000, "not a JSON file this reader accepts .nested too deeply"),
        ('{"images": [' * 50_000, "not a JSON file"),
        ("1" * 5000, "not a JSON file"),
        (b"\xff\xfe{}", "not a JSON file"),
    ],
)
def test_hostile_json_is_a_typed_error(tmp_path: Path, text: str | bytes, match: str) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InvalidArgumentError, match=match) as info:
        read_annotations(path)
    assert str(info.value).startswith(str(path))


def _within(seconds: float, call: Any) -> Any:
    """``call()`` in a thread, failing the test if it does not return within ``seconds``."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_only_regular_annotation_files_are_read(tmp_path: Path, kind: str, suffix: str) -> None:
    path = tmp_path / f"ann{suffix}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(InvalidArgumentError, match="ann.*: not a regular file; annotations are read from regular"):
        _within(10, lambda: read_annotations(path))


@pytest.mark.parametrize("fmt", ["coco", "csv"])
def test_annotation_file_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    path = _one_image(tmp_path, fmt, "one.png")
    monkeypatch.setattr(annotations_module, "MAX_ANNOTATION_BYTES", path.stat().st_size)
    assert list(read_annotations(path)) == ["one.png"]
    monkeypatch.setattr(annotations_module, "MAX_ANNOTATION_BYTES", path.stat().st_size - 1)
    with pytest.raises(InvalidArgumentError, match=rf"{path.name}: {path.stat().st_size} bytes, more than the"):
        read_annotations(path)


def test_annotation_file_is_checked_again_on_the_open_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _one_image(tmp_path, "csv", "one.png")
    monkeypatch.setattr(annotations_module, "MAX_ANNOTATION_BYTES", 64)
    monkeypatch.setattr(annotations_module, "_check_regular", lambda st, p: None)  # as if it grew after the stat
    with pytest.raises(InvalidArgumentError, match=f"{path.name}: .*more than the limit of 64"):
        read_annotations(path)
