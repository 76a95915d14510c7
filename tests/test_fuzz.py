"""Fuzzing the input boundary: random bytes, truncated files and random DICOM datasets,
and random COCO JSON and CSV annotation files.

Whatever arrives, `load_image`, `Detector.predict` and `read_annotations` either succeed
or raise a `CephspineError` subclass, and they do not hang.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import cephspine
from cephspine.errors import CephspineError
from cephspine.io.annotations import Annotations
from tests.conftest import dicom_dataset, no_hang

FUZZ = settings(
    max_examples=40,
    deadline=None,  # slow is not wrong on a loaded machine: no_hang fails a hang instead
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (64, 48), dtype=np.uint8)
    out = {}
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif")):
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, format=fmt)
        out[suffix] = buf.getvalue()
    out[".dcm"] = _dicom_bytes(rows=64, cols=48)
    return out


def _dicom_bytes(rows: int, cols: int, **attrs: object) -> bytes:
    buf = io.BytesIO()
    dicom_dataset(rows, cols, seed=1, spacing_mm=None, **attrs).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


VALID = _valid_files()


def _load_or_typed_error(path: Path) -> None:
    try:
        with no_hang(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cephspine.load_image(path)
    except CephspineError as exc:
        assert path.name in str(exc)


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".png", ".jpg", ".tif", ".dcm", ""]))
def test_random_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    _load_or_typed_error(path)


@FUZZ
@given(suffix=st.sampled_from(sorted(VALID)), frac=st.floats(0.0, 0.999))
def test_truncated_files(tmp_path: Path, suffix: str, frac: float) -> None:
    data = VALID[suffix]
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: int(len(data) * frac)])
    _load_or_typed_error(path)


@FUZZ
@given(suffix=st.sampled_from(sorted(VALID)), pos=st.floats(0.0, 0.999), junk=st.binary(min_size=1, max_size=64))
def test_corrupted_files(tmp_path: Path, suffix: str, pos: float, junk: bytes) -> None:
    data = bytearray(VALID[suffix])
    i = int(len(data) * pos)
    data[i : i + len(junk)] = junk
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(bytes(data))
    _load_or_typed_error(path)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@FUZZ
@given(
    rows=st.integers(0, 70),
    cols=st.integers(0, 70),
    bits=st.sampled_from([1, 8, 12, 16, 32]),
    photometric=st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "", "XYZ"]),
    samples=st.integers(0, 4),
    spacing=st.one_of(st.none(), st.lists(st.one_of(st.floats(-1, 10), st.just(float("nan"))), max_size=3)),
    frames=st.one_of(st.none(), st.integers(0, 3)),
)
def test_random_dicom_datasets(
    tmp_path: Path, rows: int, cols: int, bits: int, photometric: str, samples: int, spacing, frames
) -> None:
    attrs: dict[str, object] = {"BitsStored": min(bits, 16), "PhotometricInterpretation": photometric}
    attrs["SamplesPerPixel"] = samples
    if spacing is not None:
        attrs["PixelSpacing"] = [str(v)[:16] for v in spacing]
    if frames is not None:
        attrs["NumberOfFrames"] = frames
    try:
        data = _dicom_bytes(64, 48, **attrs)
    except Exception:  # pydicom refuses to write some combinations: nothing to test
        return
    path = tmp_path / "rand.dcm"
    path.write_bytes(data)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, cols
    ds.save_as(path)
    _load_or_typed_error(path)


@pytest.fixture(scope="module")
def detector(tiny_model_dir: Path):
    return cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".dcm"]))
def test_predict_on_garbage_raises_only_typed_errors(tmp_path: Path, detector, data: bytes, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(data)
    try:
        with no_hang(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector.predict(path)
    except CephspineError as exc:
        assert path.name in str(exc)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    fill=st.sampled_from(["random", "zeros", "nan", "inf", "huge"]),
    spacing=st.one_of(st.none(), st.floats(-1, 5), st.sampled_from([float("nan"), float("inf")])),
)
def test_predict_on_odd_arrays_raises_only_typed_errors(detector, h: int, w: int, fill: str, spacing) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    arr = {
        "random": rng.random((h, w)),
        "zeros": np.zeros((h, w)),
        "nan": np.full((h, w), np.nan),
        "inf": np.where(rng.random((h, w)) > 0.5, np.inf, 1.0),
        "huge": rng.random((h, w)) * 1e300,
    }[fill]
    try:
        with no_hang(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = detector.predict(arr, spacing=spacing)
    except CephspineError:
        return
    assert np.isfinite(pred.xy_px).all() and np.isfinite(pred.confidence).all()


# --------------------------------------------------------------------------- annotation files

ANNOTATION_FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

_NAMES = ["one.png", "two.png", "sub/../one.png", "../one.png", "/etc/passwd", "a", "b", "c", "", "\x00"]
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, 2, 3, 7, 9, 30_001, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(_NAMES),
)
_COCO_KEYS = ["images", "annotations", "categories", "id", "file_name", "width", "height", "image_id", "keypoints"]
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.sampled_from(_COCO_KEYS) | st.text(max_size=8), kids),
    max_leaves=30,
)
_HOSTILE = st.sampled_from([[], {}, [7], {"id": 7}, "", "7", True, None, float("inf"), float("nan"), 10**400, -1, 2.5])
_DELETE = object()


def _coco_doc(xy: list[int]) -> dict:
    """A valid COCO keypoints document of two 40 × 30 px images with three landmarks each."""
    return {
        "images": [
            {"id": 7, "file_name": "one.png", "width": 40, "height": 30, "pixel_spacing_mm": [0.1, 0.1]},
            {"id": 9, "file_name": "two.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "keypoints": [v for x, y in zip(xy[:3], xy[3:6]) for v in (x, y, 2)],
            },
            {
                "id": 2,
                "image_id": 9,
                "category_id": 3,
                "keypoints": [v for x, y in zip(xy[6:9], xy[9:]) for v in (x, y, 1)],
            },
            {"id": 3, "image_id": 9, "category_id": 4, "bbox": [0, 0, 1, 1]},
        ],
        "categories": [{"id": 3, "keypoints": ["a", "b", "c"]}, {"id": 4, "name": "box"}],
    }


_COCO_PATHS: list[tuple[object, ...]] = [
    ("images",),
    ("annotations",),
    ("categories",),
    *[("images", i, *k) for i in (0, 1, 2) for k in [(), ("id",), ("file_name",), ("width",), ("height",)]],
    *[("images", 0, "pixel_spacing_mm", *k) for k in [(), (0,), (1,)]],
    *[("annotations", i, *k) for i in (0, 1, 2, 3) for k in [(), ("id",), ("image_id",), ("category_id",)]],
    *[("annotations", i, "keypoints", *k) for i in (0, 1, 2) for k in [(), *[(j,) for j in range(10)]]],
    *[
        ("categories", i, *k)
        for i in (0, 1, 2)
        for k in [(), ("id",), ("keypoints",), ("keypoints", 0), ("keypoints", 3)]
    ],
]


def _mutated(doc: dict, mutations: list[tuple[tuple[object, ...], object]]) -> object:
    """``doc`` with each ``(path, value)`` set (``_DELETE``: removed) where the path leads somewhere."""
    for path, value in mutations:
        parent: object = doc
        for key in path[:-1]:
            ok = (isinstance(parent, dict) and key in parent) or (
                isinstance(parent, list) and isinstance(key, int) and key < len(parent)
            )
            if not ok:
                break
            parent = parent[key]  # type: ignore[index]
        else:
            key = path[-1]
            if isinstance(parent, dict):
                if value is _DELETE:
                    parent.pop(key, None)
                else:
                    parent[key] = value
            elif isinstance(parent, list) and isinstance(key, int):
                if key < len(parent):
                    if value is _DELETE:
                        del parent[key]
                    else:
                        parent[key] = value
                elif value is not _DELETE:
                    parent.append(value)
    return doc


_COCO = st.builds(
    _mutated,
    st.lists(st.integers(0, 29), min_size=12, max_size=12).map(_coco_doc),
    st.lists(st.tuples(st.sampled_from(_COCO_PATHS), st.one_of(_JSON, _HOSTILE, st.just(_DELETE))), max_size=3),
)


def _csv_table(xy: list[float], spacing: bool) -> list[list[str]]:
    """A valid annotation table (header first) of two images with three landmarks each."""
    header = ["image", "landmark", "x_px", "y_px"] + (["spacing_mm"] if spacing else [])
    rows = [
        [image, name, repr(xy[k]), repr(xy[k + 1])] + (["0.1"] if spacing else [])
        for i, image in enumerate(("one.png", "two.png"))
        for j, name in enumerate("abc")
        for k in [2 * (3 * i + j)]
    ]
    return [header, *rows]


_CSV_CELL = st.one_of(
    st.sampled_from(_NAMES + ["0", "1.5", "-1", "nan", "inf", "1e400", "9" * 400, "NA", '"', "'", "0.1", "x_px"]),
    st.integers(-5, 45).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=6),
)


def _csv_text(table: list[list[str]], cells: list[tuple[int, int, str]], drop: list[int], sep: str) -> str:
    """``table`` with some cells replaced (a column past the end adds one) and rows dropped, as text."""
    table = [list(r) for r in table]
    for i, j, cell in cells:
        row = table[i % len(table)]
        if j < len(row):
            row[j] = cell
        else:
            row.append(cell)
    kept = [r for i, r in enumerate(table) if i not in drop]
    return "\n".join(sep.join(r) for r in kept)


_CSV = st.builds(
    _csv_text,
    st.builds(_csv_table, st.lists(st.floats(0, 29), min_size=12, max_size=12), st.booleans()),
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), _CSV_CELL), max_size=3),
    st.lists(st.integers(0, 6), max_size=2),
    st.sampled_from([",", ",", ",", ";"]),
)


def _read_or_typed_error(path: Path, images: Path | None) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ann = cephspine.read_annotations(path, images=images)
    except CephspineError as exc:
        assert path.name in str(exc)
        return
    assert isinstance(ann, Annotations)
    for xy in ann.values():
        assert xy.shape == (len(ann.names), 2) and np.isfinite(xy).all()
    assert set(ann.image_sizes) <= set(ann.points)


def _image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    if not folder.is_dir():
        folder.mkdir()
        for name in ("one.png", "two.png"):
            Image.fromarray(np.zeros((30, 40), np.uint8)).save(folder / name)
    return folder


@ANNOTATION_FUZZ
@given(doc=st.one_of(_COCO, _JSON), with_images=st.booleans())
def test_random_coco_annotations(tmp_path: Path, doc: object, with_images: bool) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(doc))
    _read_or_typed_error(path, _image_folder(tmp_path) if with_images else None)


@ANNOTATION_FUZZ
@given(text=st.one_of(_CSV, st.text(max_size=300)), with_images=st.booleans())
def test_random_csv_annotations(tmp_path: Path, text: str, with_images: bool) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _read_or_typed_error(path, _image_folder(tmp_path) if with_images else None)


@ANNOTATION_FUZZ
@given(data=st.binary(max_size=1024), suffix=st.sampled_from([".json", ".csv"]))
def test_random_bytes_as_annotations(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    _read_or_typed_error(path, None)
