"""load_image: dispatch, arrays, spacing override and bad input."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cephspine
from cephspine import load_image
from cephspine.errors import CephspineError, ImageReadError, SpacingError
from cephspine.radiograph import Radiograph, Spacing
from tests.io.dicom_fixtures import make_dataset, ramp, write


def png(tmp_path: Path, name: str = "img.png", arr: np.ndarray | None = None) -> Path:
    arr = ramp(20, 30, hi=255, dtype=np.uint8) if arr is None else arr
    path = tmp_path / name
    Image.fromarray(arr).save(path, format="PNG")
    return path


# ----------------------------------------------------------------------------- dispatch


def test_png_file(tmp_path: Path) -> None:
    path = png(tmp_path)
    rg = load_image(path)
    assert isinstance(rg, Radiograph)
    assert rg.source == path
    assert rg.shape == (20, 30)
    assert rg.spacing is None and rg.spacing_source is None
    assert rg.meta["format"] == "png"


def test_str_path_accepted(tmp_path: Path) -> None:
    path = png(tmp_path)
    assert load_image(str(path)).shape == (20, 30)


def test_dispatch_by_content_not_extension(tmp_path: Path) -> None:
    raster_named_dcm = png(tmp_path, "looks_like.dcm")
    assert load_image(raster_named_dcm).meta["format"] == "png"
    dicom_named_jpg = write(make_dataset(ramp()), tmp_path / "looks_like.jpg")
    assert load_image(dicom_named_jpg).meta["format"] == "dicom"
    no_extension = write(make_dataset(ramp()), tmp_path / "IM0001")
    assert load_image(no_extension).meta["format"] == "dicom"


def test_bundled_example() -> None:
    rg = load_image(cephspine.example_path("ceph"), spacing=0.1)
    assert rg.shape == (2400, 1935)
    assert rg.spacing == Spacing(0.1, 0.1)
    assert rg.meta["format"] == "jpeg"


# ----------------------------------------------------------------------------- arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_array_is_copied_to_float32(dtype: type) -> None:
    arr: np.ndarray = (np.arange(16 * 12) % 200).reshape(16, 12).astype(dtype)
    keep = arr.copy()
    rg = load_image(arr)
    assert rg.pixels.dtype == np.float32
    np.testing.assert_array_equal(rg.pixels, keep.astype(np.float32))
    rg.pixels[0, 0] = 999
    np.testing.assert_array_equal(arr, keep)  # input untouched, no aliasing
    assert rg.source is None
    assert rg.name == "<array>"
    assert rg.meta["format"] == "array"


def test_array_with_spacing() -> None:
    rg = load_image(np.zeros((10, 10), np.float32), spacing=0.2)
    assert rg.spacing == Spacing(0.2, 0.2)
    assert rg.spacing_source == "user"


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.zeros((10, 10, 3)), "expected a 2-D"),
        (np.zeros((10, 10, 1)), "expected a 2-D"),
        (np.zeros(100), "expected a 2-D"),
        (np.zeros((10, 10), bool), "boolean"),
        (np.zeros((10, 10), complex), "not a real numeric"),
        (np.zeros((10, 10), object), "not a real numeric"),
        (np.full((10, 10), "a"), "not a real numeric"),
        (np.zeros((4, 10)), "absurd image dimensions"),
        (np.zeros((0, 0)), "absurd image dimensions"),
    ],
)
def test_bad_arrays(arr: np.ndarray, match: str) -> None:
    with pytest.raises(ImageReadError, match=f"<array>: .*{match}"):
        load_image(arr)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_array(bad: float) -> None:
    arr = np.ones((10, 10))
    arr[2, 3] = bad
    with pytest.raises(ImageReadError, match="<array>: 1 pixel value"):
        load_image(arr)


def test_float64_overflowing_float32_refused() -> None:
    arr = np.ones((10, 10))
    arr[0, 0] = 1e300
    with pytest.raises(ImageReadError, match="NaN or infinite"):
        load_image(arr)


# ----------------------------------------------------------------------------- radiographs


def test_radiograph_passthrough_and_override(tmp_path: Path) -> None:
    rg = load_image(png(tmp_path))
    assert load_image(rg) is rg
    rg2 = load_image(rg, spacing=(0.1, 0.2))
    assert rg2.spacing == Spacing(0.1, 0.2)
    assert rg2.spacing_source == "user"
    assert rg.spacing is None  # original unchanged


# ----------------------------------------------------------------------------- spacing


@pytest.mark.parametrize(
    "spacing,expected",
    [
        (0.1, Spacing(0.1, 0.1)),
        (1, Spacing(1.0, 1.0)),
        ((0.1, 0.2), Spacing(0.1, 0.2)),
        ([0.3, 0.4], Spacing(0.3, 0.4)),
        (np.array([0.5, 0.6]), Spacing(0.5, 0.6)),
        (Spacing(0.7, 0.8), Spacing(0.7, 0.8)),
    ],
)
def test_user_spacing_forms(tmp_path: Path, spacing: object, expected: Spacing) -> None:
    rg = load_image(png(tmp_path), spacing=spacing)  # type: ignore[arg-type]
    assert rg.spacing == expected
    assert rg.spacing_source == "user"


@pytest.mark.parametrize(
    "spacing",
    [0, -0.1, math.nan, math.inf, (0.1, 0.0), (0.1, -1), (0.1,), (0.1, 0.2, 0.3), "0.1", True],
)
def test_bad_user_spacing(tmp_path: Path, spacing: object) -> None:
    path = png(tmp_path, "scan.png")
    with pytest.raises(SpacingError, match="scan.png: ") as info:
        load_image(path, spacing=spacing)  # type: ignore[arg-type]
    assert isinstance(info.value, CephspineError)
    assert isinstance(info.value, ValueError)


def test_bad_spacing_checked_before_reading(tmp_path: Path) -> None:
    with pytest.raises(SpacingError):
        load_image(tmp_path / "does_not_exist.png", spacing=-1)


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="nope.png: file not found"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageReadError, match="empty.jpg: file is empty"):
        load_image(path)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\n" * 10, bytes(range(256)) * 4, b"\x00" * 300, b"{}"],
)
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.dat"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="notes.dat: not a recognised image"):
        load_image(path)


def test_truncated_png(tmp_path: Path) -> None:
    data = png(tmp_path, arr=ramp(64, 64, hi=255, dtype=np.uint8)).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png: "):
        load_image(cut)


def test_wrong_source_type() -> None:
    with pytest.raises(ImageReadError, match="<list>: expected a file path"):
        load_image([[1, 2], [3, 4]])  # type: ignore[arg-type]


def test_files_are_not_modified(tmp_path: Path) -> None:
    path = png(tmp_path)
    path.chmod(0o444)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    load_image(path, spacing=0.1)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert path.stat().st_mtime_ns == mtime
