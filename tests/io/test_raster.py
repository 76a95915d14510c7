"""Raster images (JPEG, PNG, TIFF) read through Pillow."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cephspine.errors import CephspineError, ImageReadError, UnsupportedImageError
from cephspine.io.raster import read_raster


def ramp(h: int = 32, w: int = 48, hi: int = 255, dtype: type = np.uint8) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x + 3 * y) * hi // (w - 1 + 3 * (h - 1))).astype(dtype)


def save(tmp_path: Path, name: str, image: Image.Image, **kw: Any) -> Path:
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_png_8bit_exact(tmp_path: Path) -> None:
    arr = ramp()
    px, meta = read_raster(save(tmp_path, "a.png", Image.fromarray(arr)))
    assert px.dtype == np.float32
    assert px.shape == arr.shape
    np.testing.assert_array_equal(px, arr.astype(np.float32))
    assert meta["format"] == "png"
    assert meta["bits"] == 8
    assert meta["colour"] is False


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_keeps_raw_values(tmp_path: Path, fmt: str) -> None:
    arr = ramp(hi=65535, dtype=np.uint16)
    arr[0, 0] = 65535
    arr[1, 1] = 40000
    path = save(tmp_path, f"a.{fmt.lower()}", Image.fromarray(arr), format=fmt)
    px, meta = read_raster(path)
    np.testing.assert_array_equal(px, arr.astype(np.float32))
    assert px.max() == 65535.0
    assert meta["bits"] == 16


def test_jpeg_close_to_source(tmp_path: Path) -> None:
    arr = ramp()
    px, meta = read_raster(save(tmp_path, "a.jpg", Image.fromarray(arr), quality=95))
    assert meta["format"] == "jpeg"
    assert np.abs(px - arr).max() <= 4


def test_rgb_with_identical_channels_is_exact(tmp_path: Path) -> None:
    arr = ramp()
    rgb = np.stack([arr, arr, arr], axis=-1)
    px, meta = read_raster(save(tmp_path, "rgb.png", Image.fromarray(rgb)))
    np.testing.assert_array_equal(px, arr.astype(np.float32))
    assert meta["colour"] is True


def test_colour_rgb_uses_luma(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    rgb[..., 2] = 50
    px, _ = read_raster(save(tmp_path, "c.png", Image.fromarray(rgb)))
    expected = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    np.testing.assert_allclose(px, expected, rtol=1e-6)


def test_rgba_and_palette_become_grey(tmp_path: Path) -> None:
    arr = ramp()
    rgba = np.stack([arr, arr, arr, np.full_like(arr, 7)], axis=-1)
    px, _ = read_raster(save(tmp_path, "a.png", Image.fromarray(rgba)))
    np.testing.assert_array_equal(px, arr)
    pal = Image.fromarray(arr).convert("P")
    px, _ = read_raster(save(tmp_path, "p.png", pal))
    expected = np.asarray(pal.convert("RGB"))[..., 0]
    np.testing.assert_array_equal(px, expected)


def test_float_tiff_and_nan_refused(tmp_path: Path) -> None:
    arr = np.linspace(-1, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    px, _ = read_raster(save(tmp_path, "f.tif", Image.fromarray(arr)))
    np.testing.assert_array_equal(px, arr)
    arr[3, 4] = np.nan
    path = save(tmp_path, "nan.tif", Image.fromarray(arr))
    with pytest.raises(ImageReadError, match="nan.tif.*NaN"):
        read_raster(path)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    arr = ramp(20, 40)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotated: display needs a 90° clockwise turn
    path = save(tmp_path, "rot.png", im, exif=exif)
    px, meta = read_raster(path)
    assert meta["exif_orientation"] == 6
    assert px.shape == (40, 20)
    np.testing.assert_array_equal(px, np.rot90(arr, k=-1))


def test_multipage_tiff_refused(tmp_path: Path) -> None:
    frames = [Image.fromarray(ramp()), Image.fromarray(ramp()[::-1].copy())]
    path = tmp_path / "multi.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageError, match="multi.tif.*2 frames"):
        read_raster(path)


@pytest.mark.parametrize("shape", [(4, 100), (100, 7), (8, 30_001)])
def test_absurd_dimensions_refused(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = save(tmp_path, "odd.png", Image.fromarray(np.zeros(shape, np.uint8)))
    with pytest.raises(ImageReadError, match=r"odd.png: absurd image dimensions"):
        read_raster(path)


def test_decompression_bomb_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path, "big.png", Image.fromarray(np.zeros((100, 100), np.uint8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 > 2x the limit
    with pytest.raises(ImageReadError, match="big.png: image too large"):
        read_raster(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(ramp(64, 64)).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"cut.{fmt.lower()}: could not decode"):
        read_raster(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image at all\n" * 20)
    with pytest.raises(ImageReadError, match="notes.png: not an image") as info:
        read_raster(path)
    assert isinstance(info.value, CephspineError)
    assert isinstance(info.value, ValueError)
