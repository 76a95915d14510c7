"""Intensity normalisation, resampling and the coordinate maps, patch cropping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cephspine.heatmaps import decode, gaussian_targets
from cephspine.preprocess import (
    crop_patches,
    normalize_intensity,
    pixel_affine_to_theta,
    resample,
)

# --- normalize_intensity --------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, 7.0, 65535.0, -12.5])
def test_normalize_constant_image(value: float) -> None:
    out = normalize_intensity(np.full((40, 30), value))
    assert out.shape == (40, 30)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.ptp(out) == 0.0
    assert 0.0 <= out[0, 0] <= 1.0


def test_normalize_range_and_order() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4096, (64, 48)).astype(np.uint16)
    out = normalize_intensity(img)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    # monotone: brighter input is never darker output
    order = np.argsort(img, axis=None, kind="stable")
    assert (np.diff(out.ravel()[order]) >= 0).all()


def test_normalize_uses_full_16bit_range() -> None:
    ramp = np.linspace(0, 65535, 200 * 100).reshape(200, 100).astype(np.uint16)
    out = normalize_intensity(ramp)
    assert out[0, 0] == 0.0 and out[-1, -1] == 1.0
    assert out[100, 50] == pytest.approx(0.5, abs=0.02)


def test_normalize_independent_of_bit_depth() -> None:
    rng = np.random.default_rng(1)
    img8 = rng.integers(0, 256, (50, 70)).astype(np.uint8)
    img16 = img8.astype(np.uint16) * 257  # the same picture stored with 16 bits
    np.testing.assert_allclose(normalize_intensity(img8), normalize_intensity(img16), atol=1e-6)


def test_normalize_is_robust_to_a_few_hot_pixels() -> None:
    ramp = np.linspace(0, 1000, 200 * 200).reshape(200, 200)
    hot = ramp.copy()
    rng = np.random.default_rng(3)
    idx = rng.choice(hot.size, size=hot.size // 500, replace=False)  # 0.2 % saturated pixels
    hot.flat[idx] = 65535.0
    out = normalize_intensity(hot)
    mid = np.unravel_index(np.setdiff1d(np.arange(hot.size), idx)[hot.size // 2], hot.shape)
    assert out[mid] == pytest.approx(normalize_intensity(ramp)[mid], abs=0.05)
    assert (out.flat[idx] == 1.0).all()


def test_normalize_does_not_modify_input() -> None:
    img = np.arange(12.0).reshape(3, 4)
    before = img.copy()
    normalize_intensity(img)
    np.testing.assert_array_equal(img, before)


# --- resample and the coordinate maps -------------------------------------------------


@pytest.mark.parametrize(
    "shape, spacing, target, multiple",
    [((100, 80), (0.1, 0.1), 0.2, 1), ((101, 77), (0.1, 0.3), 0.2, 16), ((30, 40), (0.5, 0.5), 0.2, 8)],
)
def test_resample_size_padding_and_factors(shape, spacing, target, multiple) -> None:
    img = np.ones(shape, dtype=np.float32)
    r = resample(img, spacing, target, multiple)
    nh = round(shape[0] * spacing[0] / target)
    nw = round(shape[1] * spacing[1] / target)
    assert r.size_hw == (nh, nw)
    assert r.image.shape[:2] == (1, 1)
    ph, pw = r.image.shape[-2:]
    assert ph % multiple == 0 and pw % multiple == 0
    assert 0 <= ph - nh < multiple and 0 <= pw - nw < multiple
    np.testing.assert_allclose(r.factor_xy, [nw / shape[1], nh / shape[0]])
    # content where the image is, zeros in the padding
    np.testing.assert_allclose(r.image[0, 0, :nh, :nw].numpy(), 1.0, atol=1e-5)
    assert float(r.image[0, 0, nh:, :].abs().sum()) == 0.0
    assert float(r.image[0, 0, :, nw:].abs().sum()) == 0.0


@given(
    h=st.integers(8, 400),
    w=st.integers(8, 400),
    row_mm=st.floats(0.05, 1.0),
    col_mm=st.floats(0.05, 1.0),
    target=st.floats(0.1, 1.0),
    xy=st.lists(st.tuples(st.floats(-50, 450), st.floats(-50, 450)), min_size=1, max_size=5),
)
def test_coordinate_maps_round_trip(h, w, row_mm, col_mm, target, xy) -> None:
    r = resample(np.zeros((h, w), dtype=np.float32), (row_mm, col_mm), target)
    pts = np.array(xy, dtype=np.float64)
    there = r.to_resampled(pts)
    np.testing.assert_allclose(r.to_original(there), pts, atol=1e-6)
    np.testing.assert_allclose(r.to_resampled(r.to_original(pts)), pts, atol=1e-6)
    # pixel edges map onto pixel edges: the image's outer border is preserved
    corners = np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]])
    nh, nw = r.size_hw
    np.testing.assert_allclose(r.to_resampled(corners), [[-0.5, -0.5], [nw - 0.5, nh - 0.5]], atol=1e-6)


@pytest.mark.parametrize("spacing", [(0.1, 0.1), (0.1, 0.15), (0.15, 0.1)])
def test_coordinate_map_follows_the_image_content(spacing) -> None:
    """A blob rendered at (x, y) is found at ``to_resampled((x, y))`` after resampling."""
    h, w = 120, 150
    xy = np.array([61.3, 47.8])
    blob = gaussian_targets(torch.tensor(xy[None, None], dtype=torch.float32), h, w, 8.0)[0, 0].numpy()
    r = resample(blob, spacing, 0.2, multiple=16)
    found, _ = decode(r.image)
    np.testing.assert_allclose(found[0, 0], r.to_resampled(xy), atol=0.1)


# --- crop_patches ---------------------------------------------------------------------


@given(
    size=st.integers(3, 17),
    data=st.data(),
)
def test_crop_patches_picks_the_right_pixel(size: int, data) -> None:
    h, w = 20, 27
    x0, y0 = data.draw(st.integers(0, w - 1)), data.draw(st.integers(0, h - 1))
    u, v = data.draw(st.integers(0, size - 1)), data.draw(st.integers(0, size - 1))
    img = torch.zeros(1, 1, h, w)
    img[0, 0, y0, x0] = 1.0
    half = (size - 1) / 2.0
    centre = np.array([[x0 - (u - half), y0 - (v - half)]])
    patch = crop_patches(img, centre, size)
    assert patch.shape == (1, 1, size, size)
    expected = torch.zeros(size, size)
    expected[v, u] = 1.0
    torch.testing.assert_close(patch[0, 0], expected, atol=1e-5, rtol=0)


def test_crop_patches_several_centres_and_zero_outside() -> None:
    h, w, size = 12, 16, 5
    img = torch.ones(1, 1, h, w)
    centres = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], [7.0, 5.0], [100.0, -50.0]])
    p = crop_patches(img, centres, size)
    assert p.shape == (4, 1, size, size)
    # patch 0 centred on the top-left pixel: left columns and top rows fall outside
    expected0 = torch.zeros(size, size)
    expected0[2:, 2:] = 1.0
    torch.testing.assert_close(p[0, 0], expected0, atol=1e-5, rtol=0)
    expected1 = torch.zeros(size, size)
    expected1[:3, :3] = 1.0
    torch.testing.assert_close(p[1, 0], expected1, atol=1e-5, rtol=0)
    torch.testing.assert_close(p[2, 0], torch.ones(size, size), atol=1e-5, rtol=0)
    assert float(p[3].abs().sum()) == 0.0


@pytest.mark.parametrize(
    "lin, step",
    [
        ([[0.0, -1.0], [1.0, 0.0]], (1, 0)),  # 90° rotation
        ([[2.0, 0.0], [0.0, 2.0]], (1, 0)),  # 2× zoom out
        ([[1.0, 0.0], [0.0, 3.0]], (0, 1)),  # anisotropic
    ],
)
def test_crop_patches_linear_map(lin, step) -> None:
    """Patch pixel (u, v) samples image pixel ``c + L @ ((u, v) - (size - 1) / 2)``."""
    size, c = 7, np.array([10.0, 9.0])
    L = np.array(lin)
    target = c + L @ np.array(step, dtype=np.float64)
    img = torch.zeros(1, 1, 20, 24)
    img[0, 0, int(target[1]), int(target[0])] = 1.0
    patch = crop_patches(img, c[None], size, torch.tensor(L)[None])
    half = (size - 1) // 2
    expected = torch.zeros(size, size)
    expected[half + step[1], half + step[0]] = 1.0
    torch.testing.assert_close(patch[0, 0], expected, atol=1e-5, rtol=0)


# --- pixel_affine_to_theta ------------------------------------------------------------


def _warp(src: torch.Tensor, m: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    theta = pixel_affine_to_theta(m, tuple(src.shape[-2:]), out_hw)
    grid = F.affine_grid(theta, [len(m), 1, *out_hw], align_corners=False)
    return F.grid_sample(src.expand(len(m), -1, -1, -1), grid, align_corners=False)


@pytest.mark.parametrize("hw", [(9, 13), (16, 16), (31, 7)])
def test_identity_affine_reproduces_the_image(hw) -> None:
    src = torch.rand(1, 1, *hw, generator=torch.Generator().manual_seed(0))
    eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    torch.testing.assert_close(_warp(src, eye, hw), src, atol=1e-5, rtol=0)


def test_identity_affine_into_smaller_output_is_a_crop() -> None:
    src = torch.rand(1, 1, 20, 30, generator=torch.Generator().manual_seed(1))
    eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    torch.testing.assert_close(_warp(src, eye, (8, 11)), src[..., :8, :11], atol=1e-5, rtol=0)


def test_translation_affine_shifts_by_whole_pixels() -> None:
    src = torch.rand(1, 1, 20, 30, generator=torch.Generator().manual_seed(2))
    tx, ty = 5, 3
    m = torch.tensor([[[1.0, 0.0, float(tx)], [0.0, 1.0, float(ty)]]])
    out = _warp(src, m, (10, 12))
    torch.testing.assert_close(out, src[..., ty : ty + 10, tx : tx + 12], atol=1e-5, rtol=0)
