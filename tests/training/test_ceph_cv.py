"""Cross-validated ceph training: seeded folds, broad augmentation that keeps landmarks on
their anatomy, the wall-clock budget, and a worker run end to end on a tiny image."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from cephspine.pipeline import StageConfig, coarse_to_fine
from cephspine.training import ceph_cv
from cephspine.training.augment import BroadAugment, broad_intensity, draw_objects
from cephspine.training.ceph import CephCache, save_cached

POOL = 4
H, W = 128, 96  # coarse grid
N = 19

# geometry only: every intensity change off, so a bright dot stays the brightest pixel
GEOMETRY_ONLY = BroadAugment(
    p_fov=0.0,
    p_objects=0.0,
    p_blur=0.0,
    p_lowres=0.0,
    p_curve=0.0,
    gamma=(1.0, 1.0),
    contrast=(1.0, 1.0),
    brightness=0.0,
    noise_sd=0.0,
)


def _landmarks(rng: np.random.Generator) -> np.ndarray:
    """19 points on the coarse grid, well inside and at least 8 px apart."""
    pts: list[np.ndarray] = []
    while len(pts) < N:
        p = rng.uniform([20, 20], [W - 20, H - 20])
        if all(np.linalg.norm(p - q) >= 8 for q in pts):
            pts.append(p)
    return np.array(pts)


def dot_cache(n_images: int = 2, seed: int = 0) -> CephCache:
    """Dark images with a bright blob at each landmark, on both grids."""
    rng = np.random.default_rng(seed)
    fine, coarse, xyf = [], [], []
    for _ in range(n_images):
        xy_c = np.round(_landmarks(rng))
        xy_f = coarse_to_fine(xy_c, POOL)
        f = torch.zeros(1, 1, H * POOL, W * POOL)
        for x, y in np.round(xy_f).astype(int):
            f[0, 0, y - 3 : y + 4, x - 3 : x + 4] = 1.0
        c = torch.zeros(1, 1, H, W)
        for x, y in xy_c.astype(int):
            c[0, 0, y - 1 : y + 2, x - 1 : x + 2] = 1.0
        fine.append(f.half())
        coarse.append(c)
        xyf.append(xy_f)
    xyf_a = np.stack(xyf)
    return CephCache(
        ids=[f"{i + 1:03d}" for i in range(n_images)],
        fine=fine,
        coarse=torch.cat(coarse),
        xy_fine=xyf_a,
        xy_orig=xyf_a.copy(),
        factor_xy=np.ones((n_images, 2)),
        size_hw=[(H * POOL, W * POOL)] * n_images,
        spacing_xy_mm=np.full((n_images, 2), 0.2),
    )


def test_folds_are_seeded_disjoint_and_cover_all_images() -> None:
    folds = ceph_cv.cv_folds()
    assert [len(f) for f in folds] == [30] * 5
    flat = [i for f in folds for i in f]
    assert sorted(flat) == ceph_cv.ALL_IDS
    assert ceph_cv.cv_folds() == folds  # seeded
    assert ceph_cv.cv_folds(seed=1) != folds
    tr, held = ceph_cv.run_ids("fold2")
    assert held == folds[2] and not set(tr) & set(held) and len(tr) == 120
    assert ceph_cv.run_ids("final") == (ceph_cv.ALL_IDS, [])


@pytest.mark.parametrize("kw", [{"scale_range": (1.2, 0.9)}, {"p_fov": 1.5}, {"max_rot_deg": -1.0}])
def test_broad_augment_rejects_invalid_settings(kw: dict) -> None:
    with pytest.raises(ValueError):
        BroadAugment(**kw)


def test_coarse_batch_targets_follow_the_image() -> None:
    cache = dot_cache(2)
    cfg = StageConfig()
    rng = np.random.default_rng(1)
    aug = replace(GEOMETRY_ONLY, max_rot_deg=10.0, scale_range=(0.8, 1.25), shift_mm=8.0)
    for _ in range(5):
        x, y = ceph_cv.coarse_batch(cache, np.array([0, 1]), rng, cfg, aug)
        assert x.shape == (2, 1, H, W) and y.shape == (2, N, H, W)
        for b in range(2):
            for k in range(N):
                iy, ix = np.unravel_index(int(y[b, k].argmax()), (H, W))
                if 2 <= iy < H - 2 and 2 <= ix < W - 2:
                    assert float(x[b, 0, iy - 1 : iy + 2, ix - 1 : ix + 2].max()) > 0.3


def test_refine_batch_targets_sit_on_their_dots() -> None:
    cache = dot_cache(2)
    cfg = StageConfig()
    rng = np.random.default_rng(2)
    x, y, lm = ceph_cv.refine_batch(cache, rng, cfg, GEOMETRY_ONLY, 2)
    assert x.shape == (2 * N, 1, cfg.patch, cfg.patch) and y.shape == x.shape
    assert lm.tolist() == list(range(N)) * 2
    for k in range(len(x)):
        iy, ix = np.unravel_index(int(y[k, 0].argmax()), (cfg.patch, cfg.patch))
        assert float(x[k, 0, max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2].max()) > 0.5


def test_broad_intensity_changes_images_within_bounds() -> None:
    rng = np.random.default_rng(3)
    x = torch.rand(6, 1, 32, 32)
    aug = BroadAugment(p_blur=1.0, p_lowres=1.0, p_curve=1.0)
    y = broad_intensity(rng, x, aug, 0.2)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(y, x)


def test_devices_are_drawn_near_porion_and_nasion() -> None:
    img = torch.zeros(1, 200, 200)
    out = draw_objects(np.random.default_rng(0), img, np.array([60.0, 80.0]), np.array([150.0, 70.0]), 0.8, 1.0)
    assert float(out.max()) > 0.7  # radio-opaque
    ys, xs = np.nonzero(out[0].numpy() > 0.5)
    assert xs.min() < 100 and xs.max() > 150  # ring by porion, ruler in front of nasion


def test_budget_lowers_the_step_count_when_steps_slow_down(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"t": 0.0}
    monkeypatch.setattr(ceph_cv.time, "time", lambda: clock["t"])
    b = ceph_cv._Budget(seconds=100.0, max_steps=10_000, warm=1, probe=4)
    for step in range(1, 6):
        clock["t"] += 0.1
        b.update(step)
    first = b.total
    assert 900 < first < 1100  # 0.1 s per step, 100 s
    for step in range(6, 10):
        clock["t"] += 1.0  # ten times slower
        b.update(step)
    assert b.total < first


def test_worker_trains_and_packs_a_tiny_run(tmp_path) -> None:  # noqa: ANN001
    cache = dot_cache(5)
    cache.key = "tiny"
    cache_file = tmp_path / "cache.pt"
    save_cached(cache_file, cache)
    out = tmp_path / "out"
    out.mkdir()
    infos = []
    for stage in ("coarse", "refine"):
        infos.append(ceph_cv.train_stage(stage, "final", cache_file, out, 60.0, "cpu", max_steps=2))
    assert [i["steps"] for i in infos] == [2, 2]
    ids = cache.ids
    ceph_cv.pack(out, ["final"], infos, ids)
    packed = torch.load(out / "final.pt", weights_only=True)
    assert packed["train_ids"] == ids and packed["held_out_ids"] == []
    assert all(v.dtype == torch.float16 for v in packed["coarse"].values() if v.is_floating_point())
    assert json.dumps(packed["augment"])  # the augmentation travels with the weights
    assert not (out / "final_coarse.pt").exists()


def _fake_oof(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Out-of-fold arrays for 150 images in two settings: errors that the refine peak
    predicts, right-facing first passes (peaks ~0.9) and weak mirrored ones (~0.1)."""
    ids = np.array(ceph_cv.ALL_IDS)
    fold_of = {i: k for k, f in enumerate(ceph_cv.cv_folds()) for i in f}
    out: dict[str, np.ndarray] = {"ids": ids, "fold": np.array([fold_of[i] for i in ids])}
    truth = rng.uniform(500, 1500, (150, N, 2))
    for s, first in (("none", 0.9), ("pose", 0.7)):
        peak = rng.uniform(0.3, 1.0, (150, N))
        err_mm = rng.exponential(0.4 + 2.0 * (1.0 - peak))
        ang = rng.uniform(0, 2 * np.pi, (150, N))
        out[f"{s}/truth"] = truth
        out[f"{s}/xy"] = truth + 10.0 * err_mm[..., None] * np.stack([np.cos(ang), np.sin(ang)], -1)
        out[f"{s}/spacing"] = np.full(150, 0.1)
        out[f"{s}/errors_mm"] = err_mm
        out[f"{s}/features"] = np.stack([peak, rng.uniform(0.5, 1, (150, N)), err_mm * 0.5], -1)
        out[f"{s}/facing"] = np.column_stack([rng.uniform(first, first + 0.1, 150), rng.uniform(0.05, 0.2, 150)])
        out[f"{s}/mirrored"] = np.zeros(150, dtype=bool)
        out[f"{s}/seconds"] = np.full(150, 0.2)
    return out


@pytest.mark.shared_data
def test_package_fits_everything_on_out_of_fold_predictions(tmp_path, shared_data) -> None:  # noqa: ANN001
    from cephspine.detector import Detector
    from cephspine.training.finalize import finalize_ceph_cv

    cfg = StageConfig()
    runs = tmp_path / "runs"
    runs.mkdir()
    torch.manual_seed(0)
    torch.save(cfg.build_coarse().state_dict(), runs / "final_coarse.pt")
    torch.save(cfg.build_refine().state_dict(), runs / "final_refine.pt")
    oof = _fake_oof(np.random.default_rng(0))
    np.savez(tmp_path / "oof.npz", **oof)
    check = {"threshold": 0.9, "n_films": 3, "mre_unregistered_mm": 1.0, "mre_registered_mm": 1.1}
    card = finalize_ceph_cv(
        runs, shared_data / "isbi2015", tmp_path / "model", tmp_path / "oof.npz", "9.9.9", registration_check=check
    )
    assert card["version"] == "9.9.9" and card["metrics"]["n_images"] == 150
    mirrored_max = max(oof[f"{s}/facing"][:, 1].max() for s in ("none", "pose"))
    assert card["facing"]["skip_mirror_at_mean_coarse_peak"] == pytest.approx(mirrored_max + 0.1)
    assert card["registration"]["auto_below_mean_coarse_peak"] == pytest.approx(oof["pose/facing"][:, 0].min())
    assert card["registration"]["check"] == check
    assert len(card["confidence"]["landmark_offsets"]) == N
    assert card["confidence"]["cv_gap_pts"]["none"] < 5  # a fit of the model that made the data
    assert set(card["metrics"]["perturbed"]) == {"pose"}
    assert card["metrics"]["mre_mm"] == pytest.approx(oof["none/errors_mm"].mean(), rel=0.02)
    text = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "cross-validated, out of fold" in text and "anatomical porion" in text
    det = Detector.from_pretrained(tmp_path / "model", device="cpu")
    assert det.facing_clear_peak == card["facing"]["skip_mirror_at_mean_coarse_peak"]
    assert det.calibrator is not None and det.calibrator.landmark_offsets is not None


@pytest.mark.shared_data
def test_out_of_fold_predictions_use_the_folds_the_runs_were_trained_with(tmp_path, shared_data) -> None:  # noqa: ANN001
    """10 images, 5 folds of 2: each image is predicted by the one fold model that held it
    out (here random weights: the bookkeeping is under test, not the accuracy)."""
    from cephspine.training import ceph_oof

    cfg = StageConfig()
    ids = ceph_cv.ALL_IDS[:10]
    torch.manual_seed(0)
    state = {"coarse": cfg.build_coarse().state_dict(), "refine": cfg.build_refine().state_dict()}
    for k in range(5):
        for s in ("coarse", "refine"):
            torch.save(state[s], tmp_path / f"fold{k}_{s}.pt")
    out = tmp_path / "oof.npz"
    oof = ceph_oof.evaluate_folds(tmp_path, shared_data / "isbi2015", out, ["none", "pose"], ids)
    assert list(oof["ids"]) == ids
    for i, k in zip(oof["ids"], oof["fold"]):
        assert i in ceph_cv.run_ids(f"fold{k}", ids)[1]  # held out by the fold that predicted it
    for s in ("none", "pose"):
        assert oof[f"{s}/xy"].shape == (10, N, 2) and oof[f"{s}/features"].shape == (10, N, 3)
        assert oof[f"{s}/facing"].shape == (10, 2) and np.isfinite(oof[f"{s}/errors_mm"]).all()
    assert not np.allclose(oof["none/truth"], oof["pose/truth"])  # pose moved the landmarks
    np.testing.assert_array_equal(np.load(out)["none/xy"], oof["none/xy"])
    peaks = oof["none/facing"][:, 0]
    check = ceph_oof.registration_check(tmp_path, shared_data / "isbi2015", oof, float(np.sort(peaks)[0]) + 1e-9)
    assert check["n_films"] == 1 + int(np.sum(oof["pose/facing"][:, 0] <= np.sort(peaks)[0]))
    assert np.isfinite(check["mre_registered_mm"]) and np.isfinite(check["mre_unregistered_mm"])


def test_pack_keeps_the_other_stage_when_one_is_trained_again(tmp_path) -> None:  # noqa: ANN001
    cfg = StageConfig()
    torch.manual_seed(0)
    coarse, refine = cfg.build_coarse().state_dict(), cfg.build_refine().state_dict()
    torch.save(coarse, tmp_path / "final_coarse.pt")
    torch.save(refine, tmp_path / "final_refine.pt")
    first = [{"run": "final", "stage": "coarse", "steps": 3}, {"run": "final", "stage": "refine", "steps": 4}]
    assert ceph_cv.pack(tmp_path, ["final"], first, ceph_cv.ALL_IDS) == ["final"]
    new_refine = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in refine.items()}
    torch.save(new_refine, tmp_path / "final_refine.pt")
    again = [{"run": "final", "stage": "refine", "steps": 9}]
    assert ceph_cv.pack(tmp_path, ["final"], again, ceph_cv.ALL_IDS) == ["final"]
    packed = torch.load(tmp_path / "final.pt", weights_only=True)
    key = next(k for k, v in coarse.items() if v.is_floating_point())
    torch.testing.assert_close(packed["coarse"][key], coarse[key].half())
    assert all(not v.any() for v in packed["refine"].values() if v.is_floating_point())
    assert sorted((i["stage"], i["steps"]) for i in packed["info"]) == [("coarse", 3), ("refine", 9)]
    torch.save(new_refine, tmp_path / "fold0_refine.pt")  # a run with one stage only: not packed
    assert ceph_cv.pack(tmp_path, ["fold0"], again, ceph_cv.ALL_IDS) == []
