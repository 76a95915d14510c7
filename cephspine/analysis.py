"""One call per radiograph: landmarks, clinical measures and warnings in one typed result.

::

    import cephspine
    a = cephspine.analyze("scan.dcm", kind="ceph")
    a.measures["ANB"], a.classification["ANB"].label
    a.to_dataframe()          # one row per measure (ceph) or curve (spine)
    a.to_row()                # one flat row, as in a cohort table
    Analysis.from_json(a.to_json())   # round-trips

Outputs identify an image by its file name and a stable pseudonym (:func:`pseudonym`);
DICOM patient identifiers appear only with ``include_identifiers=True``
(:data:`IDENTIFIER_FIELDS`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cephspine._warn import warn_caller
from cephspine.errors import (
    AnatomyWarning,
    InvalidArgumentError,
    LandmarkError,
    SpacingError,
    SpacingWarning,
)
from cephspine.geometry import ceph_measures, classify_ceph, cobb_angles
from cephspine.geometry.ceph import CephClassification, CephMeasures
from cephspine.geometry.cobb import CobbAngles
from cephspine.prediction import Prediction
from cephspine.radiograph import Radiograph, Spacing

if TYPE_CHECKING:
    import pandas as pd

    from cephspine.detector import Detector

Kind = Literal["ceph", "spine"]
KINDS: tuple[str, ...] = ("ceph", "spine")

LOW_CONFIDENCE = 0.3
"""Landmarks below this confidence are flagged (same threshold as the detectors' warning)."""

IDENTIFIER_FIELDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "StudyDate",
    "InstitutionName",
    "ReferringPhysicianName",
)
"""DICOM attributes added to outputs (as ``dicom_<Attribute>``) only with ``include_identifiers=True``."""


def pseudonym(rg: Radiograph) -> str:
    """A stable 16-hex-digit pseudonym of an image: SHA-256 of the DICOM SOP Instance UID
    when there is one, otherwise of the pixel data (the same image gives the same pseudonym
    under any file name)."""
    uid = rg.meta.get("SOPInstanceUID")
    if uid:
        return uid_pseudonym(str(uid))
    h = hashlib.sha256()
    h.update(b"px:" + str(rg.shape).encode())
    h.update(np.ascontiguousarray(rg.pixels).tobytes())
    return h.hexdigest()[:16]


def uid_pseudonym(sop_instance_uid: str) -> str:
    """The pseudonym (:func:`pseudonym`) of a DICOM image with this SOP Instance UID."""
    return hashlib.sha256(b"uid:" + sop_instance_uid.encode()).hexdigest()[:16]


def read_identifiers(path: str | Path) -> dict[str, str]:
    """The :data:`IDENTIFIER_FIELDS` present in a DICOM file (empty for other files)."""
    import pydicom

    from cephspine.io.bounded import is_regular_file
    from cephspine.io.dicom import check_deflated_size

    if not is_regular_file(path):  # a FIFO would block, a device never end: no identifiers to read
        return {}
    try:
        check_deflated_size(Path(path))  # pydicom inflates a deflated data set whole, pixels or not
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=list(IDENTIFIER_FIELDS))
    except Exception:  # not DICOM: no identifiers
        return {}
    out = {}
    for key in IDENTIFIER_FIELDS:
        value = ds.get(key)
        if value not in (None, ""):
            out[key] = str(value)
    return out


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything cephspine says about one radiograph.

    Attributes:
        kind: ``"ceph"`` or ``"spine"``.
        image: file name (``"<array>"`` for in-memory images).
        pseudonym: stable pseudonym of the image (:func:`pseudonym`).
        prediction: the landmarks (:class:`~cephspine.Prediction`).
        measures: ceph: the eight measures (MW only with a pixel spacing); else ``None``.
        classification: ceph: anatomical types of ``measures``; else ``None``.
        cobb: spine: the three Cobb angles with end vertebrae; else ``None``.
        spacing_source: where the pixel spacing came from (``None`` if unknown).
        warnings: every warning about this image (low confidence, registration, spacing,
            measures that could not be computed, an image that does not look like the
            anatomy of ``kind``).
        created: UTC time of the analysis, ISO 8601.
        software_version: cephspine version.
        identifiers: DICOM identifiers, only when requested (empty by default).
        source_path: the absolute path of the file the image was read from, kept in memory
            only (never in :meth:`to_dict`, :meth:`to_json` or a table, and not compared by
            ``==``): the DICOM SR export finds its source DICOM by it. ``None`` for
            in-memory arrays and for analyses rebuilt by :meth:`from_dict`.
    """

    kind: str
    image: str
    pseudonym: str
    prediction: Prediction
    measures: CephMeasures | None = None
    classification: CephClassification | None = None
    cobb: CobbAngles | None = None
    spacing_source: str | None = None
    warnings: tuple[str, ...] = ()
    created: str = ""
    software_version: str = ""
    identifiers: dict[str, str] = field(default_factory=dict)
    source_path: Path | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ equality
    def __eq__(self, other: object) -> bool:
        """Value equality of every field but :attr:`source_path` (arrays compared
        element-wise), so that ``Analysis.from_json(a.to_json()) == a``."""
        if not isinstance(other, Analysis):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.wrong_anatomy == other.wrong_anatomy
            and self.image == other.image
            and self.pseudonym == other.pseudonym
            and self.prediction == other.prediction
            and _measures_key(self.measures) == _measures_key(other.measures)
            and _classification_key(self.classification) == _classification_key(other.classification)
            and _cobb_key(self.cobb) == _cobb_key(other.cobb)
            and self.spacing_source == other.spacing_source
            and tuple(self.warnings) == tuple(other.warnings)
            and self.created == other.created
            and self.software_version == other.software_version
            and dict(self.identifiers) == dict(other.identifiers)
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, and holds arrays and dicts

    # ------------------------------------------------------------------ views
    @property
    def wrong_anatomy(self) -> bool:
        """The landmarks do not look like the anatomy of :attr:`kind` (e.g. a spine film
        analysed with ``kind="ceph"``; :mod:`cephspine.plausibility`): the measures or Cobb
        angles are not a result. Tables and reports then show no types, labels or severity
        (:attr:`status` ``"wrong_anatomy"``)."""
        return self.prediction.wrong_anatomy

    @property
    def status(self) -> str:
        """``"ok"``, or :data:`WRONG_ANATOMY_STATUS` when :attr:`wrong_anatomy`."""
        return WRONG_ANATOMY_STATUS if self.wrong_anatomy else "ok"

    @property
    def low_confidence(self) -> list[str]:
        """Names of landmarks with confidence below :data:`LOW_CONFIDENCE`."""
        p = self.prediction
        return [n for n, c in zip(p.names, p.confidence) if c < LOW_CONFIDENCE]

    def not_computed(self) -> dict[str, str]:
        """The measures (ceph, e.g. ``"MW"``) or Cobb curves (spine: ``"pt"``, ``"mt"``,
        ``"tl"``) this analysis has no value for, each with the reason
        (``{"MW": "needs pixel spacing"}`` for a ceph without pixel spacing)."""
        if self.kind == "ceph":
            have = set(self.measures) if self.measures is not None else set()
            return {
                m: "needs pixel spacing" if m == "MW" and self.prediction.spacing is None else "see warnings"
                for m, _ in _CEPH_COLUMNS
                if m not in have
            }
        return {} if self.cobb is not None else {c: "see warnings" for c in ("pt", "mt", "tl")}

    def to_row(self) -> dict[str, Any]:
        """One flat row (the layout of a cohort table; units in column names).

        ``status`` is ``"ok"``, or ``"wrong_anatomy"`` when the landmarks do not look like
        the anatomy of :attr:`kind` (:attr:`wrong_anatomy`): such a row has no measures,
        types, classes, analysis values or Cobb angles (NaN and empty), so that no
        statistic or ``groupby`` counts it; its landmarks and warnings are kept."""
        p = self.prediction
        sp = p.spacing
        row: dict[str, Any] = {
            "image": self.image,
            "pseudonym": self.pseudonym,
            "kind": self.kind,
            "status": self.status,
            "error": "",
            "model": p.model,
            "model_version": p.model_version,
            "height_px": p.image_shape[0],
            "width_px": p.image_shape[1],
            "spacing_row_mm": sp.row_mm if sp else np.nan,
            "spacing_col_mm": sp.col_mm if sp else np.nan,
            "spacing_source": self.spacing_source or "",
            "mean_confidence": float(np.mean(p.confidence)),
            "min_confidence": float(np.min(p.confidence)),
            "n_low_confidence": len(self.low_confidence),
            "low_confidence_landmarks": ";".join(self.low_confidence),
            "n_warnings": len(self.warnings),
            "warnings": " | ".join(self.warnings),
        }
        if self.kind == "ceph":
            values = self.measures.to_row() if self.measures is not None else {}
            for m, unit in _CEPH_COLUMNS:
                row[f"{m.lower()}_{unit}"] = values.get(f"{m.lower()}_{unit}", np.nan)
            for m, _ in _CEPH_COLUMNS:
                e = self.classification.entries.get(m) if self.classification is not None else None
                row[f"{m.lower()}_type"] = e.type if e is not None else np.nan
                row[f"{m.lower()}_class"] = e.label if e is not None else ""
            row.update(self._analysis_values())
        else:
            c = self.cobb
            for name in ("pt", "mt", "tl"):
                curve = next((k for k in c.curves if k.name == name), None) if c else None
                row[f"{name}_deg"] = curve.angle_deg if curve else np.nan
                row[f"{name}_upper"] = curve.upper_name if curve else ""
                row[f"{name}_lower"] = curve.lower_name if curve else ""
                row[f"{name}_severity"] = curve.severity if curve else ""
            row["max_cobb_deg"] = float(np.max(c.angles_deg)) if c else np.nan
            row["severity"] = _max_severity(c) if c else ""
        if self.wrong_anatomy:  # not a result: nothing a statistic or a groupby could count
            for k in _result_columns(row):
                row[k] = "" if isinstance(row[k], str) else np.nan
        for key, value in self.identifiers.items():
            row[f"dicom_{key}"] = value
        return row

    def to_dataframe(self) -> pd.DataFrame:
        """Ceph: one row per measure (``measure, value, unit, type, label, normal_low,
        normal_high, normal_range``); spine: one row per curve (``curve, angle_deg,
        upper_vertebra, lower_vertebra, severity``). Both start with ``image, pseudonym``,
        as the other tables do, so that a saved table identifies its image. When
        :attr:`wrong_anatomy`, the values stay but ``type``, ``label`` and ``severity`` are
        empty: the image does not look like the anatomy they describe."""
        import pandas as pd

        if self.kind == "ceph":
            df = self.classification.to_dataframe() if self.classification is not None else pd.DataFrame()
        else:
            df = self.cobb.to_dataframe() if self.cobb is not None else pd.DataFrame()
        if self.wrong_anatomy:
            for c in ("type", "label", "severity"):
                if c in df.columns:
                    df[c] = np.nan if c == "type" else ""
        df.insert(0, "image", self.image)
        df.insert(1, "pseudonym", self.pseudonym)
        return df

    def analyses_dataframe(self, analysis: str | Sequence[str] | None = None, *, norms: Any = None) -> pd.DataFrame:
        """Ceph: the named cephalometric analyses (Steiner, Downs, Tweed, Björk–Jarabak,
        McNamara, Holdaway, Burstone–Legan, Ricketts) of these landmarks, one row per
        measure with norms and flags (:func:`~cephspine.geometry.ceph_analyses`), starting
        with ``image, pseudonym``. Without a pixel spacing the angles and ratios have
        values and the millimetre measures ``status`` ``"no spacing"``.

        Args:
            analysis: keep only these analyses' rows (``"steiner"``, ``["downs", "tweed"]``;
                default or ``"all"``: every row; see
                :func:`~cephspine.geometry.select_analyses`).
            norms: a norms table (CSV path or DataFrame) replacing the shipped norms by key.

        Raises:
            InvalidArgumentError: a spine analysis, an unknown analysis name or a bad
                ``norms`` table.
        """
        from cephspine.geometry.analyses import ceph_analyses, select_analyses

        if self.kind != "ceph":
            raise InvalidArgumentError(f"cephalometric analyses need a ceph analysis; {self.image} is {self.kind}")
        df = ceph_analyses(self.prediction, norms=norms)
        if analysis is not None:
            df = select_analyses(df, analysis)
        df.insert(0, "image", self.image)
        df.insert(1, "pseudonym", self.pseudonym)
        return df

    def _analysis_values(self) -> dict[str, float]:
        """Ceph: ``{key: value}`` of every named-analysis measure
        (:data:`~cephspine.geometry.ANALYSIS_KEYS`), NaN where there is no value (a
        millimetre measure without a pixel spacing, a missing landmark)."""
        from cephspine.geometry.analyses import ANALYSIS_KEYS, analysis_values

        try:
            return analysis_values(self.prediction)
        except (LandmarkError, SpacingError):
            return dict.fromkeys(ANALYSIS_KEYS, np.nan)

    def landmarks_dataframe(self) -> pd.DataFrame:
        """One row per landmark (:func:`landmark_table`: ``image, pseudonym, model,
        landmark_index``, ``vertebra, corner`` for the spine, ``landmark, x_px, y_px, x_mm,
        y_mm, confidence, spacing_row_mm, spacing_col_mm``), ``image`` being this analysis'
        image name."""
        return landmark_table(self.prediction, image=self.image, pseudonym=self.pseudonym)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` rebuilds an equal analysis."""
        p = self.prediction
        d: dict[str, Any] = {
            "kind": self.kind,
            "image": self.image,
            "pseudonym": self.pseudonym,
            "created": self.created,
            "software_version": self.software_version,
            "status": self.status,
            "spacing_source": self.spacing_source,
            "warnings": list(self.warnings),
            "prediction": {
                "model": p.model,
                "model_version": p.model_version,
                "source": p.source,
                "image_shape": list(p.image_shape),
                "spacing": [p.spacing.row_mm, p.spacing.col_mm] if p.spacing else None,
                "names": list(p.names),
                "xy_px": p.xy_px.tolist(),
                # null where there is none (supplied landmarks): NaN is not JSON
                "confidence": [c if np.isfinite(c) else None for c in p.confidence.tolist()],
                "warnings": list(p.warnings),
                "mirrored": bool(p.meta.get("mirrored", False)),
                "wrong_anatomy": p.wrong_anatomy,
            },
        }
        if p.supplied:
            d["prediction"]["landmarks_file"] = p.meta.get("landmarks_file")
        if self.measures is not None:
            d["measures"] = {m: float(v) for m, v in self.measures.items()}
        if self.kind == "ceph":
            # derived from the landmarks (from_dict recomputes them), for readers of the JSON
            d["analyses"] = {k: (None if np.isnan(v) else v) for k, v in self._analysis_values().items()}
        if self.classification is not None and not self.wrong_anatomy:
            d["classification"] = {
                m: {"type": e.type, "label": e.label, "normal_range": e.normal_range}
                for m, e in self.classification.entries.items()
            }
        if self.cobb is not None:
            d["cobb"] = {
                c.name: {
                    "angle_deg": c.angle_deg,
                    "upper_vertebra": c.upper_name,
                    "lower_vertebra": c.lower_name,
                    "severity": c.severity,
                }
                for c in self.cobb.curves
            }
        if self.identifiers:
            d["identifiers"] = dict(self.identifiers)
        return d

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON (``kwargs`` go to :func:`json.dumps`, e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Analysis:
        """Rebuild an analysis from :meth:`to_dict` output (measures and angles are
        recomputed from the landmarks, so they match exactly)."""
        try:
            pd_ = d["prediction"]
            sp = pd_.get("spacing")
            pred = Prediction(
                names=tuple(pd_["names"]),
                xy_px=np.asarray(pd_["xy_px"], dtype=np.float64),
                confidence=np.asarray(pd_["confidence"], dtype=np.float64),
                image_shape=(int(pd_["image_shape"][0]), int(pd_["image_shape"][1])),
                spacing=Spacing(float(sp[0]), float(sp[1])) if sp else None,
                model=str(pd_["model"]),
                model_version=str(pd_["model_version"]),
                source=pd_.get("source"),
                warnings=tuple(pd_.get("warnings", ())),
                meta={
                    "mirrored": bool(pd_.get("mirrored", False)),
                    "wrong_anatomy": bool(pd_.get("wrong_anatomy", False)),
                    "spacing_source": d.get("spacing_source"),
                    **({"landmarks_file": pd_["landmarks_file"]} if "landmarks_file" in pd_ else {}),
                },
            )
            kind = str(d["kind"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidArgumentError(f"not a cephspine analysis dict ({exc!r})") from None
        measures, classification, cobb, _ = _clinical(kind, pred)
        return cls(
            kind=kind,
            image=str(d["image"]),
            pseudonym=str(d["pseudonym"]),
            prediction=pred,
            measures=measures,
            classification=classification,
            cobb=cobb,
            spacing_source=d.get("spacing_source"),
            warnings=tuple(d.get("warnings", ())),
            created=str(d.get("created", "")),
            software_version=str(d.get("software_version", "")),
            identifiers=dict(d.get("identifiers", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> Analysis:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        if self.kind == "ceph" and self.measures is not None:
            body = ", ".join(f"{m} {v:.2f}" for m, v in self.measures.items())
        elif self.cobb is not None:
            body = ", ".join(f"{c.name.upper()} {c.angle_deg:.1f}°" for c in self.cobb.curves)
        else:
            body = "no measures"
        w = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        wrong = ", wrong anatomy: not a result" if self.wrong_anatomy else ""
        return f"Analysis({self.kind} {self.image}: {body}{w}{wrong})"


def landmark_table(prediction: Prediction, *, image: str, pseudonym: str) -> pd.DataFrame:
    """The landmark table of a prediction, one row per landmark, as the ``"csv"`` export,
    ``cephspine predict -f csv`` and a cohort's landmark table write it.

    Columns: ``image, pseudonym, model, landmark_index``, then ``vertebra, corner`` for the
    68 spine corners, then ``landmark, x_px, y_px, x_mm, y_mm, confidence`` and the pixel
    spacing ``spacing_row_mm, spacing_col_mm`` (the same on every row; NaN, as the mm
    columns, without a spacing), which :func:`cephspine.read_annotations` reads back.

    Args:
        prediction: the landmarks.
        image: the image name of every row.
        pseudonym: the image's pseudonym (:func:`pseudonym`).
    """
    from cephspine.anatomy import SPINE_LANDMARKS

    p = prediction
    df = p.vertebra_dataframe() if p.names == SPINE_LANDMARKS else p.to_dataframe()
    df["image"] = image
    df.insert(1, "pseudonym", pseudonym)
    df["spacing_row_mm"] = p.spacing.row_mm if p.spacing is not None else np.nan
    df["spacing_col_mm"] = p.spacing.col_mm if p.spacing is not None else np.nan
    return df


_CEPH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ANB", "deg"),
    ("SNB", "deg"),
    ("SNA", "deg"),
    ("ODI", "deg"),
    ("APDI", "deg"),
    ("FHI", "ratio"),
    ("FMA", "deg"),
    ("MW", "mm"),
)

_SEVERITY_ORDER = ("normal", "mild", "moderate", "severe")

WRONG_ANATOMY_STATUS = "wrong_anatomy"
"""The ``status`` of an analysis (and its cohort row) whose landmarks do not look like the
anatomy of its kind (:attr:`Analysis.wrong_anatomy`)."""

_ROW_KEEPS = frozenset(
    ("image", "pseudonym", "kind", "status", "error", "model", "model_version", "height_px", "width_px")
    + ("spacing_row_mm", "spacing_col_mm", "spacing_source", "mean_confidence", "min_confidence")
    + ("n_low_confidence", "low_confidence_landmarks", "n_warnings", "warnings")
)


def _result_columns(row: dict[str, Any]) -> list[str]:
    """The columns of a :meth:`Analysis.to_row` row that hold results (measures, types,
    classes, analysis values, Cobb angles, end vertebrae, severity)."""
    return [k for k in row if k not in _ROW_KEEPS and not k.startswith("dicom_")]


def _measures_key(m: CephMeasures | None) -> Any:
    if m is None:
        return None
    return (dict(m.by_measure), m.spacing, m.integer_pixels, m.facing, m.source)


def _classification_key(c: CephClassification | None) -> Any:
    return None if c is None else dict(c.entries)


def _cobb_key(c: CobbAngles | None) -> Any:
    if c is None:
        return None
    return (tuple(c.curves), c.method, c.s_curve, c.image_height, tuple(c.invalid_vertebrae))


def _max_severity(c: CobbAngles) -> str:
    return max((k.severity for k in c.curves), key=_SEVERITY_ORDER.index)


def _clinical(
    kind: str, pred: Prediction
) -> tuple[CephMeasures | None, CephClassification | None, CobbAngles | None, list[str]]:
    """Measures (ceph) or Cobb angles (spine) of a prediction, and the reasons for any
    that could not be computed."""
    msgs: list[str] = []
    name = pred.source or "<array>"
    if kind == "ceph":
        wanted: tuple[str, ...] = ("ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW")
        if pred.spacing is None:
            wanted = wanted[:-1]
            msgs.append(f"{name}: MW not computed (needs the pixel spacing)")
        try:
            m = ceph_measures(pred, measures=wanted)
        except (LandmarkError, SpacingError) as exc:
            msgs.append(f"{name}: measures not computed ({exc})")
            return None, None, None, msgs
        return m, classify_ceph(m), None, msgs
    if kind == "spine":
        try:
            return None, None, cobb_angles(pred), msgs
        except (LandmarkError, ValueError) as exc:
            msgs.append(f"{name}: Cobb angles not computed ({exc})")
            return None, None, None, msgs
    raise InvalidArgumentError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")


def check_kind(kind: str) -> str:
    """``kind`` if it names an anatomy (``"ceph"``/``"spine"``), else an
    :class:`~cephspine.errors.InvalidArgumentError`."""
    if kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind


def analyze(
    image: Any,
    kind: Kind | str = "ceph",
    *,
    detector: Detector | None = None,
    spacing: Any = None,
    include_identifiers: bool = False,
    device: str = "auto",
    landmarks: Any = None,
) -> Analysis:
    """Detect the landmarks of one radiograph and compute its clinical measures.

    Args:
        image: path (JPEG/PNG/TIFF/DICOM), ``(H, W)`` array or :class:`~cephspine.Radiograph`.
        kind: ``"ceph"`` (19 landmarks, 8 measures and anatomical types) or ``"spine"``
            (68 corners, 3 Cobb angles with end vertebrae and severity).
        detector: a loaded :class:`~cephspine.Detector` to reuse (default: the shipped
            model of ``kind``, loaded once per process and cached).
        spacing: pixel spacing in mm overriding the file's (number or ``(row, col)``).
        include_identifiers: add the DICOM patient identifiers
            (:data:`IDENTIFIER_FIELDS`) to :attr:`Analysis.identifiers` and every output.
        device: device for the default detector (``"auto"``, ``"cpu"``, ``"cuda"``).
        landmarks: landmarks a person supplied (corrected or placed by hand) instead of
            detecting them: an ``(N, 2)`` array in original pixels (19 for ``"ceph"``, 68
            for ``"spine"``, model order), a DataFrame or a CSV path with columns
            ``landmark, x_px, y_px`` (and optionally ``image``; see
            :mod:`cephspine.supplied`). No detector is loaded or run; the prediction's
            model is ``"supplied"``, its confidences NaN, and it names the file.

    Raises:
        ImageReadError, UnsupportedImageError, SpacingError: the image cannot be used
            (the message names the file).
        InvalidArgumentError: an unknown ``kind``, a ``detector`` of another anatomy, or
            both ``detector`` and ``landmarks``.
        UnknownModelError: no shipped model for ``kind``.
        LandmarkError, InputNotFoundError: supplied ``landmarks`` that cannot be used
            (wrong count, unknown, duplicate or missing names, non-finite or outside the
            image, no rows for the image, no such file; the message names the file).

    Warns:
        SpacingWarning, LowConfidenceWarning, AnatomyWarning, WrongAnatomyWarning, ...:
            attributed to the caller's line; their texts are also in
            :attr:`Analysis.warnings`. ``WrongAnatomyWarning``: the landmarks do not look
            like ``kind`` (:mod:`cephspine.plausibility`), e.g. a spine film analysed with
            ``kind="ceph"``.
    """
    from cephspine import __version__
    from cephspine.io import load_image

    check_kind(kind)
    if landmarks is not None and detector is not None:
        raise InvalidArgumentError("pass either detector= (to detect the landmarks) or landmarks=, not both")
    det = None if landmarks is not None else detector if detector is not None else default_detector(kind, device)
    if det is not None and len(det.names) != (19 if kind == "ceph" else 68):
        raise InvalidArgumentError(f"kind={kind!r} needs a {kind} detector; got {det!r}")
    rg = image if isinstance(image, Radiograph) else load_image(image, spacing=spacing)
    if isinstance(image, Radiograph) and spacing is not None:
        rg = rg.with_spacing(spacing)
    if det is None:
        from cephspine.supplied import supplied_prediction

        pred = supplied_prediction(rg, kind, landmarks)
    else:
        pred = det.predict(rg)
    measures, classification, cobb, msgs = _clinical(kind, pred)
    for m in msgs:
        warn_caller(m, SpacingWarning if "pixel spacing" in m else AnatomyWarning)
    ids = read_identifiers(rg.source) if include_identifiers and rg.source is not None else {}
    return Analysis(
        kind=kind,
        image=rg.name,
        pseudonym=pseudonym(rg),
        prediction=pred,
        measures=measures,
        classification=classification,
        cobb=cobb,
        spacing_source=rg.spacing_source,
        warnings=tuple(pred.warnings) + tuple(msgs),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        software_version=__version__,
        identifiers=ids,
        source_path=rg.source.absolute() if rg.source is not None else None,
    )


_DETECTORS: dict[tuple[str, str], Detector] = {}


def default_detector(kind: str, device: str = "auto") -> Detector:
    """The shipped detector for ``kind``, loaded once per process."""
    from cephspine.detector import Detector

    key = (check_kind(kind), device)
    if key not in _DETECTORS:
        _DETECTORS[key] = Detector.from_pretrained(kind, device=device)
    return _DETECTORS[key]


__all__ = [
    "IDENTIFIER_FIELDS",
    "WRONG_ANATOMY_STATUS",
    "Analysis",
    "analyze",
    "check_kind",
    "default_detector",
    "landmark_table",
    "pseudonym",
    "read_identifiers",
]
