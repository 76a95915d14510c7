"""The ``"dicom-sr"`` export: a DICOM Structured Report of an analysis, to store beside
the radiograph in a PACS.

The report is a Comprehensive 3D SR holding a TID 1500 *Measurement Report* (built with
highdicom: ``pip install 'cephspine[dicom-sr]'``):

- one *Planar ROI Measurements* group (TID 1410) per landmark: its tracking identifier
  is the landmark name, its finding type a code of the private scheme ``99CEPHSPINE``
  whose meaning is the landmark name, and its image region a SCOORD ``POINT`` on the
  source image (DICOM pixel coordinates: column, row from the top-left *corner* of the
  image, i.e. cephspine's ``(x + 0.5, y + 0.5)``), referencing the source image's SOP
  Class and SOP Instance UIDs; detected landmarks carry their confidence as a NUM in
  UCUM unit ``1`` and the detector (model name and version) as the algorithm;
- one *Measurements* group (TID 1501) with each clinical measure as a NUM: ceph: the
  eight ISBI measures (angles in UCUM ``deg``, FHI in ``1``, MW in ``mm``), spine: the
  three Cobb angles (``deg``); each NUM references the source image, and the group names
  cephspine and its version as the algorithm.

The report copies the patient and study modules of the source image, because it is
part of that patient's record and must file under that study. It is the one cephspine
output that carries patient identifiers without ``include_identifiers=True``; store and
share it as you would the radiograph itself. It is marked complete but not verified
(``VerificationFlag`` UNVERIFIED, ``PreliminaryFlag`` PRELIMINARY): a person has not
checked it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cephspine._atomic import write_atomic
from cephspine.anatomy import VERTEBRAE
from cephspine.errors import InputNotFoundError, InvalidArgumentError, MissingDependencyError

if TYPE_CHECKING:
    from cephspine.analysis import Analysis

__all__ = ["CODING_SCHEME", "build_sr", "source_dataset", "write_dicom_sr"]

CODING_SCHEME = "99CEPHSPINE"
"""The private coding scheme of the landmark and measure names in the report."""

_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
# type-2 attributes of the patient and study modules the report copies: present but empty
# (as the standard allows) where the source lacks them
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
)
_MEASURE_MEANINGS = {"FMA": "FMA (ISBI): S-N to Go-Gn, not Tweed's FMA", "MW": "MW (ISBI): signed incisor distance"}
"""SR meanings of the ISBI measures whose names clinicians read otherwise."""
_UNITS = {"deg": ("deg", "degree"), "mm": ("mm", "millimeter"), "ratio": ("1", "no units")}
_COBB = {"pt": "PT", "mt": "MT", "tl": "TL"}
"""The dataset's column names of the three Cobb angles (AASCE), not anatomical regions."""


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError:
        raise MissingDependencyError("the DICOM SR export needs highdicom: pip install 'cephspine[dicom-sr]'") from None
    return highdicom


def source_dataset(analysis: Analysis, source: str | os.PathLike[str] | None = None) -> Any:
    """The header (no pixels) of the DICOM file ``analysis`` was made from.

    Args:
        analysis: the analysis to report.
        source: the DICOM file (default: the file the analysis was made from in this
            process, :attr:`~cephspine.Analysis.source_path`; for an analysis read back from
            JSON, its image name when that is a file relative to the working directory).

    Raises:
        InputNotFoundError: ``source`` does not exist.
        InvalidArgumentError: no source file, a file that is not DICOM, one without the
            UIDs a report must reference, or the DICOM file of another image (its SOP
            Instance UID does not give the analysis' pseudonym).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if source is None and analysis.source_path is not None and analysis.source_path.is_file():
        source = analysis.source_path
    if source is None:
        guess = Path(analysis.image)
        if analysis.image == "<array>" or not guess.is_file():
            raise InvalidArgumentError(
                f"the DICOM SR export of {analysis.image} needs the source DICOM file: pass source=PATH"
            )
        source = guess
    path = Path(os.fspath(source))
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file (the source DICOM of the SR export)")
    from cephspine.io.bounded import is_regular_file
    from cephspine.io.dicom import check_deflated_size

    if not is_regular_file(path):
        raise InvalidArgumentError(f"{path}: not a regular file (the source DICOM of the SR export)")
    check_deflated_size(path)  # pydicom inflates a deflated data set whole: bounded first
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, TypeError, EOFError, AttributeError):
        raise InvalidArgumentError(
            f"{path}: not a DICOM file; a DICOM SR can only be written for a DICOM image"
        ) from None
    missing = [k for k in _REQUIRED if not ds.get(k)]
    if missing:
        raise InvalidArgumentError(
            f"{path}: not a DICOM image a report can reference (no {', '.join(missing)}); "
            "a DICOM SR can only be written for a DICOM image"
        )
    from cephspine.analysis import uid_pseudonym

    if uid_pseudonym(str(ds.SOPInstanceUID)) != analysis.pseudonym:
        raise InvalidArgumentError(
            f"{path}: not the image this analysis of {analysis.image} was made from (another SOP Instance UID)"
        )
    return ds


def _code(hd: Any, value: str, meaning: str) -> Any:
    return hd.sr.CodedConcept(value=value, scheme_designator=CODING_SCHEME, meaning=meaning[:64])


def _unit(hd: Any, unit: str) -> Any:
    value, meaning = _UNITS[unit]
    return hd.sr.CodedConcept(value=value, scheme_designator="UCUM", meaning=meaning)


def _measures(analysis: Analysis) -> list[tuple[str, str, float, str]]:
    """``(code value, meaning, value, unit)`` of each clinical measure of the analysis."""
    from cephspine.geometry.ceph import MEASURE_UNITS

    out: list[tuple[str, str, float, str]] = []
    if analysis.measures is not None:
        for m, v in analysis.measures.items():
            if np.isfinite(v):
                out.append((m, _MEASURE_MEANINGS.get(m, m), float(v), MEASURE_UNITS[m]))
    if analysis.cobb is not None:
        for c in analysis.cobb.curves:
            meaning = (
                f"Cobb angle, curve {c.number} {VERTEBRAE[c.upper_vertebra]}-{VERTEBRAE[c.lower_vertebra]} "
                f"(dataset column {_COBB.get(c.name, c.name.upper())})"
            )
            out.append((f"COBB-{c.name.upper()}", meaning, float(c.angle_deg), "deg"))
    return out


def build_sr(analysis: Analysis, source: str | os.PathLike[str] | None = None) -> Any:
    """The DICOM SR (a ``highdicom.sr.Comprehensive3DSR``) of ``analysis``.

    Raises:
        MissingDependencyError: highdicom is not installed.
        InputNotFoundError, InvalidArgumentError: as :func:`source_dataset`; also an
            analysis whose film does not look like the anatomy of its kind (it is not a
            result, and an SR would enter the patient's record as one).
    """
    if getattr(analysis, "wrong_anatomy", False):
        raise InvalidArgumentError(
            f"{analysis.image}: not a result (the landmarks do not look like a {analysis.kind} film); "
            "no DICOM SR is written for it"
        )
    hd = _highdicom()
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from cephspine import __version__

    ds = source_dataset(analysis, source)
    for key in _TYPE2:
        if key not in ds:
            setattr(ds, key, "")
    p = analysis.prediction
    detector = (
        None
        if p.supplied
        else hd.sr.AlgorithmIdentification(name=f"cephspine {p.model}", version=p.model_version or "unknown")
    )
    software = hd.sr.AlgorithmIdentification(
        name="cephspine", version=__version__, parameters=[f"landmarks {p.provenance}"]
    )
    region_image = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=ds.SOPClassUID, referenced_sop_instance_uid=ds.SOPInstanceUID
    )
    groups: list[Any] = []
    prefix = analysis.kind.upper()
    for i, (name, (x, y), conf) in enumerate(zip(p.names, p.xy_px.tolist(), p.confidence.tolist()), start=1):
        measurements = []
        if np.isfinite(conf):
            measurements.append(
                hd.sr.Measurement(
                    name=_code(hd, "CONFIDENCE", "Landmark confidence"),
                    value=float(conf),
                    unit=_unit(hd, "ratio"),
                    algorithm_id=detector,
                )
            )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name),
                referenced_region=hd.sr.ImageRegion(
                    graphic_type=hd.sr.GraphicTypeValues.POINT,
                    graphic_data=np.array([[x + 0.5, y + 0.5]]),
                    source_image=region_image,
                ),
                finding_type=_code(hd, f"{prefix}-{i:02d}", name),
                algorithm_id=detector,
                measurements=measurements or None,
            )
        )
    measure_image = hd.sr.SourceImageForMeasurement(
        referenced_sop_class_uid=ds.SOPClassUID, referenced_sop_instance_uid=ds.SOPInstanceUID
    )
    numbers = [
        hd.sr.Measurement(
            name=_code(hd, value, meaning),
            value=v,
            unit=_unit(hd, unit),
            algorithm_id=software,
            referenced_images=[measure_image],
        )
        for value, meaning, v, unit in _measures(analysis)
    ]
    if numbers:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(), identifier=f"{analysis.kind} measures"
                ),
                algorithm_id=software,
                measurements=numbers,
            )
        )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="cephspine", manufacturer_name="cephspine", model_name=p.model
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.PlainRadiography,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[ds],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=9001,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="cephspine",
        manufacturer_model_name=p.model,
        software_versions=__version__,
        series_description=f"cephspine {analysis.kind} landmarks and measures",
        is_complete=True,
        is_final=False,
        is_verified=False,
    )


def write_dicom_sr(
    analysis: Analysis, path: str | os.PathLike[str], *, source: str | os.PathLike[str] | None = None
) -> Path:
    """Write the DICOM SR of ``analysis`` (:func:`build_sr`) to ``path``, atomically.

    Raises:
        MissingDependencyError: highdicom is not installed.
        InputNotFoundError, InvalidArgumentError: as :func:`source_dataset`.
        OutputError: ``path`` cannot be written.
    """
    from pydicom import dcmwrite

    from cephspine._atomic import check_target

    check_target(path, "export")
    sr = build_sr(analysis, source)
    return write_atomic(path, lambda fh: dcmwrite(fh, sr, enforce_file_format=True), "export")
