"""Radiograph and Spacing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cephspine.errors import SpacingError
from cephspine.radiograph import Radiograph, Spacing, as_spacing


def test_spacing_is_row_first() -> None:
    sp = Spacing(row_mm=0.2, col_mm=0.1)
    assert sp[0] == 0.2
    np.testing.assert_array_equal(sp.xy_mm, [0.1, 0.2])  # x uses the column step


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, None),
        (0.1, Spacing(0.1, 0.1)),
        (2, Spacing(2.0, 2.0)),
        (np.float32(0.5), Spacing(0.5, 0.5)),
        ((0.1, 0.2), Spacing(0.1, 0.2)),
        (np.array([0.3, 0.4]), Spacing(0.3, 0.4)),
    ],
)
def test_as_spacing_accepts(value: object, expected: Spacing | None) -> None:
    got = as_spacing(value)
    assert got == expected
    if got is not None:
        assert isinstance(got, Spacing)


@pytest.mark.parametrize(
    "value",
    [0, -1, math.nan, math.inf, -math.inf, (0.1,), (0.1, 0.2, 0.3), (0.1, 0), "0.1", "11",
     b"11", True, object(), (0.1, "x")],
)  # fmt: skip
def test_as_spacing_refuses(value: object) -> None:
    with pytest.raises(SpacingError):
        as_spacing(value)


def test_as_spacing_message_names_argument() -> None:
    with pytest.raises(SpacingError, match="pixel_spacing must be positive"):
        as_spacing(-2, what="pixel_spacing")


def test_radiograph_properties_and_repr() -> None:
    px = np.zeros((30, 40), np.float32)
    rg = Radiograph(px, Spacing(0.1, 0.1), "dataset", Path("/data/001.jpg"), {"format": "jpeg"})
    assert rg.shape == (30, 40)
    assert (rg.height, rg.width) == (30, 40)
    assert rg.name == "001.jpg"
    assert repr(rg) == "Radiograph(001.jpg, 30x40 px, spacing 0.1x0.1 mm (dataset))"
    bare = Radiograph(px)
    assert bare.name == "<array>"
    assert "spacing unknown" in repr(bare)


def test_with_spacing_copies() -> None:
    rg = Radiograph(np.zeros((10, 10), np.float32), meta={"format": "png"})
    rg2 = rg.with_spacing((0.2, 0.3))
    assert rg2.spacing == Spacing(0.2, 0.3)
    assert rg2.spacing_source == "user"
    assert rg.spacing is None
    rg2.meta["x"] = 1
    assert "x" not in rg.meta
    assert rg.with_spacing(0.1, source="dataset").spacing_source == "dataset"
    cleared = rg2.with_spacing(None)
    assert cleared.spacing is None and cleared.spacing_source is None
    with pytest.raises(SpacingError):
        rg.with_spacing(0)


def test_radiograph_is_frozen() -> None:
    rg = Radiograph(np.zeros((10, 10), np.float32))
    with pytest.raises(AttributeError):
        rg.spacing = Spacing(1, 1)  # type: ignore[misc]
