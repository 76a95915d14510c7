"""Vertebra refinement: one patch per vertebra, framed by its corners, four corner outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cephspine.heatmaps import gaussian_targets
from cephspine.pipeline import StageConfig, prepare, refine_stage
from cephspine.preprocess import crop_patches
from cephspine.training.ceph import CephCache, refine_loss, train_refine, vertebra_refine_batch
from cephspine.vertebrae import MAX_FRAME_SCALE, vertebra_frames
from tests.conftest import TINY_CONFIG_KW


def _config(**kw: object) -> StageConfig:
    base = TINY_CONFIG_KW | {"n_landmarks": 8, "refine_target": "vertebrae", "refine_max_width_px": 12.0}
    return StageConfig(**(base | kw))  # type: ignore[arg-type]


def _vertebra(ctr: tuple[float, float], deg: float, width: float = 16.0, height: float = 10.0) -> np.ndarray:
    """Corners TL, TR, BL, BR of a ``width`` × ``height`` rectangle turned by ``deg``."""
    a = np.deg2rad(deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    box = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * [width / 2, height / 2]
    return np.asarray(ctr) + box @ rot.T


class Quadrants(torch.nn.Module):
    """An 'oracle' refinement net: channel TL/TR/BL/BR is the input over that quadrant of
    the patch (a level vertebra's corner lies in its own quadrant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.shape[-1]
        h = p // 2
        out = torch.full((x.shape[0], 4, p, p), -1.0)
        for c, (rows, cols) in enumerate([(slice(0, h), slice(0, h)), (slice(0, h), slice(h, p)),
                                          (slice(h, p), slice(0, h)), (slice(h, p), slice(h, p))]):  # fmt: skip
            out[:, c, rows, cols] = x[:, 0, rows, cols]
        return out


def test_frames_level_the_vertebra_and_shrink_wide_ones() -> None:
    q = np.concatenate([_vertebra((40, 30), 20.0), _vertebra((50, 60), -35.0, width=30.0)])
    ctr, lin = vertebra_frames(q, max_width=20.0)
    np.testing.assert_allclose(ctr, [[40, 30], [50, 60]], atol=1e-9)
    # patch x axis along the endplates; scale 1 for the narrow one, 30/20 for the wide one
    np.testing.assert_allclose(lin[0] @ [1, 0], [np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))], atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(lin), [1.0, 1.5**2], rtol=1e-9)
    # in patch coordinates both vertebrae are level: TL and TR at the same height
    for v in range(2):
        uv = (q[4 * v : 4 * v + 4] - ctr[v]) @ np.linalg.inv(lin[v]).T
        assert uv[0, 1] == pytest.approx(uv[1, 1]) and uv[0, 0] < uv[1, 0] and uv[0, 1] < uv[2, 1]
    np.testing.assert_allclose(vertebra_frames(q)[1][1] @ [1, 0], lin[1] @ [1, 0] / 1.5, atol=1e-9)


def test_frames_never_turn_a_vertebra_upside_down_nor_zoom_out_far() -> None:
    q = _vertebra((40, 30), 10.0)
    swapped = q[[1, 0, 3, 2]]  # corners given right to left
    _, lin = vertebra_frames(swapped)
    assert (lin[0] @ [1, 0])[0] > 0.9  # the patch's x axis still points right
    _, lin = vertebra_frames(_vertebra((40, 30), 0.0, width=400.0), max_width=20.0)
    assert np.linalg.det(lin[0]) == pytest.approx(MAX_FRAME_SCALE**2)


@pytest.mark.parametrize("deg", [0.0, 25.0, -40.0])
def test_refine_stage_places_tilted_corners_in_original_pixels(deg: float) -> None:
    """Bright dots at the corners of two tilted vertebrae; the oracle net finds them through
    the whole chain (resample, framed crop, decode, back to original pixels)."""
    cfg = _config()
    truth = np.concatenate([_vertebra((60.0, 50.0), deg), _vertebra((66.0, 100.0), deg / 2)])
    img = gaussian_targets(torch.tensor(truth[None], dtype=torch.float32), 150, 120, 1.5)[0].amax(0)
    fine, _ = prepare(img.numpy(), (0.2, 0.2), cfg)  # fine grid = the image grid here
    start = fine.to_resampled(truth) + np.random.default_rng(0).normal(0, 1.5, truth.shape)
    xy, peak = refine_stage(Quadrants(), fine, start, cfg)
    assert xy.shape == (8, 2) and peak.shape == (8,)
    np.testing.assert_allclose(fine.to_original(xy), truth, atol=0.35)


def _dotted_cache(cfg: StageConfig, n_img: int = 3) -> CephCache:
    """Images with a dot on every corner of two tilted vertebrae each; each vertebra's TL
    dot is twice as bright as its other three."""
    rng = np.random.default_rng(0)
    fine, xy = [], []
    for _ in range(n_img):
        q = np.concatenate([_vertebra((48, 40), rng.uniform(-30, 30)), _vertebra((52, 70), rng.uniform(-30, 30))])
        q = np.round(q)
        dots = gaussian_targets(torch.tensor(q[None], dtype=torch.float32), 112, 96, 1.0)[0]
        dots = dots * torch.tensor([1.0, 0.5, 0.5, 0.5] * 2).view(8, 1, 1)
        fine.append(dots.amax(0)[None, None].half())
        xy.append(q)
    xy_a = np.stack(xy)
    return CephCache([str(i) for i in range(n_img)], fine, torch.zeros(n_img, 1, 28, 24), xy_a, xy_a,
                     np.ones((n_img, 2)), [(112, 96)] * n_img, np.ones((n_img, 2)), "", "px")  # fmt: skip


def _target_pixels(y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns ``(B, 4)`` of each target's peak."""
    return np.divmod(y.flatten(2).argmax(2).numpy(), y.shape[-1])


def test_training_patches_target_their_own_corners_and_mirror_consistently() -> None:
    cfg = _config(refine_offset_sd_px=2.0)
    x, y, inside = vertebra_refine_batch(_dotted_cache(cfg), np.random.default_rng(1), cfg, batch=24)
    assert x.shape == (24, 1, 32, 32) and y.shape == (24, 4, 32, 32) and inside.shape == (24, 4)
    assert inside.all()
    pv, pu = _target_pixels(y)
    dot = np.zeros((24, 4))
    for k in range(24):
        for c in range(4):
            win = x[k, 0, max(pv[k, c] - 1, 0) : pv[k, c] + 2, max(pu[k, c] - 1, 0) : pu[k, c] + 2]
            dot[k, c] = float(win.max() - x[k, 0].median())
    assert (dot > 0.15).all()  # every target sits on a dot of the (augmented) patch
    # left corners left of right ones, top above bottom, mirrored or not
    assert (pu[:, 0] < pu[:, 1]).all() and (pu[:, 2] < pu[:, 3]).all()
    assert (pv[:, 0] < pv[:, 2]).all() and (pv[:, 1] < pv[:, 3]).all()
    # the bright (image-left) top corner is TL in plain patches and TR in mirrored ones
    brightest = dot.argmax(axis=1)
    assert set(brightest) == {0, 1}


def test_corners_outside_the_patch_are_masked() -> None:
    cfg = _config(patch=16, refine_max_width_px=100.0, refine_offset_sd_px=0.0, refine_angle_sd_deg=0.0)
    x, y, inside = vertebra_refine_batch(_dotted_cache(cfg), np.random.default_rng(2), cfg, batch=8)
    # a 16-px-wide vertebra at full scale (±10 % jitter) overflows a 16-px patch on some draws
    assert inside.any() and not inside.all()
    pv, pu = _target_pixels(y)
    on_border = (pv == 0) | (pv == 15) | (pu == 0) | (pu == 15)
    assert on_border[~inside.numpy()].all()  # the masked targets peak outside: at the border


def test_refine_loss_ignores_masked_rows() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(3, 50), torch.rand(3, 50)
    w = torch.tensor([True, False, True])
    base = refine_loss(logits, target, w)
    changed = logits.clone()
    changed[1] += 10 * torch.randn(50)
    assert refine_loss(changed, target, w) == pytest.approx(float(base))
    assert float(base) == pytest.approx(float(refine_loss(logits[[0, 2]], target[[0, 2]])))
    assert refine_loss(logits, target) == pytest.approx(float(refine_loss(logits, target, torch.ones(3))))


def test_train_refine_vertebrae_trains_and_saves(tmp_path) -> None:
    cfg = _config(refine_offset_sd_px=2.0)
    train_refine(_dotted_cache(cfg), cfg, tmp_path, steps=2, batch=4)
    state = torch.load(tmp_path / "refine_final.pt", weights_only=True)
    net = cfg.build_refine()
    net.load_state_dict(state)
    assert net(torch.rand(1, 1, 32, 32)).shape == (1, 4, 32, 32)


def test_config_for_vertebra_refinement() -> None:
    cfg = _config()
    assert cfg.refine_outputs == 4 and StageConfig.from_dict(cfg.to_dict()) == cfg
    plain = StageConfig(**TINY_CONFIG_KW)  # type: ignore[arg-type]
    assert plain.refine_outputs == 19
    # per-landmark cards carry no vertebra-refinement keys (they read as before those existed)
    assert "refine_target" not in plain.to_dict() and cfg.to_dict()["refine_target"] == "vertebrae"
    assert StageConfig.from_dict(plain.to_dict()) == plain
    with pytest.raises(ValueError, match="refine_target"):
        dataclasses.replace(cfg, refine_target="corners")
    with pytest.raises(ValueError, match="4 corners per vertebra"):
        dataclasses.replace(cfg, n_landmarks=19)


def test_crop_of_a_level_frame_is_a_plain_crop() -> None:
    """With an unrotated, unscaled frame the patch equals the axis-aligned crop."""
    img = torch.rand(1, 1, 60, 50)
    q = _vertebra((25.0, 30.0), 0.0, width=10.0)
    ctr, lin = vertebra_frames(q, max_width=20.0)
    torch.testing.assert_close(crop_patches(img, ctr, 16, torch.as_tensor(lin)), crop_patches(img, ctr, 16))


def test_finalize_refuses_refinement_weights_that_do_not_match_the_config(tmp_path) -> None:
    """A run folder whose config.json was last written by a stage with other settings."""
    import json

    from cephspine.training.finalize import finalize_spine

    cfg = _config(fine_height_px=128)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    torch.save(cfg.build_coarse().state_dict(), tmp_path / "coarse_final.pt")
    per_corner = dataclasses.replace(cfg, refine_target="landmarks")
    torch.save(per_corner.build_refine().state_dict(), tmp_path / "refine_final.pt")
    with pytest.raises(ValueError, match="8 outputs but .*config.json describes 4"):
        finalize_spine(tmp_path, tmp_path / "no-data", tmp_path / "model", [], {})
    assert not (tmp_path / "model").exists()
