"""Gaussian heatmap targets and their sub-pixel decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cephspine.heatmaps import decode, gaussian_targets

H, W = 24, 40  # non-square so that an x/y swap cannot pass


@given(
    x=st.integers(0, W - 1),
    y=st.integers(0, H - 1),
    sigma=st.floats(0.5, 8.0),
)
def test_peak_is_one_at_integer_positions(x: int, y: int, sigma: float) -> None:
    hm = gaussian_targets(torch.tensor([[[float(x), float(y)]]]), H, W, sigma)
    assert hm.shape == (1, 1, H, W)
    assert hm.dtype == torch.float32
    assert hm[0, 0, y, x].item() == 1.0
    assert hm.max().item() == 1.0
    assert int(hm[0, 0].flatten().argmax()) == y * W + x
    # sigma is the standard deviation in pixels: one pixel away the value is exp(-1 / 2σ²)
    if x + 1 < W:
        assert hm[0, 0, y, x + 1].item() == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-5)
    if y + 1 < H:
        assert hm[0, 0, y + 1, x].item() == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-5)


def test_targets_batch_and_landmark_axes() -> None:
    xy = torch.tensor([[[3.0, 5.0], [30.0, 2.0]], [[0.0, 0.0], [39.0, 23.0]]])
    hm = gaussian_targets(xy, H, W, 2.0)
    assert hm.shape == (2, 2, H, W)
    for b in range(2):
        for n in range(2):
            x, y = (int(v) for v in xy[b, n])
            assert hm[b, n, y, x].item() == 1.0


@given(
    x=st.floats(1.0, W - 2.0),
    y=st.floats(1.0, H - 2.0),
    sigma=st.floats(2.0, 6.0),
)
def test_decode_recovers_subpixel_position(x: float, y: float, sigma: float) -> None:
    hm = gaussian_targets(torch.tensor([[[x, y]]]), H, W, sigma)
    xy, peak = decode(hm)
    assert xy.shape == (1, 1, 2)
    assert peak.shape == (1, 1)
    assert abs(xy[0, 0, 0] - x) <= 0.05
    assert abs(xy[0, 0, 1] - y) <= 0.05
    # the peak is the heatmap value at the arg-max pixel
    ix, iy = round(x), round(y)
    assert peak[0, 0] == pytest.approx(hm[0, 0, iy, ix].item(), rel=1e-6)


def test_decode_keeps_batch_and_landmark_order() -> None:
    xy_true = torch.tensor([[[5.3, 7.8], [33.2, 3.6], [20.0, 20.0]], [[12.7, 15.1], [2.4, 21.5], [37.9, 1.2]]])
    hm = gaussian_targets(xy_true, H, W, 3.0)
    hm[1, 2] *= 0.5  # a lower peak for one landmark
    xy, peak = decode(hm)
    assert xy.shape == (2, 3, 2)
    np.testing.assert_allclose(xy, xy_true.numpy(), atol=0.05)
    assert peak[1, 2] == pytest.approx(0.5 * peak.max(), rel=0.05)


@pytest.mark.parametrize(
    "x, y",
    [(0.0, 0.0), (W - 1.0, H - 1.0), (0.0, H - 1.0), (W - 1.0, 0.0), (-3.0, 10.0), (W + 5.0, -4.0)],
)
def test_decode_at_and_beyond_edges(x: float, y: float) -> None:
    hm = gaussian_targets(torch.tensor([[[x, y]]]), H, W, 2.0)
    xy, peak = decode(hm)
    assert np.isfinite(xy).all() and np.isfinite(peak).all()
    assert 0.0 <= xy[0, 0, 0] <= W - 1 and 0.0 <= xy[0, 0, 1] <= H - 1
    # the decoded point is the map pixel nearest to the (possibly outside) position
    assert xy[0, 0, 0] == pytest.approx(min(max(x, 0.0), W - 1.0), abs=0.5)
    assert xy[0, 0, 1] == pytest.approx(min(max(y, 0.0), H - 1.0), abs=0.5)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 2, 1, 7), (1, 1, 6, 1), (2, 1, 5, 5)])
def test_decode_degenerate_maps(shape: tuple[int, int, int, int]) -> None:
    flat = torch.zeros(shape)
    xy, peak = decode(flat)
    assert xy.shape == (shape[0], shape[1], 2)
    assert np.isfinite(xy).all()
    np.testing.assert_array_equal(peak, 0.0)
