"""Stage configuration, mirroring and the two-stage pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cephspine.heatmaps import gaussian_targets
from cephspine.pipeline import (
    StageConfig,
    coarse_stage,
    coarse_to_fine,
    fine_to_coarse,
    for_inference,
    mirrored,
    prepare,
    refine_stage,
    run_stages,
    unmirror_x,
)


class Broadcast(torch.nn.Module):
    """An 'oracle' network: its heatmaps are the input image copied to every landmark."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.n, -1, -1)


def test_stage_config_round_trip(tiny_config: StageConfig) -> None:
    for cfg in (StageConfig(), tiny_config, StageConfig(context_kernel=(5, 3), n_landmarks=68)):
        d = cfg.to_dict()
        assert StageConfig.from_dict(d) == cfg
        # through JSON, where tuples become lists
        assert StageConfig.from_dict(json.loads(json.dumps(d))) == cfg


def test_stage_config_from_dict_refuses_unknown_keys() -> None:
    """A card naming settings this version does not know (a typo, or a newer model) must not
    silently fall back to defaults."""
    d = StageConfig(patch=48).to_dict()
    cfg = StageConfig.from_dict(d)
    assert cfg.patch == 48
    assert isinstance(cfg.context_kernel, tuple)
    assert cfg.coarse_mm == pytest.approx(cfg.fine_mm * cfg.coarse_pool)
    with pytest.raises(ValueError, match="pach"):
        StageConfig.from_dict(d | {"pach": 32})


@given(
    xy=st.lists(st.tuples(st.floats(-100, 1000), st.floats(-100, 1000)), min_size=1, max_size=4),
    pool=st.integers(1, 8),
)
def test_fine_coarse_maps_are_inverse(xy, pool: int) -> None:
    pts = np.array(xy)
    np.testing.assert_allclose(coarse_to_fine(fine_to_coarse(pts, pool), pool), pts, atol=1e-9)


def test_coarse_to_fine_matches_average_pooling() -> None:
    """A coarse pixel centre is the centre of the block of fine pixels pooled into it."""
    pool = 4
    fine = torch.zeros(1, 1, 16, 16)
    fine[..., 4:8, 8:12] = 1.0  # the fine block of coarse pixel (x=2, y=1)
    coarse = torch.nn.functional.avg_pool2d(fine, pool)
    iy, ix = divmod(int(coarse.flatten().argmax()), coarse.shape[-1])
    np.testing.assert_allclose(coarse_to_fine(np.array([ix, iy], dtype=float), pool), [9.5, 5.5])


@given(
    xy=st.lists(st.tuples(st.floats(-50, 500), st.floats(-50, 500)), min_size=1, max_size=5), width=st.integers(1, 600)
)
def test_unmirror_is_an_involution(xy, width: int) -> None:
    pts = np.array(xy)
    once = unmirror_x(pts, width)
    np.testing.assert_allclose(once[:, 1], pts[:, 1])
    np.testing.assert_allclose(unmirror_x(once, width), pts, atol=1e-9)
    assert once is not pts


def test_mirrored_image_and_coordinates(tiny_config: StageConfig) -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 0.5, (90, 70)).astype(np.float32)
    fine, coarse = prepare(img, (0.1, 0.1), tiny_config)
    h, w = fine.size_hw
    x0, y0 = 3, 11
    fine.image[0, 0, y0, x0] = 7.0  # a mark we can find in the mirrored copy
    fine_m, coarse_m = mirrored(fine, tiny_config)
    assert fine_m.image.shape == fine.image.shape
    assert fine_m.size_hw == fine.size_hw
    np.testing.assert_array_equal(fine_m.factor_xy, fine.factor_xy)
    iy, ix = divmod(int(fine_m.image.flatten().argmax()), fine_m.image.shape[-1])
    assert (ix, iy) == (w - 1 - x0, y0)
    np.testing.assert_allclose(unmirror_x(np.array([ix, iy], dtype=float), w), [x0, y0])
    # the padding stays at the bottom and the right, empty
    assert float(fine_m.image[..., h:, :].abs().sum()) == 0.0
    assert float(fine_m.image[..., :, w:].abs().sum()) == 0.0
    torch.testing.assert_close(fine_m.image[..., :h, :w].flip(-1), fine.image[..., :h, :w])
    torch.testing.assert_close(coarse_m, torch.nn.functional.avg_pool2d(fine_m.image, tiny_config.coarse_pool))
    assert coarse.shape == coarse_m.shape


def test_prepare_shapes_fit_the_networks(tiny_config: StageConfig) -> None:
    fine, coarse = prepare(np.zeros((301, 233), np.float32), (0.1, 0.12), tiny_config)
    fh, fw = fine.image.shape[-2:]
    assert fh % tiny_config.pad_multiple == 0 and fw % tiny_config.pad_multiple == 0
    assert coarse.shape[-2:] == (fh // tiny_config.coarse_pool, fw // tiny_config.coarse_pool)
    assert coarse.shape[-1] % 2**tiny_config.coarse_depth == 0
    assert coarse.shape[-1] % tiny_config.context_stride == 0


def test_run_stages_random_weights(tiny_config: StageConfig) -> None:
    torch.manual_seed(0)
    coarse_net, refine_net = tiny_config.build_coarse().eval(), tiny_config.build_refine().eval()
    img = np.random.default_rng(0).uniform(0, 1, (200, 160)).astype(np.float32)
    fine, coarse = prepare(img, (0.1, 0.1), tiny_config)
    out = run_stages(coarse_net, refine_net, fine, coarse, tiny_config)
    n = tiny_config.n_landmarks
    assert out.xy_px.shape == (n, 2) and out.coarse_xy_px.shape == (n, 2)
    assert out.coarse_peak.shape == (n,) and out.refine_peak.shape == (n,)
    for a in (out.xy_px, out.coarse_xy_px, out.coarse_peak, out.refine_peak):
        assert np.isfinite(a).all()
    feats = out.features(np.array([0.1, 0.1]))
    assert feats.shape == (n, 3)
    assert (feats[:, 2] >= 0).all()
    # the refinement moves a point by at most half a patch (in original pixels)
    reach = (tiny_config.patch / 2) / fine.factor_xy
    assert (np.abs(out.xy_px - out.coarse_xy_px) <= reach + 1e-6).all()


@pytest.mark.parametrize("spacing", [(0.1, 0.1), (0.15, 0.1)])
def test_run_stages_finds_a_blob_in_original_pixels(tiny_config: StageConfig, spacing) -> None:
    """With networks that echo their input, both stages must land on a bright blob: this
    checks the whole chain of coordinate maps (resample, pool, crop, decode, back)."""
    h, w = 260, 210
    xy = np.array([123.4, 87.7])
    blob = gaussian_targets(torch.tensor(xy[None, None], dtype=torch.float32), h, w, 12.0)[0, 0]
    fine, coarse = prepare(blob.numpy(), spacing, tiny_config)
    net = Broadcast(tiny_config.n_landmarks)
    out = run_stages(net, net, fine, coarse, tiny_config)
    np.testing.assert_allclose(out.coarse_xy_px, np.broadcast_to(xy, (tiny_config.n_landmarks, 2)), atol=0.5)
    np.testing.assert_allclose(out.xy_px, np.broadcast_to(xy, (tiny_config.n_landmarks, 2)), atol=0.05)


def test_prepare_pads_narrow_images_to_the_training_canvas(tiny_config: StageConfig) -> None:
    import dataclasses

    cfg = dataclasses.replace(tiny_config, fine_height_px=128, min_width_px=96)
    img = np.random.default_rng(0).random((256, 60)).astype(np.float32)
    fine, coarse = prepare(img, (1.0, 1.0), cfg)
    assert fine.image.shape[-2:] == (128, 96) and fine.size_hw == (128, 30)
    assert coarse.shape[-1] == 96 // cfg.coarse_pool
    assert float(fine.image[..., 30:].abs().max()) == 0.0  # padding, the image unmoved
    plain, _ = prepare(img, (1.0, 1.0), dataclasses.replace(cfg, min_width_px=None))
    torch.testing.assert_close(fine.image[..., : plain.image.shape[-1]], plain.image)
    wide = np.random.default_rng(1).random((128, 200)).astype(np.float32)
    assert prepare(wide, (1.0, 1.0), cfg)[0].image.shape[-1] >= 200  # wider images are not cropped


def test_channels_last_inference_matches_the_plain_networks(tiny_config: StageConfig) -> None:
    torch.manual_seed(0)
    coarse, refine = tiny_config.build_coarse().eval(), tiny_config.build_refine().eval()
    fine, coarse_img = prepare(np.random.default_rng(0).random((300, 260), dtype=np.float32), (0.1, 0.1), tiny_config)
    xy, peak = coarse_stage(coarse, coarse_img, tiny_config)
    r_xy, r_peak = refine_stage(refine, fine, xy[0], tiny_config)
    fast_c, fast_r = for_inference(coarse), for_inference(refine)  # converts in place, as the detector does
    assert next(fast_r.parameters()).is_contiguous(memory_format=torch.channels_last)
    xy2, peak2 = coarse_stage(fast_c, coarse_img, tiny_config)
    r_xy2, r_peak2 = refine_stage(fast_r, fine, xy2[0], tiny_config)
    np.testing.assert_allclose(xy2, xy, atol=1e-3)
    np.testing.assert_allclose(r_xy2, r_xy, atol=1e-3)
    np.testing.assert_allclose(peak2, peak, rtol=1e-3)
    np.testing.assert_allclose(r_peak2, r_peak, rtol=1e-3)


def test_prediction_runs_under_a_cpu_bfloat16_autocast(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    """The stages read float32 out of the networks, so a bfloat16 autocast (measured in
    docs/models/spine.md) gives finite float64 landmarks instead of a numpy error."""
    import warnings

    import cephspine

    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    img = np.random.default_rng(0).uniform(0, 1, (200, 180)).astype(np.float32)
    with warnings.catch_warnings(), torch.autocast("cpu", dtype=torch.bfloat16):
        warnings.simplefilter("ignore")
        pred = det.predict(img, spacing=0.1)
    assert pred.xy_px.dtype == np.float64 and np.isfinite(pred.xy_px).all() and np.isfinite(pred.confidence).all()
