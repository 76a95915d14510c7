"""SCR (both conventions) and AASCE SMAPE: worked examples and properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cephspine.errors import LandmarkError
from cephspine.geometry import CEPH_MEASURES, cobb_angles_batch
from cephspine.metrics import SCR_CONVENTIONS, scr, scr_table, smape

# ----------------------------------------------------------------------------- SCR


def test_accuracy_is_the_share_of_matching_types() -> None:
    true = np.array([1] * 50 + [2] * 50 + [3] * 50)
    pred = true.copy()
    pred[:35] = 3  # 35 of 150 wrong: 115 / 150
    assert scr(pred, true) == pytest.approx(100 * 115 / 150)
    assert round(scr(pred, true), 2) == 76.67  # a multiple of 1/150, as in the seed paper's Table II
    assert scr(true, true) == 100.0


def test_balanced_is_the_challenge_code() -> None:
    # confusion (rows = truth): type 1: 4 of 4 right; type 2: 1 of 2; type 3: 0 of 2
    true = np.array([1, 1, 1, 1, 2, 2, 3, 3])
    pred = np.array([1, 1, 1, 1, 2, 1, 1, 2])
    assert scr(pred, true) == pytest.approx(100 * 5 / 8)
    assert scr(pred, true, convention="balanced") == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    # a type absent from the truth counts 0 (still divided by 3)
    assert scr([1, 1, 3], [1, 1, 3], convention="balanced") == pytest.approx(100 * 2 / 3)


def test_balanced_mw_has_four_types_divided_by_three() -> None:
    # edge to edge (type 2) never occurs: the other three recalls over 3
    true = np.array([1, 1, 3, 3, 4, 4])
    pred = np.array([1, 3, 3, 3, 4, 1])
    assert scr(pred, true, convention="balanced", measure="MW") == pytest.approx(100 * (0.5 + 1 + 0.5) / 3)
    # when it does occur, the challenge code's division by 3 can exceed 100 %
    everything = np.array([1, 2, 3, 4])
    assert scr(everything, everything, convention="balanced", measure="MW") == pytest.approx(400 / 3)
    assert scr(everything, everything, convention="balanced", measure="ANB") == pytest.approx(100.0)


def test_scr_input_checks() -> None:
    with pytest.raises(LandmarkError, match="shapes differ"):
        scr([1, 2], [1, 2, 3])
    with pytest.raises(LandmarkError, match="integer type numbers"):
        scr([1.0, np.nan], [1, 2])
    with pytest.raises(LandmarkError, match="integer type numbers"):
        scr([1.5, 2], [1, 2])
    with pytest.raises(LandmarkError, match="non-empty"):
        scr([], [])
    with pytest.raises(ValueError, match="convention"):
        scr([1], [1], convention="kappa")  # type: ignore[arg-type]
    assert SCR_CONVENTIONS == ("accuracy", "balanced")


def test_scr_table() -> None:
    rng = np.random.default_rng(0)
    true = {m: rng.integers(1, 4, 30) for m in CEPH_MEASURES}
    pred = {m: np.where(rng.random(30) < 0.8, t, 1) for m, t in true.items()}
    table = scr_table(pred, true)
    assert table["measure"].tolist() == [*CEPH_MEASURES, "average"]
    assert list(table.columns) == ["measure", "n_images", "scr_pct", "convention"]
    for m in CEPH_MEASURES:
        assert table.set_index("measure").loc[m, "scr_pct"] == pytest.approx(scr(pred[m], true[m]))
    assert table["scr_pct"].iloc[-1] == pytest.approx(table["scr_pct"].iloc[:-1].mean())
    assert set(table["convention"]) == {"accuracy"} and set(table["n_images"]) == {30}
    balanced = scr_table(pred, true, convention="balanced").set_index("measure")["scr_pct"]
    assert balanced["MW"] == pytest.approx(scr(pred["MW"], true["MW"], convention="balanced", measure="MW"))
    # DataFrames with the type columns of CephClassification.to_row()
    frame_pred = pd.DataFrame({"anb_type": pred["ANB"], "image": range(30)})
    frame_true = pd.DataFrame({"anb_type": true["ANB"], "SNB": true["SNB"]})
    subset = scr_table(frame_pred, frame_true)
    assert subset["measure"].tolist() == ["ANB", "average"]
    with pytest.raises(LandmarkError, match="no measure found"):
        scr_table({"SNB": [1]}, {"ANB": [1]})


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=40))
def test_scr_bounds_and_perfect_prediction(pairs: list[tuple[int, int]]) -> None:
    pred = np.array([p for p, _ in pairs])
    true = np.array([t for _, t in pairs])
    for convention in SCR_CONVENTIONS:
        value = scr(pred, true, convention=convention, measure="ANB")  # type: ignore[arg-type]
        assert 0.0 <= value <= 100.0
    assert scr(true, true) == 100.0
    present = len(set(true.tolist()))
    assert scr(true, true, convention="balanced", measure="ANB") == pytest.approx(100 * present / 3)


# ----------------------------------------------------------------------------- SMAPE


def test_smape_worked_examples() -> None:
    assert smape([10.0, 20.0, 30.0], [12.0, 18.0, 30.0]) == pytest.approx(100 * 4 / 120)
    # the mean of per-image ratios, not a ratio of sums: 0 and 0.5
    pred = np.array([[10.0, 5.0, 0.0], [30.0, 0.0, 0.0]])
    true = np.array([[10.0, 5.0, 0.0], [10.0, 0.0, 0.0]])
    assert smape(pred, true) == pytest.approx(100 * (0 + 20 / 40) / 2)
    np.testing.assert_allclose(smape(pred, true, per_image=True), [0.0, 50.0])
    # an image whose denominator is 0 counts 0
    assert smape(np.zeros((2, 3)), np.array([[0.0, 0, 0], [1.0, 1, 0]])) == pytest.approx(100 * (0 + 1) / 2)


def test_smape_accepts_cobb_results() -> None:
    rng = np.random.default_rng(3)
    xy = np.zeros((2, 68, 2))
    for k in range(17):
        xy[:, 4 * k : 4 * k + 4, 1] = [30 + 40 * k, 30 + 40 * k, 46 + 40 * k, 46 + 40 * k]
        xy[:, 4 * k : 4 * k + 4, 0] = [80 + 3 * k, 120 + 3 * k, 80 + 3 * k, 120 + 3 * k]
    noisy = xy + rng.normal(0, 2, xy.shape)
    a, b = cobb_angles_batch(xy, 800), cobb_angles_batch(noisy, 800)
    assert smape(b, a) == pytest.approx(smape(b.angles_deg, a.angles_deg))
    assert smape(b[0], a[0]) == pytest.approx(smape(b.angles_deg[0], a.angles_deg[0]))


def test_smape_input_checks() -> None:
    with pytest.raises(LandmarkError, match="shapes differ"):
        smape([1.0, 2.0, 3.0], [[1.0, 2.0, 3.0]])
    with pytest.raises(LandmarkError, match="NaN"):
        smape([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(LandmarkError, match="non-negative"):
        smape([1.0, -2.0, 3.0], [1.0, 2.0, 3.0])


angle_sets = st.integers(1, 5).flatmap(
    lambda m: st.tuples(
        arrays(np.float64, (m, 3), elements=st.floats(0, 180, allow_nan=False)),
        arrays(np.float64, (m, 3), elements=st.floats(0, 180, allow_nan=False)),
    )
)


@given(angle_sets)
def test_smape_symmetric_and_bounded(ab: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = ab
    forward, backward = smape(a, b), smape(b, a)
    assert forward == pytest.approx(backward, rel=1e-12, abs=1e-12)
    assert 0.0 <= forward <= 100.0
    assert smape(a, a) == 0.0
