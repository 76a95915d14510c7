"""The type table of the eight measures and the Cobb severity bands."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest

from cephspine.errors import LandmarkError
from cephspine.geometry import ceph_types, classify_ceph, cobb_severity, norms
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS, COBB_SEVERITY_BANDS

# (measure, value, type, label): the table of domain.md §2, at and around every boundary
CASES = [
    ("ANB", 3.2, 1, "Class I skeletal"),
    ("ANB", 5.7, 1, "Class I skeletal"),
    ("ANB", 5.71, 2, "Class II skeletal"),
    ("ANB", 3.19, 3, "Class III skeletal"),
    ("ANB", -2.0, 3, "Class III skeletal"),
    ("SNB", 74.6, 1, "normal mandible"),
    ("SNB", 78.7, 1, "normal mandible"),
    ("SNB", 74.59, 2, "retrognathic mandible"),
    ("SNB", 78.71, 3, "prognathic mandible"),
    ("SNA", 79.4, 1, "normal maxilla"),
    ("SNA", 83.2, 1, "normal maxilla"),
    ("SNA", 83.21, 2, "prognathic maxilla"),
    ("SNA", 79.39, 3, "retrognathic maxilla"),
    ("ODI", 68.4, 1, "normal"),
    ("ODI", 80.5, 1, "normal"),
    ("ODI", 80.51, 2, "deep bite tendency"),
    ("ODI", 68.39, 3, "open bite tendency"),
    ("APDI", 77.6, 1, "normal"),
    ("APDI", 85.2, 1, "normal"),
    ("APDI", 77.59, 2, "Class II tendency"),
    ("APDI", 85.21, 3, "Class III tendency"),
    ("FHI", 0.65, 1, "normal"),
    ("FHI", 0.75, 1, "normal"),
    ("FHI", 0.751, 2, "short face tendency"),
    ("FHI", 0.649, 3, "long face tendency"),
    ("FMA", 26.8, 1, "normal"),
    ("FMA", 31.4, 1, "normal"),
    ("FMA", 31.41, 2, "high angle tendency"),
    ("FMA", 26.79, 3, "low angle tendency"),
    ("MW", 2.0, 1, "normal"),
    ("MW", 4.5, 1, "normal"),
    ("MW", 0.0, 2, "edge to edge"),
    ("MW", -0.0, 2, "edge to edge"),
    ("MW", 1.0, 3, "anterior cross bite"),  # the challenge's coded rule: 0 < MW < 2 is type 3
    ("MW", 1.99, 3, "anterior cross bite"),
    ("MW", -1.5, 3, "anterior cross bite"),
    ("MW", 4.51, 4, "large overjet"),
]


@pytest.mark.parametrize(("measure", "value", "type_number", "label"), CASES)
def test_type_table(measure: str, value: float, type_number: int, label: str) -> None:
    entry = classify_ceph({measure: value})[measure]
    assert entry.type == type_number
    assert entry.label == label
    assert entry.value == value
    assert entry.is_normal == (type_number == 1)


def test_every_measure_has_a_norm_and_unit() -> None:
    assert set(CEPH_NORMS) == set(CEPH_MEASURES)
    assert CEPH_MEASURES == ("ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW")
    for m, norm in CEPH_NORMS.items():
        assert norm.measure == m
        assert norm.normal_low < norm.normal_high
        expected = (1, 2, 3, 4) if m == "MW" else (1, 2, 3)
        assert norm.type_numbers == expected
        assert {norm.above, norm.below} <= set(expected) - {1}


def test_norms_travel_with_the_types() -> None:
    c = classify_ceph({"ANB": 6.0, "ODI": 74.0, "FHI": 0.7, "MW": 3.0})
    assert list(c) == ["ANB", "ODI", "FHI", "MW"]
    assert c.types == {"ANB": 2, "ODI": 1, "FHI": 1, "MW": 1}
    assert c["ANB"].normal_range == "3.2–5.7°"
    assert c["FHI"].normal_range == "0.65–0.75"
    assert c["MW"].normal_range == "2–4.5 mm"
    assert (c["ODI"].norm.mean, c["ODI"].norm.sd) == (74.5, 6.07)
    assert c.norms["ODI"] is CEPH_NORMS["ODI"]
    table = c.to_dataframe()
    assert list(table.columns) == [
        "measure", "value", "unit", "type", "label", "normal_low", "normal_high", "normal_range",
    ]  # fmt: skip
    assert table.loc[table.measure == "ANB", "label"].item() == "Class II skeletal"
    assert table.loc[table.measure == "MW", "unit"].item() == "mm"
    assert c.to_row() == {"anb_type": 2, "odi_type": 1, "fhi_type": 1, "mw_type": 1}
    assert "Class II skeletal" in repr(c)


def test_column_names_are_accepted_and_other_keys_ignored() -> None:
    c = classify_ceph({"anb_deg": 1.0, "image": "001.jpg", "fhi_ratio": 0.8})
    assert c.types == {"ANB": 3, "FHI": 2}
    assert c["anb_deg"].measure == "ANB"
    with pytest.raises(KeyError, match="no cephalometric measure"):
        classify_ceph({"image": "001.jpg"})
    with pytest.raises(ValueError, match="given twice"):
        classify_ceph({"ANB": 1.0, "anb_deg": 1.0})


def test_nan_has_no_type() -> None:
    with pytest.raises(LandmarkError, match="SNA"):
        classify_ceph({"SNA": float("nan")})
    with pytest.raises(LandmarkError, match="FMA"):
        ceph_types({"FMA": [30.0, np.inf]})


def test_vectorised_types_match_single() -> None:
    values = {m: np.array([v for mm, v, _, _ in CASES if mm == m]) for m in CEPH_MEASURES}
    types = ceph_types(values)
    for m in CEPH_MEASURES:
        expected = [t for mm, _, t, _ in CASES if mm == m]
        assert types[m].tolist() == expected
        assert types[m].dtype == np.int64
    frame = pd.DataFrame({"image": ["a", "b"], "anb_deg": [4.0, 7.0], "SNB": [80.0, 70.0]})
    assert {k: v.tolist() for k, v in ceph_types(frame).items()} == {"ANB": [1, 2], "SNB": [3, 2]}


def test_label_of_unknown_type() -> None:
    with pytest.raises(KeyError, match="ANB has no type 4"):
        CEPH_NORMS["ANB"].label(4)


@pytest.mark.parametrize(
    ("angle", "band"),
    [
        (0.0, "normal"),
        (9.99, "normal"),
        (10.0, "mild"),
        (24.99, "mild"),
        (25.0, "moderate"),
        (40.0, "moderate"),
        (40.01, "severe"),
        (156.4, "severe"),
    ],
)
def test_cobb_severity(angle: float, band: str) -> None:
    assert cobb_severity(angle) == band


def test_cobb_severity_bands_cover_the_half_line_once() -> None:
    for a in np.linspace(0, 180, 3601):
        assert sum(b.contains(float(a)) for b in COBB_SEVERITY_BANDS) == 1
    assert [b.text for b in COBB_SEVERITY_BANDS] == ["< 10°", "10–25°", "25–40°", "> 40°"]
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(LandmarkError):
            cobb_severity(bad)


def test_docstring_examples() -> None:
    assert doctest.testmod(norms).failed == 0
