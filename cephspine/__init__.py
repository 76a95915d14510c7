"""cephspine: anatomical landmarks and clinical measures on lateral cephalograms and spine X-rays.

The public API is flat::

    import cephspine
    rg = cephspine.load_image("scan.dcm")
    errors = cephspine.metrics.radial_errors(pred_xy, true_xy, spacing=rg.spacing)
    measures = cephspine.ceph_measures(xy19, spacing=0.1)   # ANB … MW; .classify() for types

``Detector`` is imported lazily (it needs torch), so ``import cephspine`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from cephspine import anatomy, geometry, metrics
from cephspine.anatomy import (
    CEPH_ABBREVIATIONS,
    CEPH_LANDMARKS,
    CORNERS,
    SPINE_LANDMARKS,
    VERTEBRAE,
    landmark_names,
)
from cephspine.data import example_path
from cephspine.errors import (
    AnatomyWarning,
    CephspineError,
    CephspineWarning,
    CohortIncompleteWarning,
    CohortInterrupted,
    CohortSettingsError,
    DatasetError,
    DeviceError,
    ExperimentalModelWarning,
    ImageReadError,
    InputNotFoundError,
    InvalidArgumentError,
    LandmarkError,
    LevelWarning,
    LowConfidenceWarning,
    MissingDependencyError,
    ModelLoadError,
    OutputError,
    RegistrationWarning,
    SpacingError,
    SpacingWarning,
    TrainingImagesWarning,
    UnknownModelError,
    UnsupportedImageError,
    WrongAnatomyWarning,
)
from cephspine.geometry import ceph_measures, classify_ceph, cobb_angles
from cephspine.io import AasceDataset, Defect, IsbiDataset, load_image
from cephspine.prediction import Prediction
from cephspine.radiograph import Radiograph, Spacing

if TYPE_CHECKING:
    from cephspine.analysis import Analysis, analyze
    from cephspine.cohorts import cohort
    from cephspine.comparison import Comparison, compare
    from cephspine.detector import Detector
    from cephspine.exports import export
    from cephspine.io.annotations import Annotations, read_annotations
    from cephspine.reports import report, write_cohort_report, write_compare_report, write_report

try:
    __version__ = version("cephspine")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# name -> module for attributes imported on first use (they pull in heavy dependencies)
_LAZY: dict[str, str] = {
    "Detector": "cephspine.detector",
    "Analysis": "cephspine.analysis",
    "analyze": "cephspine.analysis",
    "cohort": "cephspine.cohorts",
    "compare": "cephspine.comparison",
    "Comparison": "cephspine.comparison",
    "write_compare_report": "cephspine.reports",
    "report": "cephspine.reports",
    "write_cohort_report": "cephspine.reports",
    "write_report": "cephspine.reports",
    "export": "cephspine.exports",
    "read_annotations": "cephspine.io.annotations",
    "Annotations": "cephspine.io.annotations",
}

__all__ = [
    "Analysis",
    "Annotations",
    "analyze",
    "export",
    "read_annotations",
    "cohort",
    "compare",
    "Comparison",
    "report",
    "write_cohort_report",
    "write_compare_report",
    "CEPH_ABBREVIATIONS",
    "CEPH_LANDMARKS",
    "CORNERS",
    "SPINE_LANDMARKS",
    "VERTEBRAE",
    "AasceDataset",
    "CephspineError",
    "CephspineWarning",
    "DatasetError",
    "Defect",
    "Detector",
    "ImageReadError",
    "IsbiDataset",
    "LandmarkError",
    "LevelWarning",
    "LowConfidenceWarning",
    "ModelLoadError",
    "Prediction",
    "Radiograph",
    "DeviceError",
    "RegistrationWarning",
    "Spacing",
    "SpacingError",
    "AnatomyWarning",
    "SpacingWarning",
    "ExperimentalModelWarning",
    "UnknownModelError",
    "UnsupportedImageError",
    "WrongAnatomyWarning",
    "InvalidArgumentError",
    "InputNotFoundError",
    "OutputError",
    "MissingDependencyError",
    "CohortSettingsError",
    "CohortIncompleteWarning",
    "TrainingImagesWarning",
    "CohortInterrupted",
    "__version__",
    "anatomy",
    "ceph_measures",
    "classify_ceph",
    "cobb_angles",
    "example_path",
    "geometry",
    "landmark_names",
    "load_image",
    "metrics",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cephspine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
