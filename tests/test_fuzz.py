"""Fuzzing the input boundary: random bytes, truncated files and random DICOM datasets.

Whatever arrives, `load_image` and `Detector.predict` either succeed or raise a
`CephspineError` subclass, and they do not hang.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import cephspine
from cephspine.errors import CephspineError
from tests.conftest import dicom_dataset

FUZZ = settings(
    max_examples=40,
    deadline=5000,  # ms per example: a hang fails the test instead of stalling the suite
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
        with warnings.catch_warnings():
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


@settings(max_examples=15, deadline=10000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".dcm"]))
def test_predict_on_garbage_raises_only_typed_errors(tmp_path: Path, detector, data: bytes, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector.predict(path)
    except CephspineError as exc:
        assert path.name in str(exc)


@settings(max_examples=15, deadline=10000, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = detector.predict(arr, spacing=spacing)
    except CephspineError:
        return
    assert np.isfinite(pred.xy_px).all() and np.isfinite(pred.confidence).all()
