"""Reading single-frame DICOM radiographs with pydicom.

The pixel pipeline follows the DICOM grayscale standard display chain:

1. decode the stored values (compressed transfer syntaxes — JPEG baseline/extended,
   JPEG-LS, JPEG 2000, RLE — through the pylibjpeg plugins);
2. the **modality LUT** (Modality LUT Sequence, or Rescale Slope/Intercept);
3. the **VOI transform**: the first VOI LUT Sequence item when present, else the first
   Window Center/Width pair (with its VOI LUT Function: LINEAR, LINEAR_EXACT, SIGMOID);
4. **MONOCHROME1 inversion**, so that the result always reads like MONOCHROME2
   (higher = brighter). A MONOCHROME2 image whose Presentation LUT Shape is
   ``INVERSE`` is inverted as well.

Colour images (RGB, YBR, palette) are converted to grey without LUTs.

Spacing precedence: Pixel Spacing (0028,0030), else Imager Pixel Spacing (0018,1164)
divided by Estimated Radiographic Magnification Factor (0018,1114) when that is
present, else none. Invalid values are ignored with a :class:`SpacingWarning`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cephspine._warn import warn_caller
from cephspine.errors import (
    CephspineError,
    CephspineWarning,
    ImageReadError,
    SpacingWarning,
    UnsupportedImageError,
)
from cephspine.io._checks import MAX_DECODED_BYTES, check_finite, check_shape, rgb_to_grey
from cephspine.radiograph import Spacing, implausible_spacing

# Non-identifying attributes copied into ``Radiograph.meta`` (DICOM keywords as keys).
META_ATTRIBUTES: tuple[str, ...] = (
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "PhotometricInterpretation",
    "BodyPartExamined",
    "ViewPosition",
)


class NotDicomError(ImageReadError):
    """The file does not look like DICOM at all (raised only when reading with ``force``)."""


@dataclass
class DicomImage:
    """Result of :func:`read_dicom`.

    Attributes:
        pixels: ``(H, W)`` float32, display-oriented (higher = brighter).
        spacing: spacing from the file, or ``None``.
        spacing_source: ``"PixelSpacing"``, ``"ImagerPixelSpacing"`` or ``None``.
        meta: format, bit depth, transfer syntax, applied LUTs and the attributes in
            :data:`META_ATTRIBUTES`; never patient identifiers.
    """

    pixels: npt.NDArray[np.float32]
    spacing: Spacing | None
    spacing_source: str | None
    meta: dict[str, Any] = field(default_factory=dict)


def read_dicom(path: str | Path, *, force: bool = False) -> DicomImage:
    """Read a single-frame DICOM file.

    Args:
        path: the file; opened read-only and never modified.
        force: read files without the ``DICM`` preamble (old or non-conformant
            writers). A forced read of something that is not DICOM raises
            :class:`NotDicomError`.

    Returns:
        A :class:`DicomImage`.

    Raises:
        ImageReadError: unreadable or truncated file, no pixel data, absurd dimensions,
            undecodable pixel data (the message names the transfer syntax).
        UnsupportedImageError: multi-frame images, float pixel data, unknown
            photometric interpretations.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            if force:  # a forced read of a non-DICOM file warns about every odd byte
                warnings.simplefilter("ignore")
            check_deflated_size(path)
            ds = pydicom.dcmread(path, force=force)
    except CephspineError:
        raise
    except InvalidDicomError as exc:
        raise ImageReadError(path, f"not a valid DICOM file: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:
        if force:
            raise NotDicomError(path, f"not readable as DICOM: {exc}") from exc
        raise ImageReadError(path, f"could not parse DICOM (truncated or corrupt?): {exc}") from exc
    if force and not _looks_like_dicom(ds):
        raise NotDicomError(path, "not a DICOM file")
    try:
        return dataset_to_image(ds, path)
    except (CephspineError, MemoryError):
        raise
    except Exception as exc:  # pydicom raises many kinds on malformed elements
        raise ImageReadError(path, f"malformed DICOM ({type(exc).__name__}: {exc})") from exc


_DEFLATED = "1.2.840.10008.1.2.1.99"
_INFLATE_CHUNK = 1 << 20


def check_deflated_size(path: Path) -> None:
    """Refuse a Deflated Explicit VR Little Endian file whose data set inflates beyond
    :data:`~cephspine.io._checks.MAX_DECODED_BYTES` (plus 64 MiB for its other elements).

    pydicom inflates such a data set whole, before Rows and Columns can be checked, so a
    file of a few hundred kilobytes could claim gigabytes; this inflates it in chunks,
    keeping none of the output, and stops at the limit."""
    import zlib

    import pydicom.filereader as fr

    limit = MAX_DECODED_BYTES + 64 * 2**20
    with open(path, "rb") as fp:
        try:  # the same steps as pydicom's reader, so that the inflation starts where pydicom's does
            fr.read_preamble(fp, True)
            meta = fr._read_file_meta_info(fp)
            if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
                return
            fr._read_command_set_elements(fp)
        except Exception:
            return  # not a conformant file meta: dcmread says what is wrong
        inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := fp.read(_INFLATE_CHUNK):
            try:
                total += len(inflater.decompress(chunk, _INFLATE_CHUNK))
                while inflater.unconsumed_tail and total <= limit:
                    total += len(inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK))
            except zlib.error as exc:
                raise ImageReadError(path, f"corrupt deflated DICOM data set: {exc}") from exc
            if total > limit:
                raise ImageReadError(
                    path,
                    f"deflated DICOM data set inflates to more than {limit // 2**20} MiB (the limit); refused "
                    "before decoding",
                )


def _looks_like_dicom(ds: Any) -> bool:
    try:
        return any(k in ds for k in ("PixelData", "SOPClassUID", "Modality", "Rows"))
    except Exception:
        return False


def dataset_to_image(ds: Any, source: str | Path | None = None) -> DicomImage:
    """Turn an in-memory :class:`pydicom.Dataset` into display-oriented grey pixels.

    The dataset itself is not changed, except that a missing Transfer Syntax UID is
    filled in from how the file was encoded and a missing Photometric Interpretation of a
    one-sample image is set to MONOCHROME2 (both in memory only).

    Args:
        ds: a pydicom dataset with pixel data.
        source: the file name, for messages.

    Returns:
        A :class:`DicomImage` (see :func:`read_dicom`).
    """
    from pydicom.pixels import apply_color_lut

    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise UnsupportedImageError(source, "float pixel data is not supported")
        sop = ds.get("SOPClassUID")
        kind = f" ({getattr(sop, 'name', sop)})" if sop else ""
        raise ImageReadError(source, f"DICOM file has no pixel data{kind}")
    frames = _int(ds.get("NumberOfFrames", 1), default=1) or 1
    if frames > 1:
        raise UnsupportedImageError(
            source,
            f"multi-frame DICOM ({frames} frames) is not supported; export the frame you need as a single-frame image",
        )
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise ImageReadError(source, "DICOM file lacks Rows/Columns")
    samples = _int(ds.get("SamplesPerPixel", 1), default=1) or 1
    allocated = _int(ds.get("BitsAllocated"), default=16) or 16
    check_shape(int(rows), int(cols), source, samples=samples, bytes_per_sample=max(1, -(-allocated // 8)))

    _ensure_transfer_syntax(ds)
    ts = ds.file_meta.TransferSyntaxUID
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    meta: dict[str, Any] = {
        "format": "dicom",
        "bits": _int(ds.get("BitsStored"), default=None),
        "bits_allocated": _int(ds.get("BitsAllocated"), default=None),
        "transfer_syntax": str(getattr(ts, "name", ts)),
        "transfer_syntax_uid": str(ts),
    }
    for key in META_ATTRIBUTES:
        value = ds.get(key)
        if value not in (None, ""):
            meta[key] = str(value)

    if not photometric and _int(ds.get("SamplesPerPixel", 1), default=1) == 1:
        # non-conformant writers omit it; one sample per pixel can only be grey
        photometric = "MONOCHROME2"
        ds.PhotometricInterpretation = photometric  # in memory only, to let pydicom decode
        meta["PhotometricInterpretation"] = "(missing; read as MONOCHROME2)"
    try:
        stored = ds.pixel_array
    except MemoryError:
        raise  # the machine's limit, not the file's fault: callers treat it as out of memory
    except Exception as exc:
        raise ImageReadError(source, f"could not decode the pixel data ({meta['transfer_syntax']}): {exc}") from exc
    stored = np.asarray(stored)

    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if stored.ndim != 2:
            raise UnsupportedImageError(source, f"grey image decoded to shape {stored.shape}")
        pixels = _grey_pipeline(stored, ds, photometric, meta, source)
    elif photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)
        pixels = rgb_to_grey(rgb)
        meta["colour"] = True
    elif stored.ndim == 3 and stored.shape[-1] == 3:
        # pydicom converts YBR to RGB when decoding
        pixels = rgb_to_grey(stored)
        meta["colour"] = True
    else:
        raise UnsupportedImageError(source, f"unsupported Photometric Interpretation {photometric or '(missing)'!r}")
    check_finite(pixels, source)
    spacing, spacing_source = _spacing(ds, source, meta)
    return DicomImage(pixels, spacing, spacing_source, meta)


def _grey_pipeline(
    stored: npt.NDArray[Any], ds: Any, photometric: str, meta: dict[str, Any], source: Any
) -> npt.NDArray[np.float32]:
    """Modality LUT, VOI transform and MONOCHROME1 inversion; records what was done in meta."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = apply_modality_lut(stored, ds)
    lo, hi = _modality_range(ds)
    meta["modality_lut"] = "sequence" if ds.get("ModalityLUTSequence") else "rescale" if _has_rescale(ds) else None
    meta["voi"] = None
    try:
        if ds.get("VOILUTSequence"):
            item = ds.VOILUTSequence[0]
            values = apply_voi(values, ds, index=0)
            lo, hi = 0.0, float(2 ** int(item.LUTDescriptor[2]) - 1)
            meta["voi"] = "lut"
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            values = apply_windowing(values, ds, index=0)
            meta["voi"] = "window"
            meta["window_center"] = _first_float(ds["WindowCenter"].value)
            meta["window_width"] = _first_float(ds["WindowWidth"].value)
            meta["voi_lut_function"] = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    except Exception as exc:  # e.g. a width below 1 or an unknown VOI LUT Function
        warn_caller(f"{source}: VOI transform ignored ({exc}); pixels are the modality values", CephspineWarning)
        values = apply_modality_lut(stored, ds)
        lo, hi = _modality_range(ds)
        meta["voi"] = None
    pixels = np.asarray(values, dtype=np.float32)
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    invert = photometric == "MONOCHROME1" or shape == "INVERSE"
    if invert:
        pixels = np.float32(lo + hi) - pixels
    meta["inverted"] = invert
    meta["value_range"] = (float(lo), float(hi))
    return pixels


def _has_rescale(ds: Any) -> bool:
    return "RescaleSlope" in ds and "RescaleIntercept" in ds


def _modality_range(ds: Any) -> tuple[float, float]:
    """Nominal ``(low, high)`` of the modality LUT output (as pydicom's windowing assumes)."""
    bits = _int(ds.get("BitsStored"), default=None) or _int(ds.get("BitsAllocated"), default=16)
    assert bits is not None
    if ds.get("ModalityLUTSequence"):
        lut_bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**lut_bits - 1)
    if _int(ds.get("PixelRepresentation"), default=0) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if _has_rescale(ds):
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return min(lo, hi), max(lo, hi)


def _spacing(ds: Any, source: Any, meta: dict[str, Any]) -> tuple[Spacing | None, str | None]:
    """Spacing from PixelSpacing, else (magnification-corrected) ImagerPixelSpacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword not in ds or ds[keyword].value in (None, ""):
            continue
        raw = ds[keyword].value
        pair = _positive_pair(raw)
        if pair is None:
            warn_caller(f"{source}: ignoring invalid {keyword} {raw!r}", SpacingWarning)
            continue
        if keyword == "ImagerPixelSpacing":
            factor = _positive_float(ds.get("EstimatedRadiographicMagnificationFactor"))
            if factor is not None:
                meta["magnification_factor"] = factor
                pair = (pair[0] / factor, pair[1] / factor)
        reason = implausible_spacing(pair)
        if reason:
            warn_caller(f"{source}: ignoring {keyword} {raw!r}: {reason}", SpacingWarning)
            continue
        return Spacing(*pair), keyword
    return None, None


def _positive_pair(value: Any) -> tuple[float, float] | None:
    try:
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) != 2 or not all(math.isfinite(v) and v > 0 for v in items):
        return None
    return items[0], items[1]


def _positive_float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _first_float(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _ensure_transfer_syntax(ds: Any) -> None:
    """Give a dataset read without file meta the transfer syntax it was encoded with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None:
        file_meta = FileMetaDataset()
        ds.file_meta = file_meta
    if "TransferSyntaxUID" in file_meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit in (None, True):
        file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little in (None, True):
        file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        file_meta.TransferSyntaxUID = ExplicitVRBigEndian
