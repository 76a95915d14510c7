"""Clinical geometry on landmarks from any source (a detector, a CSV, an annotator).

- :func:`ceph_measures` — the eight cephalometric measures of the ISBI 2015 challenge
  (ANB, SNB, SNA, ODI, APDI, FHI, FMA, MW); :func:`ceph_measures_batch` for cohorts.
- :func:`classify_ceph` — their anatomical types with labels and norms
  (:data:`CEPH_NORMS`); :func:`ceph_types` for cohorts.
- :func:`cobb_angles` — the three Cobb angles of a spinal AP radiograph by the AASCE
  dataset's reference algorithm (or between endplates); :func:`cobb_angles_batch`.
- :func:`cobb_severity` — display bands of a Cobb angle.
- :func:`ceph_analyses` — the named cephalometric analyses (Steiner, Downs, Tweed,
  Björk–Jarabak, McNamara, Holdaway, Burstone–Legan, Ricketts) with sourced norms and
  flags; :func:`select_analyses` picks one analysis' rows.

Pure numpy (and shapely for vertebra quadrilaterals); no network code is imported.
"""

from __future__ import annotations

from cephspine.geometry.analyses import (
    ANALYSES,
    ANALYSIS_KEYS,
    ANALYSIS_MEASURES,
    AnalysisMeasure,
    analysis_values,
    ceph_analyses,
    read_norms,
    select_analyses,
    shipped_norms,
)
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
    "ANALYSES",
    "ANALYSIS_KEYS",
    "ANALYSIS_MEASURES",
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
    "AnalysisMeasure",
    "analysis_values",
    "angle_matrix",
    "ceph_analyses",
    "ceph_measures",
    "ceph_measures_batch",
    "ceph_types",
    "classify_ceph",
    "cobb_angles",
    "cobb_angles_batch",
    "cobb_severity",
    "read_norms",
    "select_analyses",
    "shipped_norms",
    "vertebra_polygons",
    "vertebra_validity",
]
