"""The per-landmark confidence model: fitting, calibration, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cephspine.confidence import FEATURES, Calibrator, calibration_table, fit_calibrator


def _synthetic(m: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features where a small refine peak means a large radial error."""
    rng = np.random.default_rng(seed)
    refine_peak = rng.uniform(0.05, 1.0, m)
    coarse_peak = np.clip(refine_peak + rng.normal(0, 0.2, m), 0, 1)
    shift_mm = rng.exponential(1.0 + 3 * (1 - refine_peak))
    errors = rng.exponential(0.5 + 4.0 * (1.0 - refine_peak) ** 2)
    return np.column_stack([refine_peak, coarse_peak, shift_mm]), errors


@pytest.fixture(scope="module")
def fitted() -> tuple[Calibrator, np.ndarray, np.ndarray]:
    feats, errors = _synthetic()
    return fit_calibrator(feats, errors, radius_mm=2.0), feats, errors


def test_probabilities_are_calibrated_on_the_training_data(fitted) -> None:
    cal, feats, errors = fitted
    prob = cal(feats)
    hit = errors <= 2.0
    assert prob.shape == (len(feats),)
    assert ((prob > 0) & (prob < 1)).all()
    assert abs(prob.mean() - hit.mean()) <= 0.05
    for row in calibration_table(prob, hit, bins=5):
        if row["n"] >= 200:
            assert abs(row["mean_confidence"] - row["observed_rate"]) <= 0.1, row


def test_confidence_rises_with_the_refine_peak(fitted) -> None:
    cal, _, _ = fitted
    peaks = np.linspace(0.05, 1.0, 30)
    grid = np.column_stack([peaks, np.full(30, 0.5), np.full(30, 1.0)])
    prob = cal(grid)
    assert (np.diff(prob) > 0).all()
    assert prob[-1] - prob[0] > 0.3  # and it actually separates good from bad


def test_confidence_is_informative(fitted) -> None:
    """Better than a constant: lower Brier score than predicting the hit rate everywhere."""
    cal, feats, errors = fitted
    hit = (errors <= 2.0).astype(float)
    brier = np.mean((cal(feats) - hit) ** 2)
    baseline = np.mean((hit.mean() - hit) ** 2)
    assert brier < 0.9 * baseline


def test_radius_changes_the_meaning() -> None:
    feats, errors = _synthetic(m=1500, seed=1)
    small = fit_calibrator(feats, errors, radius_mm=1.0)
    large = fit_calibrator(feats, errors, radius_mm=4.0)
    assert large.radius_mm == 4.0
    assert large(feats).mean() > small(feats).mean()
    assert small(feats).mean() == pytest.approx((errors <= 1.0).mean(), abs=0.05)
    assert large(feats).mean() == pytest.approx((errors <= 4.0).mean(), abs=0.05)


def test_round_trip_through_json(fitted) -> None:
    cal, feats, _ = fitted
    d = json.loads(json.dumps(cal.to_dict()))
    assert d["features"] == list(FEATURES)
    again = Calibrator.from_dict(d)
    assert again == cal
    np.testing.assert_array_equal(again(feats), cal(feats))


def test_extreme_inputs_stay_finite(fitted) -> None:
    cal, _, _ = fitted
    feats = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1e6, -1e6, 1e9], [0.5, 0.5, -3.0]])
    prob = cal(feats)
    assert np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()


@pytest.mark.parametrize("errors_value, expect_high", [(0.1, True), (9.0, False)])
def test_all_hits_or_all_misses(errors_value: float, expect_high: bool) -> None:
    feats, _ = _synthetic(m=200, seed=2)
    cal = fit_calibrator(feats, np.full(len(feats), errors_value))
    prob = cal(feats)
    assert np.isfinite(prob).all()
    assert (prob > 0.95).all() if expect_high else (prob < 0.05).all()


def test_fit_refuses_empty_or_mismatched_data() -> None:
    with pytest.raises(ValueError):
        fit_calibrator(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError):
        fit_calibrator(np.zeros((5, 3)), np.zeros(4))


def test_calibration_table_hand_example() -> None:
    prob = np.array([0.1, 0.15, 0.5, 0.9, 1.0])
    hit = np.array([False, True, True, True, True])
    rows = calibration_table(prob, hit, bins=5)
    # empty bins are left out; 1.0 belongs to the last bin
    assert [(r["bin_lo"], r["bin_hi"]) for r in rows] == [
        pytest.approx((0.0, 0.2)),
        pytest.approx((0.4, 0.6)),
        pytest.approx((0.8, 1.0)),
    ]
    assert [r["n"] for r in rows] == [2, 1, 2]
    assert rows[0]["mean_confidence"] == pytest.approx(0.125)
    assert rows[0]["observed_rate"] == pytest.approx(0.5)
    assert rows[2]["mean_confidence"] == pytest.approx(0.95)
    assert rows[2]["observed_rate"] == 1.0


@pytest.mark.parametrize("bins", [1, 4, 10])
def test_calibration_table_partitions_the_data(bins: int) -> None:
    rng = np.random.default_rng(bins)
    prob = np.concatenate([rng.uniform(0, 1, 500), [0.0, 1.0]])
    hit = rng.uniform(0, 1, len(prob)) < prob
    rows = calibration_table(prob, hit, bins=bins)
    assert sum(r["n"] for r in rows) == len(prob)
    assert len(rows) <= bins
    for r in rows:
        assert r["bin_lo"] <= r["mean_confidence"] <= r["bin_hi"]
        assert 0.0 <= r["observed_rate"] <= 1.0
        assert r["bin_hi"] - r["bin_lo"] == pytest.approx(1.0 / bins)
    json.dumps(rows)  # plain floats and ints: goes into the model card


def test_landmark_offsets_lower_the_confidence_of_a_harder_landmark() -> None:
    """Two landmarks with the same heatmap features, one missed twice as often: per-landmark
    offsets tell them apart, and the offsets travel through the card."""
    rng = np.random.default_rng(5)
    m = 600
    feats = np.column_stack([rng.uniform(0.4, 1.0, 2 * m), rng.uniform(0.4, 1.0, 2 * m), rng.uniform(0, 1, 2 * m)])
    hard = np.tile([False, True], m)  # landmark 1 of each image
    miss = rng.random(2 * m) < np.where(hard, 0.5, 0.1)
    errors = np.where(miss, 5.0, 0.5)
    cal = fit_calibrator(feats, errors, 2.0, n_landmarks=2)
    p = cal(feats)
    assert cal.landmark_offsets is not None and cal.landmark_offsets[0] == 0.0
    assert abs(p[~hard].mean() - 0.9) < 0.05 and abs(p[hard].mean() - 0.5) < 0.06
    back = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_allclose(back(feats), p)
    with pytest.raises(ValueError, match="whole images"):
        cal(feats[:3])
    plain = fit_calibrator(feats, errors, 2.0)
    assert plain.landmark_offsets is None and "landmark_offsets" not in plain.to_dict()
