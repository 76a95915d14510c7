"""The coarse stage's geometric augmentation: settings are validated, and the landmarks
move with the image under any rotation, scale and shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cephspine.pipeline import StageConfig, coarse_to_fine
from cephspine.training.augment import GeometricAugment
from cephspine.training.ceph import CephCache, augmented_coarse

H, W, POOL = 64, 48, 4


def dot_cache(xy_coarse: np.ndarray) -> CephCache:
    """One coarse image, dark except for a bright 3 × 3 blob at each landmark."""
    img = torch.zeros(1, 1, H, W)
    for x, y in np.round(xy_coarse).astype(int):
        img[0, 0, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    xy_fine = coarse_to_fine(xy_coarse, POOL)
    return CephCache(
        ids=["a"],
        fine=[torch.zeros(1, 1, H * POOL, W * POOL, dtype=torch.float16)],
        coarse=img,
        xy_fine=xy_fine[None],
        xy_orig=xy_fine[None],
        factor_xy=np.ones((1, 2)),
        size_hw=[(H * POOL, W * POOL)],
        spacing_xy_mm=np.ones((1, 2)),
    )


@pytest.mark.parametrize(
    "kw",
    [
        {"max_rot_deg": -1.0},
        {"scale_range": (0.0, 1.1)},
        {"scale_range": (1.2, 0.9)},
        {"shift_px": -2.0},
    ],
)
def test_invalid_settings_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError, match="invalid augmentation"):
        GeometricAugment(**kw)


def test_identity_settings_keep_the_landmarks() -> None:
    xy = np.array([[20.0, 15.0], [30.0, 40.0]])
    cache = dot_cache(xy)
    cfg = StageConfig(n_landmarks=2, coarse_pool=POOL)
    _, out = augmented_coarse(cache, np.zeros(3, dtype=int), np.random.default_rng(0), cfg,
                              geometry=GeometricAugment(0.0, (1.0, 1.0), 0.0))  # fmt: skip
    assert np.allclose(out.numpy(), xy[None], atol=1e-4)


@pytest.mark.parametrize("geometry", [GeometricAugment(), GeometricAugment(15.0, (0.8, 1.3), 4.0)])
def test_landmarks_follow_the_image(geometry: GeometricAugment) -> None:
    xy = np.array([[24.0, 20.0], [22.0, 44.0]])
    cache = dot_cache(xy)
    cfg = StageConfig(n_landmarks=2, coarse_pool=POOL)
    x, out = augmented_coarse(cache, np.zeros(8, dtype=int), np.random.default_rng(3), cfg, geometry=geometry)
    assert not np.allclose(out.numpy(), xy[None], atol=0.5)  # something moved
    for k in range(len(x)):
        for x0, y0 in out[k].numpy():
            # the blob is bright where its landmark went (intensity augmentation keeps it well above 0.3)
            v = x[k, 0, int(round(y0)), int(round(x0))].item()
            assert v > 0.3, (k, x0, y0, v)


def test_each_setting_does_what_it_says() -> None:
    xy = np.array([[24.0, 20.0], [22.0, 44.0], [30.0, 30.0]])
    cache = dot_cache(xy)
    cfg = StageConfig(n_landmarks=3, coarse_pool=POOL)
    idx = np.zeros(32, dtype=int)
    # shift only: every landmark moves by the same vector, within ±shift_px per axis
    _, out = augmented_coarse(
        cache, idx, np.random.default_rng(5), cfg, geometry=GeometricAugment(0.0, (1.0, 1.0), 3.0)
    )
    d = out.numpy() - xy[None]
    assert np.abs(d).max() <= 3.0 + 1e-4 and np.abs(d).max() > 1.0
    assert np.allclose(d, d[:, :1], atol=1e-4)
    # rotation only: distances between landmarks kept, directions turned by at most the limit
    _, out = augmented_coarse(
        cache, idx, np.random.default_rng(6), cfg, geometry=GeometricAugment(10.0, (1.0, 1.0), 0.0)
    )
    v0, v = xy[1] - xy[0], out.numpy()[:, 1] - out.numpy()[:, 0]
    assert np.allclose(np.linalg.norm(v, axis=1), np.linalg.norm(v0), atol=1e-3)
    turn = np.degrees(np.abs(np.arctan2(v[:, 1], v[:, 0]) - np.arctan2(v0[1], v0[0])))
    assert turn.max() <= 10.0 + 1e-3 and turn.max() > 3.0
    # scale only (above 1 zooms out): distances shrink by a factor within 1/1.3 … 1/1.1
    _, out = augmented_coarse(
        cache, idx, np.random.default_rng(7), cfg, geometry=GeometricAugment(0.0, (1.1, 1.3), 0.0)
    )
    ratio = np.linalg.norm(out.numpy()[:, 1] - out.numpy()[:, 0], axis=1) / np.linalg.norm(v0)
    assert ratio.min() >= 1 / 1.3 - 1e-4 and ratio.max() <= 1 / 1.1 + 1e-4


def test_spine_cli_refuses_bad_augmentation_before_reading_data(tmp_path) -> None:
    from cephspine.training.spine import main

    with pytest.raises(SystemExit) as e:
        main(["coarse", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--scale", "1.2", "0.9"])
    assert e.value.code == 2
    assert not (tmp_path / "run").exists()


def test_framing_shift_moves_vertically_only_within_its_own_range() -> None:
    g = GeometricAugment(0.0, (1.0, 1.0), 0.0, shift_y_px=12.0)
    d = g.random_shift(np.random.default_rng(0), 500).numpy()
    assert np.all(d[:, 0] == 0.0) and np.abs(d[:, 1]).max() <= 12.0 and np.abs(d[:, 1]).max() > 10.0
    xy = np.array([[24.0, 20.0], [22.0, 44.0]])
    cfg = StageConfig(n_landmarks=2, coarse_pool=POOL)
    _, out = augmented_coarse(dot_cache(xy), np.zeros(8, dtype=int), np.random.default_rng(1), cfg, geometry=g)
    dy = out.numpy()[..., 1] - xy[None, :, 1]
    assert np.allclose(out.numpy()[..., 0], xy[None, :, 0], atol=1e-4)  # x never moves
    assert np.allclose(dy[:, 0], dy[:, 1], atol=1e-4) and np.ptp(dy[:, 0]) > 2.0  # one shift per image
    with pytest.raises(ValueError, match="invalid augmentation"):
        GeometricAugment(shift_y_px=-1.0)
