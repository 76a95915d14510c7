"""Builders of small DICOM files for the tests (pydicom only, no external data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-99172"


def make_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attributes: Any,
) -> Dataset:
    """A single-frame grey DX dataset holding ``pixels`` (uint8/uint16/int16), uncompressed.

    Patient identifiers are filled in so that tests can check they never leak.
    """
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype not in (np.uint8, np.uint16, np.int16):
        raise TypeError(pixels.dtype)
    bits_allocated = pixels.dtype.itemsize * 8
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19800101"
    ds.InstitutionName = "General Hospital"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.PixelData = pixels.tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def write(ds: Dataset, path: Path, *, preamble: bool = True) -> Path:
    """Write ``ds`` to ``path`` as a DICOM file (optionally without preamble and file meta)."""
    if preamble:
        dcmwrite(path, ds, enforce_file_format=True)
    else:
        bare = Dataset()
        bare.update(ds)
        dcmwrite(path, bare, implicit_vr=True, little_endian=True)
    return path


def ramp(h: int = 24, w: int = 32, hi: int = 4095, dtype: type = np.uint16) -> np.ndarray:
    """A deterministic gradient with values from 0 to ``hi``."""
    y, x = np.mgrid[0:h, 0:w]
    v = (x + w * y).astype(np.float64)
    return np.round(v / v.max() * hi).astype(dtype)
