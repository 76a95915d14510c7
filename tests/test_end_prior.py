"""Spine decoding with an end prior (where T1 and L5 lie) and the mirrored vertebra refinement."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import cephspine
from cephspine.anatomy import CORNERS, SPINE_LANDMARKS, VERTEBRAE
from cephspine.heatmaps import gaussian_targets
from cephspine.models.vertebra import VertebraCentreNet
from cephspine.pipeline import StageConfig, prepare, refine_stage
from cephspine.vertebrae import choose_chain, decode_vertebrae, fit_end_prior
from tests.conftest import TINY_CONFIG_KW, build_model_dir
from tests.test_vertebra_refine import Quadrants, _config, _vertebra

H, W = 64, 40
ROWS = [4, 13, 22, 31, 40, 49, 58]
"""Centre rows of seven vertebra-like peaks; the true chain of five is rows 13 … 49 (a C7-like
peak above it, an S1-like one below)."""


def _chain_output(logits: list[float]) -> tuple[torch.Tensor, np.ndarray]:
    """A coarse output with one peak per row of :data:`ROWS` (centre logits ``logits``) whose
    offsets point at a 12 × 6 box around it, and the boxes' corners ``(4 · 7, 2)``."""
    out = torch.full((1, 9, H, W), -8.0)
    out[:, 1:] = 0.0
    corners = []
    for y, logit in zip(ROWS, logits):
        box = np.array([(14.0, y - 3.0), (26.0, y - 3.0), (14.0, y + 3.0), (26.0, y + 3.0)])
        out[0, 0, y, 20] = logit
        out[0, 1:9, y, 20] = torch.tensor((box - (20, y)).ravel() / VertebraCentreNet.offset_unit)
        corners.append(box)
    return out, np.concatenate(corners)


def _prior(first: int, last: int, sd: float = 0.03) -> tuple[float, float, float, float]:
    return ((ROWS[first] + 0.5) / H, sd, (ROWS[last] + 0.5) / H, sd)


# strong C7-like peak above the chain, weak true last vertebra, weaker S1-like peak below
LOGITS = [3.0, 4.0, 4.0, 4.0, 4.0, -0.5, -1.0]


def test_strength_alone_takes_the_peak_above_the_chain() -> None:
    out, corners = _chain_output(LOGITS)
    xy, _ = decode_vertebrae(out, 5)
    np.testing.assert_allclose(xy[0], corners[:20], atol=1e-5)  # rows 4 … 40: shifted by one


def test_end_prior_chooses_the_chain_where_t1_and_l5_usually_lie() -> None:
    out, corners = _chain_output(LOGITS)
    xy, score = decode_vertebrae(out, 5, end_prior=_prior(1, 5))
    np.testing.assert_allclose(xy[0], corners[4:24], atol=1e-5)  # rows 13 … 49
    np.testing.assert_allclose(score[0, -4:], 1 / (1 + np.exp(0.5)), rtol=1e-5)
    # a prior that expects the chain one vertebra higher keeps the strongest peaks
    xy, _ = decode_vertebrae(out, 5, end_prior=_prior(0, 4))
    np.testing.assert_allclose(xy[0], corners[:20], atol=1e-5)
    # weight 0: strength alone again
    xy, _ = decode_vertebrae(out, 5, end_prior=_prior(1, 5), end_weight=0.0)
    np.testing.assert_allclose(xy[0], corners[:20], atol=1e-5)


def test_end_prior_needs_enough_candidates_and_respects_padding() -> None:
    out, corners = _chain_output(LOGITS)
    # only four peaks of probability 0.1 or more: decoded as without a prior (fillers added)
    weak, _ = _chain_output([3.0, 4.0, 4.0, 4.0, -5.0, -5.0, -5.0])
    xy, score = decode_vertebrae(weak, 5, end_prior=_prior(1, 5))
    ref, ref_score = decode_vertebrae(weak, 5)
    np.testing.assert_allclose(xy, ref)
    np.testing.assert_allclose(score, ref_score)
    # heights are fractions of the unpadded grid: the same peaks in a taller padded output
    tall = torch.cat([out, torch.full((1, 9, 32, W), -8.0)], dim=2)
    tall[:, 1:, H:] = 0.0
    xy, _ = decode_vertebrae(tall, 5, valid_hw=(H, W), end_prior=_prior(1, 5))
    np.testing.assert_allclose(xy[0], corners[4:24], atol=1e-5)


def test_choose_chain_scores_strength_and_position() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 5))
        m = int(rng.integers(n + 2, 12))
        p = rng.uniform(0.1, 1.0, m)
        y = np.sort(rng.uniform(0, 1, m))
        # weight 0: the n strongest, in top-to-bottom order
        np.testing.assert_array_equal(choose_chain(p, y, n, (0.1, 0.05, 0.9, 0.05), 0.0), np.sort(np.argsort(-p)[:n]))
        # a very confident prior fixes the ends at the candidates nearest the prior means
        sel = choose_chain(p, y, n, (float(y[1]), 1e-3, float(y[-2]), 1e-3), 1.0)
        assert sel[0] == 1 and sel[-1] == m - 2 and len(sel) == n and (np.diff(sel) > 0).all()
    with pytest.raises(ValueError, match="3 candidates for 4"):
        choose_chain(np.ones(3), np.linspace(0, 1, 3), 4, (0.1, 0.1, 0.9, 0.1))
    with pytest.raises(ValueError, match="at least 2 vertebrae"):
        choose_chain(np.ones(3), np.linspace(0, 1, 3), 1, (0.1, 0.1, 0.9, 0.1))


def test_coarse_stage_decodes_with_the_configs_end_prior() -> None:
    from cephspine.pipeline import coarse_stage

    out, corners = _chain_output(LOGITS)
    cfg = _config(n_landmarks=20, coarse_target="vertebrae", end_prior=_prior(1, 5))
    xy, _ = coarse_stage(lambda _x: out, torch.zeros(1, 1, H, W), cfg, valid_hw=(H * 4, W * 4))
    np.testing.assert_allclose(xy[0], (corners[4:24] + 0.5) * cfg.coarse_pool - 0.5, atol=1e-4)
    shifted, _ = coarse_stage(lambda _x: out, torch.zeros(1, 1, H, W), dataclasses.replace(cfg, end_prior_weight=0.0))
    np.testing.assert_allclose(shifted[0], (corners[:20] + 0.5) * cfg.coarse_pool - 0.5, atol=1e-4)


def test_the_chain_search_sees_at_most_twice_n_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    from cephspine import vertebrae

    seen: list[int] = []

    def spy(prob: np.ndarray, *args: object) -> np.ndarray:
        seen.append(len(prob))
        return choose_chain(prob, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(vertebrae, "choose_chain", spy)
    noise = torch.randn(1, 9, 256, 160, generator=torch.Generator().manual_seed(0)) * 3
    assert int((torch.sigmoid(noise[0, 0]) > 0.1).sum()) > 1000  # peaks everywhere
    xy, _ = decode_vertebrae(noise, 17, end_prior=(0.05, 0.016, 0.9, 0.03))
    assert seen == [vertebrae.END_MAX_CANDIDATES * 17]
    assert xy.shape == (1, 68, 2) and np.isfinite(xy).all()


def test_fit_end_prior() -> None:
    rng = np.random.default_rng(1)
    tops = rng.uniform(20, 40, 30)
    spines = []
    for t in tops:  # 17 boxes 8 px high, 10 px apart, on images 200 px high
        y = t + 10 * np.arange(17)[:, None] + np.array([0, 0, 8, 8])
        spines.append(np.stack([np.tile([30.0, 60.0, 30.0, 60.0], 17), y.ravel()], axis=1))
    prior = fit_end_prior(np.stack(spines), np.full(30, 200.0))
    first, last = (tops + 4) / 200, (tops + 164) / 200
    np.testing.assert_allclose(prior, [first.mean(), first.std(ddof=1), last.mean(), last.std(ddof=1)])
    with pytest.raises(ValueError, match="need corners"):
        fit_end_prior(np.stack(spines)[:, :67], np.full(30, 200.0))


def test_config_round_trip_and_validation() -> None:
    base = StageConfig(n_landmarks=68, coarse_target="vertebrae", refine_target="vertebrae")
    cfg = dataclasses.replace(base, end_prior=(0.05, 0.016, 0.9, 0.03), refine_flip=True)
    d = cfg.to_dict()
    assert d["end_prior"] == [0.05, 0.016, 0.9, 0.03] and d["refine_flip"] is True
    assert StageConfig.from_dict(json.loads(json.dumps(d))) == cfg
    # without them the card reads as before the fields existed
    assert not {"end_prior", "end_prior_weight", "refine_flip"} & set(base.to_dict())
    assert StageConfig.from_dict(base.to_dict()) == base
    with pytest.raises(ValueError, match="end_prior needs"):
        StageConfig(n_landmarks=68, end_prior=(0.05, 0.01, 0.9, 0.03))
    with pytest.raises(ValueError, match="end_prior must be"):
        dataclasses.replace(base, end_prior=(0.05, 0.0, 0.9, 0.03))
    with pytest.raises(ValueError, match="end_prior_weight"):
        dataclasses.replace(base, end_prior=(0.05, 0.01, 0.9, 0.03), end_prior_weight=-1.0)
    with pytest.raises(ValueError, match="refine_flip needs"):
        StageConfig(n_landmarks=68, refine_flip=True)
    with pytest.raises(ValueError, match="refine_flip must be true or false"):
        dataclasses.replace(base, refine_flip="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end_prior_weight must be a finite number"):
        dataclasses.replace(base, end_prior=(0.05, 0.01, 0.9, 0.03), end_prior_weight=float("nan"))
    with pytest.raises(ValueError, match="means in"):
        dataclasses.replace(base, end_prior=(0.05, 0.01, 1.9, 0.03))
    with pytest.raises(ValueError, match="at least 2 vertebrae"):
        StageConfig(n_landmarks=4, coarse_target="vertebrae", end_prior=(0.05, 0.01, 0.9, 0.03))
    # a non-default weight without a prior survives the round trip
    lone = dataclasses.replace(base, end_prior_weight=0.3)
    assert StageConfig.from_dict(json.loads(json.dumps(lone.to_dict()))) == lone


class LeftBiased(torch.nn.Module):
    """An oracle refinement net with a left-right bias: log-intensity per quadrant (a
    parabola around each dot, decoded exactly), shifted ``shift`` patch pixels right."""

    def __init__(self, shift: int = 2) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = Quadrants()(torch.ones_like(x)) > 0  # each channel's own quadrant
        out = torch.where(inside, torch.log(x.clamp_min(1e-6)), torch.tensor(-50.0))
        return out.roll(self.shift, dims=-1)


def test_mirrored_refinement_cancels_a_left_right_bias() -> None:
    cfg = _config(refine_max_width_px=100.0)  # patch pixels = image pixels
    truth = np.concatenate([_vertebra((60.0, 50.0), 0.0), _vertebra((62.0, 100.0), 0.0)])
    img = gaussian_targets(torch.tensor(truth[None], dtype=torch.float32), 150, 120, 1.5)[0].amax(0)
    fine, _ = prepare(img.numpy(), (0.2, 0.2), cfg)
    start = fine.to_resampled(truth)
    plain, _ = refine_stage(LeftBiased(), fine, start, cfg)
    np.testing.assert_allclose(fine.to_original(plain) - truth, np.tile([2.0, 0.0], (8, 1)), atol=0.1)
    both, peak = refine_stage(LeftBiased(), fine, start, dataclasses.replace(cfg, refine_flip=True))
    np.testing.assert_allclose(fine.to_original(both), truth, atol=0.1)
    assert peak.shape == (8,) and np.isfinite(peak).all()
    # an unbiased (mirror-symmetric) net gives the same corners either way
    a, _ = refine_stage(Quadrants(), fine, start, cfg)
    b, _ = refine_stage(Quadrants(), fine, start, dataclasses.replace(cfg, refine_flip=True))
    np.testing.assert_allclose(a, b, atol=1e-4)


SPINE_PRIOR = StageConfig(
    **(
        TINY_CONFIG_KW
        | {
            "n_landmarks": 68,
            "fine_height_px": 128,
            "context_kernel": (5, 3),
            "coarse_target": "vertebrae",
            "refine_target": "vertebrae",
            "refine_flip": True,
            "end_prior": (0.05, 0.016, 0.9, 0.03),
        }
    )  # type: ignore[arg-type]
)


def test_detector_follows_the_cards_end_prior_and_flip_unless_asked_not_to(tmp_path: Path) -> None:
    d = build_model_dir(tmp_path / "sp", SPINE_PRIOR, anatomy="spine", landmarks=list(SPINE_LANDMARKS))
    img = np.random.default_rng(3).uniform(0, 1, (700, 260)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on = cephspine.Detector.from_pretrained(d, device="cpu")
        off = cephspine.Detector.from_pretrained(d, device="cpu", end_prior=False)
        assert on.config.end_prior == SPINE_PRIOR.end_prior and on.config.refine_flip
        assert off.config.end_prior is None and off.config.refine_flip
        assert off.card["config"].get("end_prior") is None
        plain = cephspine.Detector.from_pretrained(d, device="cpu", refine_flip=False)
        assert plain.config.end_prior == SPINE_PRIOR.end_prior and not plain.config.refine_flip
        for det, used in ((on, (True, True)), (off, (False, True)), (plain, (True, False))):
            pred = det.predict(img)
            assert pred.xy_px.shape == (68, 2) and np.isfinite(pred.xy_px).all()
            dec = pred.meta["decoding"]
            assert (dec["end_prior"], dec["refine_flip"]) == used
            assert set(dec["beyond_ends"]) == {"above", "below"}
        with pytest.raises(TypeError, match="end_prior must be True or False"):
            cephspine.Detector.from_pretrained(d, device="cpu", end_prior=SPINE_PRIOR.end_prior)  # type: ignore[arg-type]
    # the file on disk is untouched
    on_disk = json.loads((d / "card.json").read_text())["config"]
    assert on_disk["end_prior"] == list(SPINE_PRIOR.end_prior or ()) and on_disk["refine_flip"] is True


def test_spine_end_prior_uses_the_clean_training_records_only(tmp_path: Path) -> None:
    from cephspine.training.finalize import spine_end_prior

    root = tmp_path / "aasce"
    (root / "images").mkdir(parents=True)
    tables = []
    for name, top in (("a.jpg", 20.0), ("b.jpg", 30.0), ("c.jpg", 10.0), ("d.jpg", 40.0)):
        Image.fromarray(np.zeros((200, 100), np.uint8)).save(root / "images" / name)
        y = top + 10 * np.arange(17)[:, None] + np.array([0, 0, 8, 8])
        xy = np.stack([np.tile([30.0, 60.0, 30.0, 60.0], 17), y.ravel()], axis=1)
        if name == "d.jpg":
            xy[[0, 1]] = xy[[1, 0]]  # T1's TL and TR exchanged: a defect, not used
        tables.append(
            pd.DataFrame(
                {
                    "image": name,
                    "vertebra": [v for v in VERTEBRAE for _ in CORNERS],
                    "corner": list(CORNERS) * 17,
                    "x_px": xy[:, 0],
                    "y_px": xy[:, 1],
                }
            )
        )
    pd.concat(tables).to_csv(root / "landmarks.csv", index=False)
    prior = spine_end_prior(root, val_ids=["c.jpg"])  # a and b remain
    np.testing.assert_allclose(prior[0], (24 + 34) / 2 / 200)
    np.testing.assert_allclose(prior[2], (184 + 194) / 2 / 200)
    np.testing.assert_allclose(prior[1], np.std([24, 34], ddof=1) / 200)
    with pytest.raises(ValueError, match="the end prior needs 2"):
        spine_end_prior(root, val_ids=["a.jpg", "c.jpg"])


def test_cpu_refinement_in_small_batches_gives_the_same_corners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cephspine import pipeline

    d = build_model_dir(tmp_path / "sp", SPINE_PRIOR, anatomy="spine", landmarks=list(SPINE_LANDMARKS))
    img = np.random.default_rng(4).uniform(0, 1, (700, 260)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = cephspine.Detector.from_pretrained(d, device="cpu")
        batches: list[int] = []
        det.refine.register_forward_hook(lambda _m, args, _o: batches.append(len(args[0])))
        p = SPINE_PRIOR.patch
        monkeypatch.setattr(pipeline, "REFINE_CPU_PIXELS", 1000 * p * p)
        whole = det.predict(img)
        assert batches == [34]  # 17 vertebrae and their mirror images in one pass
        batches.clear()
        monkeypatch.setattr(pipeline, "REFINE_CPU_PIXELS", 5 * p * p)
        split = det.predict(img)
        assert batches == [5] * 6 + [4]
    np.testing.assert_allclose(split.xy_px, whole.xy_px, atol=1e-4)
    np.testing.assert_allclose(split.confidence, whole.confidence, atol=1e-5)
