"""Prediction: validation, millimetres and the tidy table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cephspine.anatomy import CEPH_LANDMARKS
from cephspine.prediction import Prediction
from cephspine.radiograph import Spacing

SPACING = Spacing(0.1, 0.2)


def make(spacing: Spacing | None = SPACING, **kw: object) -> Prediction:
    n = len(CEPH_LANDMARKS)
    xy = np.stack([np.arange(n, dtype=float) * 10, np.arange(n, dtype=float) * 5 + 1], axis=1)
    args: dict[str, object] = {
        "names": CEPH_LANDMARKS,
        "xy_px": xy,
        "confidence": np.linspace(0, 1, n),
        "image_shape": (2400, 1935),
        "spacing": spacing,
        "model": "ceph",
        "model_version": "1.0",
        "source": "001.jpg",
    }
    args.update(kw)
    return Prediction(**args)  # type: ignore[arg-type]


def test_xy_mm_uses_col_for_x_and_row_for_y() -> None:
    p = make()
    assert p.xy_mm is not None
    np.testing.assert_allclose(p.xy_mm[:, 0], p.xy_px[:, 0] * 0.2)
    np.testing.assert_allclose(p.xy_mm[:, 1], p.xy_px[:, 1] * 0.1)
    assert make(spacing=None).xy_mm is None


def test_point_and_len() -> None:
    p = make()
    assert len(p) == 19
    np.testing.assert_array_equal(p.point("nasion"), [10.0, 6.0])
    with pytest.raises(ValueError):
        p.point("not-a-landmark")


def test_shape_validation() -> None:
    with pytest.raises(ValueError, match=r"xy_px must have shape \(19, 2\)"):
        make(xy_px=np.zeros((18, 2)))
    with pytest.raises(ValueError, match=r"confidence must have shape \(19,\)"):
        make(confidence=np.zeros(3))


def test_inputs_converted_to_float64() -> None:
    p = make(xy_px=np.zeros((19, 2), np.float32).tolist())
    assert p.xy_px.dtype == np.float64
    assert isinstance(p.names, tuple)


def test_to_dataframe() -> None:
    df = make().to_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == [
        "image", "model", "landmark_index", "landmark", "x_px", "y_px", "x_mm", "y_mm",
        "confidence",
    ]  # fmt: skip
    assert len(df) == 19
    assert df["landmark"].tolist() == list(CEPH_LANDMARKS)
    assert df.loc[1, "x_mm"] == pytest.approx(10 * 0.2)
    assert df.loc[1, "y_mm"] == pytest.approx(6 * 0.1)
    no_mm = make(spacing=None).to_dataframe()
    assert no_mm["x_mm"].isna().all() and no_mm["y_mm"].isna().all()


def test_repr_is_one_line() -> None:
    text = repr(make(warnings=("low confidence: gonion",)))
    assert "\n" not in text
    assert "19 landmarks" in text and "0.1x0.2 mm" in text and "1 warning" in text
    assert "no spacing" in repr(make(spacing=None))
