"""Vertebra-centre model: targets and loss, decoding (identity from order), configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cephspine.models.vertebra import VertebraCentreNet
from cephspine.pipeline import StageConfig, coarse_stage
from cephspine.training.ceph import load_overlapping
from cephspine.vertebrae import best_window, decode_vertebrae, drop_level_channel, level_targets, vertebra_loss

H, W, V = 64, 40, 5


def _spine(shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Corners ``(4V, 2)`` of ``V`` upright vertebrae 10 px apart, TL, TR, BL, BR each."""
    out = []
    for v in range(V):
        cx, cy = 20 + shift[0] + v * 0.5, 8 + 10 * v + shift[1]
        out += [(cx - 6, cy - 3), (cx + 6, cy - 3.5), (cx - 6, cy + 3), (cx + 6, cy + 3.5)]
    return np.asarray(out, dtype=np.float64)


def _ideal_output(
    corners: np.ndarray, order: list[int] | None = None, score: float = 6.0, levels: bool = False
) -> torch.Tensor:
    """A network output whose centre logits peak at each vertebra's (rounded) centre and
    whose offsets there point at its corners; vertebrae written in ``order``. With
    ``levels``, a tenth channel holds each vertebra's level at its centre."""
    out = torch.full((1, 9 + levels, H, W), -8.0)
    out[:, 1:] = 0.0
    n = len(corners) // 4
    c4 = corners.reshape(n, 4, 2)
    for v in order if order is not None else range(n):
        cx, cy = np.round(c4[v].mean(0)).astype(int)
        out[0, 0, cy, cx] = score
        out[0, 1:9, cy, cx] = torch.tensor((c4[v] - (cx, cy)).ravel() / VertebraCentreNet.offset_unit)
        if levels:
            out[0, 9, cy, cx] = (v - 1 - (V - 1) / 2) / VertebraCentreNet.level_unit  # first one is "level -1"
    return out


def test_decode_recovers_corners_in_top_to_bottom_order() -> None:
    corners = _spine()
    xy, score = decode_vertebrae(_ideal_output(corners, order=[3, 0, 4, 1, 2]), V)
    assert xy.shape == (1, 4 * V, 2) and score.shape == (1, 4 * V)
    np.testing.assert_allclose(xy[0], corners, atol=1e-5)
    assert np.all(score > 0.99)


def test_decode_ignores_peaks_over_padding_and_fills_missing_vertebrae() -> None:
    corners = _spine()
    out = _ideal_output(corners)
    out[0, 0, 60, 38] = 20.0  # a stronger peak in the padding
    xy, _ = decode_vertebrae(out, V, valid_hw=(56, 36))
    np.testing.assert_allclose(xy[0], corners, atol=1e-5)
    # one vertebra's peak removed: still V vertebrae, the filler with a low score
    out = _ideal_output(corners)
    cx, cy = np.round(corners[8:12].mean(0)).astype(int)
    out[0, 0, cy, cx] = -8.0
    xy, score = decode_vertebrae(out, V)
    assert xy.shape == (1, 4 * V, 2) and np.isfinite(xy).all()
    assert np.sort(score[0])[0] < 0.01 and (score[0] > 0.99).sum() == 4 * (V - 1)


def test_loss_prefers_the_true_spine_and_trains_offsets() -> None:
    xy = torch.tensor(_spine()[None], dtype=torch.float32)
    good = vertebra_loss(_ideal_output(_spine()), xy, sigma=1.5)
    shifted = vertebra_loss(_ideal_output(_spine((0.0, 5.0))), xy, sigma=1.5)
    assert float(good) < float(shifted)
    torch.manual_seed(0)
    net = VertebraCentreNet(base=4, depth=2, context_width=8, context_stride=4)
    img = torch.rand(1, 1, H, W)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = float(vertebra_loss(net(img), xy, 1.5).detach())
    for _ in range(150):
        loss = vertebra_loss(net(img), xy, 1.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    net.eval()
    with torch.no_grad():
        pred, _ = decode_vertebrae(net(img), V)
    assert np.abs(pred[0] - _spine()).mean() < 2.0  # memorised: right vertebrae, right corners


def test_stage_config_vertebra_model() -> None:
    cfg = StageConfig(n_landmarks=4 * V, coarse_target="vertebrae", coarse_base=4, coarse_depth=2,
                      context_width=8, context_stride=4, pad_multiple=16)  # fmt: skip
    assert isinstance(cfg.build_coarse(), VertebraCentreNet)
    assert StageConfig.from_dict(cfg.to_dict()) == cfg
    net = cfg.build_coarse().eval()
    img = torch.rand(1, 1, H, W)
    xy, peak = coarse_stage(net, img, cfg, "cpu", (H * 4, W * 4))
    grid_xy, grid_peak = decode_vertebrae(net(img), V, (H, W))
    np.testing.assert_allclose(xy, (grid_xy + 0.5) * 4 - 0.5, atol=1e-4)  # returned in fine pixels
    np.testing.assert_allclose(peak, grid_peak, rtol=1e-5)
    with pytest.raises(ValueError, match="coarse_target"):
        StageConfig(coarse_target="centres")
    with pytest.raises(ValueError, match="4 corners"):
        StageConfig(n_landmarks=19, coarse_target="vertebrae")
    with pytest.raises(ValueError, match="coarse_levels"):
        StageConfig(coarse_levels=True)
    lv = StageConfig(n_landmarks=4 * V, coarse_target="vertebrae", coarse_levels=True, coarse_base=4, coarse_depth=2)
    assert lv.build_coarse()(torch.rand(1, 1, 16, 16)).shape[1] == 10


def test_level_targets_count_vertebrae_down_the_spine() -> None:
    ctr = _spine().reshape(V, 4, 2).mean(1)
    level, mask = level_targets(ctr, H, W)
    cx, cy = np.round(ctr).astype(int).T
    np.testing.assert_allclose(level[cy, cx], np.arange(V), atol=0.06)
    assert level[cy[0] - 5, cx[0]] == pytest.approx(-0.5, abs=0.06)  # half a vertebra above the first
    assert mask[cy, cx].all() and not mask[:, 0].any()  # near the midline only
    rows = np.flatnonzero(mask.any(1))
    assert level[rows[0], 0] >= -1.5 - 1e-9 and level[rows[-1], 0] <= V - 1 + 1.5 + 1e-9


def test_levels_keep_a_stronger_neighbour_out_of_the_chain() -> None:
    """An extra vertebra above the first (C7 above T1) with a stronger peak: by order alone
    it would become the first vertebra; its level (-1) keeps it out."""
    above = _spine()[:4]  # one vertebra spacing above the first
    spine = _spine((0.0, 10.0))
    out = _ideal_output(np.concatenate([above, spine]), levels=True)
    cx, cy = np.round(above.mean(0)).astype(int)
    out[0, 0, cy, cx] = 9.0
    by_level, _ = decode_vertebrae(out, V)
    np.testing.assert_allclose(by_level[0], spine, atol=1e-5)
    by_order, _ = decode_vertebrae(out[:, :9], V)
    np.testing.assert_allclose(by_order[0, :4], above, atol=1e-5)


def test_best_window_uses_levels_over_the_whole_run() -> None:
    prob = np.array([0.9, 0.5, 0.5, 0.5, 0.5])
    assert best_window(prob, np.array([-1.0, 0.0, 1.0, 2.0, 3.0]), 4) == 1
    assert best_window(prob, np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 4) == 0
    # one bad level does not move the run: the others outvote it
    assert best_window(prob, np.array([-1.0, 0.0, 1.0, 3.0, 3.0]), 4, level_sd=1.0) == 1
    # levels say nothing (all equal): the strongest run wins
    assert best_window(np.array([0.1, 0.9, 0.9, 0.9]), np.zeros(4), 3, level_sd=1e6) == 1
    with pytest.raises(ValueError, match="candidates"):
        best_window(prob[:2], np.zeros(2), 3)


def test_level_loss_trains_the_level_channel() -> None:
    xy = torch.tensor(_spine()[None], dtype=torch.float32)
    level, mask = level_targets(_spine().reshape(V, 4, 2).mean(1), H, W)
    torch.manual_seed(0)
    net = VertebraCentreNet(base=4, depth=2, context_width=8, context_stride=4, levels=True)
    img = torch.rand(1, 1, H, W)

    def level_error() -> float:  # mean over the supervised pixels, in vertebrae
        with torch.no_grad():
            lv = net(img)[0, 9].numpy() * VertebraCentreNet.level_unit + (V - 1) / 2
        return float(np.abs(lv - level)[mask].mean())

    before = level_error()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(200):
        loss = vertebra_loss(net(img), xy, 1.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before > 1.0 and level_error() < 0.25


def test_load_overlapping_widens_an_output_layer() -> None:
    torch.manual_seed(0)
    old = VertebraCentreNet(base=4, depth=2, context_width=8, context_stride=4)
    new = VertebraCentreNet(base=4, depth=2, context_width=8, context_stride=4, levels=True)
    fresh = load_overlapping(new, old.state_dict())
    assert fresh == ["appearance.head.weight", "appearance.head.bias"]
    img = torch.rand(1, 1, H, W)
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(img)[:, :9], old.eval()(img))


def test_drop_level_channel_keeps_the_other_outputs() -> None:
    torch.manual_seed(0)
    with_levels = VertebraCentreNet(base=4, depth=2, context_width=8, context_stride=4, levels=True).eval()
    without = VertebraCentreNet(base=4, depth=2, context_width=8, context_stride=4).eval()
    without.load_state_dict(drop_level_channel(with_levels.state_dict()))  # strict: shapes must match
    img = torch.rand(1, 1, H, W)
    with torch.no_grad():
        torch.testing.assert_close(without(img), with_levels(img)[:, :9])
    with pytest.raises(ValueError, match="level channel"):
        drop_level_channel(without.state_dict())


def test_a_vertebra_out_of_view_is_no_target() -> None:
    """A framing augmentation can move a vertebra off the grid: its clamped centre must not
    ask for a peak on the border, and its offsets are not supervised."""
    corners = _spine()
    out = _ideal_output(corners[4:])  # the network sees vertebrae 2…V only
    moved = corners.copy()
    moved[:4, 1] -= 20.0  # vertebra 1's centre above the top edge
    xy = torch.tensor(moved[None], dtype=torch.float32)
    loss_out = float(vertebra_loss(out, xy, sigma=1.5))
    assert loss_out == pytest.approx(float(vertebra_loss(out, xy[:, 4:], sigma=1.5)), rel=1e-6)
    # an output that does put a peak on the border where the clamped centre lies is worse
    border = out.clone()
    cx = int(np.round(moved[:4, 0].mean()))
    border[0, 0, 0, cx] = 6.0
    assert float(vertebra_loss(border, xy, sigma=1.5)) > loss_out + 0.1


def test_decode_reports_the_strongest_peaks_beyond_the_chain() -> None:
    corners = _spine()
    out = _ideal_output(corners)
    out[0, 0, 1, 20] = 1.0  # a weaker peak above the first vertebra (sigmoid 0.73)
    info: list[dict[str, float]] = []
    decode_vertebrae(out, V, info=info)
    assert info[0]["above"] == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))), abs=1e-6)
    assert info[0]["below"] == pytest.approx(float(torch.sigmoid(torch.tensor(-8.0))), abs=1e-6)
