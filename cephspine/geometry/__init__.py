"""Clinical geometry on landmarks from any source (a detector, a CSV, an annotator).

- :func:`ceph_measures` — the eight cephalometric measures of the ISBI 2015 challenge
  (ANB, SNB, SNA, ODI, APDI, FHI, FMA, MW); :func:`ceph_measures_batch` for cohorts.
- :func:`classify_ceph` — their anatomical types with labels and norms
  (:data:`CEPH_NORMS`); :func:`ceph_types` for cohorts.
- :func:`cobb_angles` — the three Cobb angles of a spinal AP radiograph by the AASCE
  dataset's reference algorithm (or between endplates); :func:`cobb_angles_batch`.
- :func:`cobb_severity` — display bands of a Cobb angle.

Pure numpy (and shapely for vertebra quadrilaterals); no network code is imported.
"""

from __future__ import annotations

from cephspine.geometry.ceph import (
    MEASURE_LANDMARKS,
    CephClassification,
    CephMeasures,
    CephType,
    ceph_measures,
    ceph_measures_batch,
    ceph_types,
    classify_ceph,
)
from cephspine.geometry.cobb import (
    COBB_CURVES,
    CobbAngles,
    CobbAnglesBatch,
    CobbCurve,
    angle_matrix,
    cobb_angles,
    cobb_angles_batch,
    vertebra_polygons,
    vertebra_validity,
)
from cephspine.geometry.norms import (
    CEPH_MEASURES,
    CEPH_NORMS,
    COBB_SEVERITY_BANDS,
    MEASURE_UNITS,
    CobbSeverityBand,
    MeasureNorm,
    cobb_severity,
)

__all__ = [
    "CEPH_MEASURES",
    "CEPH_NORMS",
    "COBB_CURVES",
    "COBB_SEVERITY_BANDS",
    "MEASURE_LANDMARKS",
    "MEASURE_UNITS",
    "CephClassification",
    "CephMeasures",
    "CephType",
    "CobbAngles",
    "CobbAnglesBatch",
    "CobbCurve",
    "CobbSeverityBand",
    "MeasureNorm",
    "angle_matrix",
    "ceph_measures",
    "ceph_measures_batch",
    "ceph_types",
    "classify_ceph",
    "cobb_angles",
    "cobb_angles_batch",
    "cobb_severity",
    "vertebra_polygons",
    "vertebra_validity",
]
