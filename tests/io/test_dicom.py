"""DICOM input: LUT pipeline, MONOCHROME1, compressed transfer syntaxes, spacing, errors."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from cephspine import load_image
from cephspine.errors import (
    CephspineError,
    CephspineWarning,
    ImageReadError,
    SpacingWarning,
    UnsupportedImageError,
)
from cephspine.radiograph import Spacing
from tests.io.dicom_fixtures import PATIENT_ID, PATIENT_NAME, make_dataset, ramp, write


def pydicom_file(name: str) -> str:
    """Path of one of the small files that ship with pydicom."""
    path = get_testdata_file(name)
    assert isinstance(path, str)
    return path


def test_uncompressed_monochrome2_keeps_values(tmp_path: Path) -> None:
    raw = ramp(hi=4095)
    rg = load_image(write(make_dataset(raw, bits_stored=12), tmp_path / "a.dcm"))
    np.testing.assert_array_equal(rg.pixels, raw.astype(np.float32))
    assert rg.pixels.dtype == np.float32
    assert rg.meta["format"] == "dicom"
    assert rg.meta["bits"] == 12
    assert rg.meta["inverted"] is False
    assert rg.meta["voi"] is None
    assert rg.meta["value_range"] == (0.0, 4095.0)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    raw = ramp(hi=4095)
    m2 = load_image(write(make_dataset(raw, bits_stored=12), tmp_path / "m2.dcm"))
    m1 = load_image(write(make_dataset(raw, bits_stored=12, photometric="MONOCHROME1"), tmp_path / "m1.dcm"))
    assert m1.meta["inverted"] is True
    np.testing.assert_array_equal(m1.pixels, 4095.0 - raw)
    # the darkest stored value is the brightest displayed one
    assert m1.pixels[0, 0] == m1.pixels.max()
    assert m2.pixels[0, 0] == m2.pixels.min()
    np.testing.assert_array_equal(m1.pixels + m2.pixels, np.full(raw.shape, 4095.0))


def test_monochrome2_with_inverse_presentation_lut_is_inverted(tmp_path: Path) -> None:
    raw = ramp(hi=255, dtype=np.uint8)
    ds = make_dataset(raw, PresentationLUTShape="INVERSE")
    rg = load_image(write(ds, tmp_path / "inv.dcm"))
    np.testing.assert_array_equal(rg.pixels, 255.0 - raw)


def test_16bit_voi_window_is_applied(tmp_path: Path) -> None:
    raw = ramp(hi=65535)
    ds = make_dataset(raw, WindowCenter=30000, WindowWidth=10000)
    rg = load_image(write(ds, tmp_path / "win.dcm"))
    assert rg.meta["voi"] == "window"
    assert rg.meta["window_center"] == 30000.0
    assert rg.meta["window_width"] == 10000.0
    px = rg.pixels
    assert (px[raw <= 25000] == 0).all()  # below the window: black
    assert (px[raw > 35000] == 65535).all()  # above: white
    inside = (raw > 25000) & (raw <= 35000)
    assert inside.any()
    # linear and increasing inside the window
    order = np.argsort(raw[inside])
    assert (np.diff(px[inside][order]) >= 0).all()
    expected = apply_voi_lut(apply_modality_lut(raw, ds), ds)
    np.testing.assert_allclose(px, expected, rtol=1e-6, atol=1e-2)
    # windowing changes the image: it is not the raw data any more
    assert not np.array_equal(px, raw.astype(np.float32))


def test_modality_lut_before_window_and_inversion(tmp_path: Path) -> None:
    raw = ramp(hi=4095)
    ds = make_dataset(
        raw,
        bits_stored=12,
        photometric="MONOCHROME1",
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=3000,
        WindowWidth=4000,
    )
    rg = load_image(write(ds, tmp_path / "mw.dcm"))
    assert rg.meta["modality_lut"] == "rescale"
    lo, hi = -1000.0, 4095 * 2 - 1000.0
    assert rg.meta["value_range"] == (lo, hi)
    m2 = apply_voi_lut(apply_modality_lut(raw, ds), ds)
    np.testing.assert_allclose(rg.pixels, (lo + hi) - m2, rtol=1e-6, atol=1e-2)


def test_rescale_without_window(tmp_path: Path) -> None:
    raw = ramp(hi=1000)
    ds = make_dataset(raw, RescaleSlope=0.5, RescaleIntercept=10)
    rg = load_image(write(ds, tmp_path / "r.dcm"))
    np.testing.assert_allclose(rg.pixels, raw * 0.5 + 10)


def test_voi_lut_sequence_preferred_over_window(tmp_path: Path) -> None:
    raw = ramp(hi=255)
    lut = (255 - np.arange(256)).astype(np.uint16)  # a reversing LUT
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    ds = make_dataset(raw, bits_stored=8, VOILUTSequence=[item], WindowCenter=10, WindowWidth=5)
    rg = load_image(write(ds, tmp_path / "lut.dcm"))
    assert rg.meta["voi"] == "lut"
    np.testing.assert_array_equal(rg.pixels, lut[raw])


def test_invalid_window_is_ignored_with_warning(tmp_path: Path) -> None:
    raw = ramp(hi=4095)
    ds = make_dataset(raw, WindowCenter=100, WindowWidth=0)
    with pytest.warns(CephspineWarning, match="bad_window.dcm: VOI transform ignored"):
        rg = load_image(write(ds, tmp_path / "bad_window.dcm"))
    np.testing.assert_array_equal(rg.pixels, raw)
    assert rg.meta["voi"] is None


@pytest.mark.parametrize("bits_stored,dtype,hi", [(16, np.uint16, 65535), (12, np.uint16, 4095), (8, np.uint8, 255)])
@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_equals_uncompressed(tmp_path: Path, syntax: str, bits_stored: int, dtype: type, hi: int) -> None:
    raw = ramp(64, 80, hi=hi, dtype=dtype)
    plain = load_image(write(make_dataset(raw, bits_stored=bits_stored), tmp_path / "plain.dcm"))
    ds = make_dataset(raw, bits_stored=bits_stored)
    ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax == JPEG2000Lossless else "")
    path = write(ds, tmp_path / "packed.dcm")
    assert ds.file_meta.TransferSyntaxUID == syntax
    packed = load_image(path)
    assert packed.meta["transfer_syntax_uid"] == str(syntax)
    np.testing.assert_array_equal(packed.pixels, plain.pixels)
    np.testing.assert_array_equal(packed.pixels, raw.astype(np.float32))


def test_jpeg_ls_equals_uncompressed() -> None:
    plain = load_image(pydicom_file("MR_small.dcm"))
    jls = load_image(pydicom_file("MR_small_jpeg_ls_lossless.dcm"))
    assert "JPEG-LS" in jls.meta["transfer_syntax"]
    np.testing.assert_array_equal(jls.pixels, plain.pixels)


def test_jpeg_baseline_decodes(tmp_path: Path) -> None:
    raw = ramp(64, 80, hi=255, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(raw).save(buf, format="JPEG", quality=95)
    ds = make_dataset(raw, bits_stored=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    rg = load_image(write(ds, tmp_path / "jpeg.dcm"))
    assert rg.meta["transfer_syntax_uid"] == str(JPEGBaseline8Bit)
    buf.seek(0)
    pillow = np.asarray(Image.open(buf), dtype=np.float32)
    assert np.abs(rg.pixels - pillow).max() <= 2
    assert np.abs(rg.pixels - raw).max() <= 6


def test_pixel_spacing(tmp_path: Path) -> None:
    ds = make_dataset(ramp(), PixelSpacing=[0.1, 0.2], ImagerPixelSpacing=[0.5, 0.5])
    rg = load_image(write(ds, tmp_path / "ps.dcm"))
    assert rg.spacing == Spacing(row_mm=0.1, col_mm=0.2)
    assert rg.spacing_source == "PixelSpacing"


def test_imager_pixel_spacing_and_magnification(tmp_path: Path) -> None:
    rg = load_image(write(make_dataset(ramp(), ImagerPixelSpacing=[0.15, 0.14]), tmp_path / "i.dcm"))
    assert rg.spacing == Spacing(0.15, 0.14)
    assert rg.spacing_source == "ImagerPixelSpacing"
    assert "magnification_factor" not in rg.meta

    ds = make_dataset(ramp(), ImagerPixelSpacing=[0.11, 0.132], EstimatedRadiographicMagnificationFactor=1.1)
    rg = load_image(write(ds, tmp_path / "mag.dcm"))
    assert rg.spacing_source == "ImagerPixelSpacing"
    assert rg.spacing is not None
    assert rg.spacing.row_mm == pytest.approx(0.1)
    assert rg.spacing.col_mm == pytest.approx(0.12)
    assert rg.meta["magnification_factor"] == pytest.approx(1.1)


def test_no_spacing_stays_none(tmp_path: Path) -> None:
    rg = load_image(write(make_dataset(ramp()), tmp_path / "n.dcm"))
    assert rg.spacing is None
    assert rg.spacing_source is None


def test_invalid_file_spacing_falls_through_with_warning(tmp_path: Path) -> None:
    ds = make_dataset(ramp(), PixelSpacing=[0, 0], ImagerPixelSpacing=[0.2, 0.2])
    with pytest.warns(SpacingWarning, match="bad_ps.dcm: ignoring invalid PixelSpacing"):
        rg = load_image(write(ds, tmp_path / "bad_ps.dcm"))
    assert rg.spacing == Spacing(0.2, 0.2)
    assert rg.spacing_source == "ImagerPixelSpacing"


def test_user_spacing_overrides_file(tmp_path: Path) -> None:
    path = write(make_dataset(ramp(), PixelSpacing=[0.1, 0.1]), tmp_path / "u.dcm")
    rg = load_image(path, spacing=(0.3, 0.25))
    assert rg.spacing == Spacing(0.3, 0.25)
    assert rg.spacing_source == "user"
    assert rg.meta["file_spacing"] == (0.1, 0.1)
    assert rg.meta["file_spacing_source"] == "PixelSpacing"


def test_meta_has_attributes_but_no_patient_identifiers(tmp_path: Path) -> None:
    ds = make_dataset(ramp(), PixelSpacing=[0.1, 0.1], BodyPartExamined="SKULL")
    rg = load_image(write(ds, tmp_path / "id.dcm"))
    assert rg.meta["SOPInstanceUID"] == ds.SOPInstanceUID
    assert rg.meta["Modality"] == "DX"
    assert rg.meta["PhotometricInterpretation"] == "MONOCHROME2"
    assert rg.meta["BodyPartExamined"] == "SKULL"
    text = repr(rg) + repr(rg.meta) + str(vars(rg))
    for secret in (PATIENT_NAME, "Doe", PATIENT_ID, "19800101", "General Hospital"):
        assert secret not in text


def test_dicom_without_preamble_is_read(tmp_path: Path) -> None:
    raw = ramp()
    path = write(make_dataset(raw), tmp_path / "old.img", preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    rg = load_image(path)
    assert rg.meta["format"] == "dicom"
    np.testing.assert_array_equal(rg.pixels, raw)


def test_colour_dicom_becomes_grey(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    ds = make_dataset(np.zeros((16, 16), np.uint8))
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = rgb.tobytes()
    rg = load_image(write(ds, tmp_path / "rgb.dcm"))
    np.testing.assert_allclose(rg.pixels, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, rtol=1e-6)
    assert rg.meta["colour"] is True


def test_palette_colour_dicom_becomes_grey() -> None:
    rg = load_image(pydicom_file("examples_palette.dcm"))
    assert rg.shape == (350, 800)
    assert rg.meta["colour"] is True
    assert np.ptp(rg.pixels) > 0


# ----------------------------------------------------------------------------- bad input


def test_multiframe_refused(tmp_path: Path) -> None:
    frames = np.stack([ramp(), ramp()[::-1]])
    ds = make_dataset(ramp())
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    path = write(ds, tmp_path / "cine.dcm")
    with pytest.raises(UnsupportedImageError, match=r"cine.dcm: multi-frame DICOM \(2 frames\)"):
        load_image(path)


def test_no_pixel_data(tmp_path: Path) -> None:
    ds = make_dataset(ramp())
    del ds.PixelData
    path = write(ds, tmp_path / "report.dcm")
    with pytest.raises(ImageReadError, match="report.dcm: DICOM file has no pixel data"):
        load_image(path)


def test_truncated_dicom(tmp_path: Path) -> None:
    path = write(make_dataset(ramp(64, 64)), tmp_path / "full.dcm")
    cut = tmp_path / "cut.dcm"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) - 2000])
    with pytest.raises(ImageReadError, match="cut.dcm: ") as info:
        load_image(cut)
    assert isinstance(info.value, CephspineError)


def test_truncated_header(tmp_path: Path) -> None:
    data = write(make_dataset(ramp()), tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "head.dcm"
    cut.write_bytes(data[:200])
    with pytest.raises(ImageReadError, match="head.dcm: "):
        load_image(cut)


def test_absurd_dimensions_refused_before_decoding(tmp_path: Path) -> None:
    ds = make_dataset(ramp())
    ds.Rows = 40_000  # header lies; pixel data is tiny
    path = write(ds, tmp_path / "huge.dcm")
    with pytest.raises(ImageReadError, match="huge.dcm: absurd image dimensions 40000x32"):
        load_image(path)


def test_undecodable_compressed_data(tmp_path: Path) -> None:
    ds = make_dataset(ramp(64, 80))
    ds.compress(RLELossless)
    ds.PixelData = encapsulate([b"\x00" * 64])
    path = write(ds, tmp_path / "garbled.dcm")
    with pytest.raises(ImageReadError, match=r"garbled.dcm: could not decode the pixel data \(RLE"):
        load_image(path)


def test_file_is_not_modified(tmp_path: Path) -> None:
    path = write(
        make_dataset(ramp(), photometric="MONOCHROME1", WindowCenter=2000, WindowWidth=1000),
        tmp_path / "ro.dcm",
    )
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    path.chmod(0o444)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert path.stat().st_mtime_ns == mtime


def test_missing_photometric_interpretation_read_as_grey(tmp_path: Path) -> None:
    raw = ramp(hi=255, dtype=np.uint8)
    ds = make_dataset(raw)
    del ds.PhotometricInterpretation
    rg = load_image(write(ds, tmp_path / "nopi.dcm"))
    np.testing.assert_array_equal(rg.pixels, raw)
    assert "missing" in rg.meta["PhotometricInterpretation"]


def test_unknown_photometric_interpretation_refused(tmp_path: Path) -> None:
    ds = make_dataset(ramp(hi=255, dtype=np.uint8), photometric="HSV")
    with pytest.raises(UnsupportedImageError, match="hsv.dcm: unsupported Photometric"):
        load_image(write(ds, tmp_path / "hsv.dcm"))
