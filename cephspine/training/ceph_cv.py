"""Cross-validated training of the ``ceph`` model at accelerator scale.

Five seeded folds over the 150 ISBI 2015 training images (:func:`cv_folds`), one model per
fold trained on the other four, and a final model on all 150; each with the broad
augmentation of :class:`~cephspine.training.augment.BroadAugment` (other contrast,
resolution, pose, field of view, ear rods and rulers in view). Stages are trained in
separate worker processes, each for a wall-clock budget: the number of steps is set
from the speed measured over the first steps, and the learning-rate schedule (constant
for 60 %, then cosine decay) runs over that many steps. Runs on a GPU when one is
present and on the CPU otherwise (slowly: for tests, use tiny budgets).

    python -m cephspine.training.ceph_cv train --data DATA --out OUT --budget-s 270

writes ``OUT/fold0.pt`` … ``OUT/fold4.pt``, ``OUT/final.pt`` (fp16 state dicts of both
stages, with the ids they were trained on and the steps run) and ``OUT/train_log.txt``.
:mod:`cephspine.training.ceph_oof` evaluates them out of fold and packages the final model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cephspine.heatmaps import gaussian_targets
from cephspine.pipeline import StageConfig, coarse_stage, fine_to_coarse
from cephspine.preprocess import crop_patches, rotation_scale
from cephspine.training.augment import BroadAugment, broad_intensity, draw_objects, fov_mask, warp_about_centre
from cephspine.training.ceph import CephCache, _lr, build_cache, read_cache, refine_loss

log = logging.getLogger(__name__)

CV_SEED = 2015
"""Seed of the fold assignment: ``numpy.random.default_rng(CV_SEED).permutation`` of the ids,
cut into consecutive fifths."""
N_FOLDS = 5
PORION, NASION = 3, 1  # indices in the ISBI landmark order
ALL_IDS = [f"{i:03d}" for i in range(1, 151)]


def cv_folds(ids: list[str] | None = None, k: int = N_FOLDS, seed: int = CV_SEED) -> list[list[str]]:
    """The ``k`` held-out folds (sorted ids each) of a seeded permutation of ``ids``."""
    ids = list(ALL_IDS if ids is None else ids)
    perm = np.random.default_rng(seed).permutation(len(ids))
    return [sorted(ids[j] for j in part) for part in np.array_split(perm, k)]


def run_ids(run: str, ids: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Training and held-out ids of ``run`` (``"fold0"`` … ``"fold4"`` or ``"final"``)."""
    ids = list(ALL_IDS if ids is None else ids)
    if run == "final":
        return ids, []
    held = cv_folds(ids)[int(run.removeprefix("fold"))]
    return [i for i in ids if i not in held], held


def _random_lin(rng: np.random.Generator, n: int, max_rot_deg: float, scale: tuple[float, float]) -> np.ndarray:
    ang = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg, n))
    s = np.exp(rng.uniform(math.log(scale[0]), math.log(scale[1]), n))
    return rotation_scale(ang, s)


def coarse_batch(
    cache: CephCache, idx: np.ndarray, rng: np.random.Generator, cfg: StageConfig, aug: BroadAugment
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented coarse images ``(B, 1, h, w)`` and Gaussian targets for the images ``idx``."""
    x = cache.coarse[idx].clone()
    dev = x.device
    xy = fine_to_coarse(cache.xy_fine[idx], cfg.coarse_pool)  # (B, N, 2)
    b, _, h, w = x.shape
    for k in range(b):
        x[k] = draw_objects(rng, x[k], xy[k, PORION], xy[k, NASION], cfg.coarse_mm, aug.p_objects)
    lin = _random_lin(rng, b, aug.max_rot_deg, aug.scale_range)
    shift = rng.uniform(-1, 1, (b, 2)) * aug.shift_mm / cfg.coarse_mm
    x, xy = warp_about_centre(x, xy, torch.from_numpy(lin), torch.from_numpy(shift))
    for kk in np.flatnonzero(rng.random(b) < aug.p_fov):
        k = int(kk)
        mask, fill = fov_mask(rng, (h, w), xy[k], aug.fov_margin_mm / cfg.coarse_mm, dev)
        x[k, 0] = torch.where(mask, x[k, 0], torch.full_like(x[k, 0], fill))
    x = broad_intensity(rng, x, aug, cfg.coarse_mm)
    sigma = cfg.coarse_sigma_px if cfg.coarse_sigma_px is not None else cfg.sigma_px
    t = torch.tensor(xy, dtype=torch.float32, device=dev)
    return x, gaussian_targets(t, h, w, sigma)


def refine_batch(
    cache: CephCache, rng: np.random.Generator, cfg: StageConfig, aug: BroadAugment, n_img: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches around randomly shifted true points of every landmark of ``n_img`` random
    images, their Gaussian targets and landmark indices."""
    n = cfg.n_landmarks
    p, half = cfg.patch, (cfg.patch - 1) / 2.0
    lim = p * 0.35
    patches, targets = [], []
    for i in rng.integers(0, len(cache.ids), n_img):
        img = cache.fine[i].float()
        true = cache.xy_fine[i]
        img = draw_objects(rng, img, true[PORION], true[NASION], cfg.fine_mm, aug.p_objects)
        off = np.clip(rng.normal(0, cfg.refine_offset_sd_px, (n, 2)), -lim, lim)
        lin = _random_lin(rng, n, aug.max_rot_deg, aug.scale_range)
        c = true + off
        patches.append(crop_patches(img, c, p, torch.tensor(lin, dtype=torch.float32)))
        targets.append(np.einsum("kij,kj->ki", np.linalg.inv(lin), true - c) + half)
    x = broad_intensity(rng, torch.cat(patches), aug, cfg.fine_mm)
    uv = torch.tensor(np.concatenate(targets), dtype=torch.float32, device=x.device)[:, None]
    y = gaussian_targets(uv, p, p, cfg.sigma_px)
    return x, y, torch.as_tensor(np.tile(np.arange(n), n_img), device=x.device)


class _Budget:
    """Steps to run within ``seconds``: measured over steps ``warm``…``warm + probe``."""

    def __init__(self, seconds: float, max_steps: int, warm: int = 5, probe: int = 20) -> None:
        self.seconds, self.max_steps, self.warm, self.probe = seconds, max_steps, warm, probe
        self.t0 = time.time()
        self.t_warm = 0.0
        self.total = max_steps

    def update(self, step: int) -> None:
        """Call after ``step`` steps have run. The total is set after the probe and then
        lowered, never raised, whenever the speed since the probe says it would overrun
        (workers that share a GPU slow down as others start)."""
        if step == self.warm:
            self.t_warm = time.time()
        elif step >= self.warm + self.probe and (step - self.warm) % self.probe == 0:
            per = (time.time() - self.t_warm) / (step - self.warm)
            left = self.seconds - (time.time() - self.t0)
            self.total = int(min(self.total, self.max_steps, max(step + 1, step + left / per)))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _to_device(cache: CephCache, dev: torch.device) -> CephCache:
    cache.coarse = cache.coarse.to(dev)
    cache.fine = [f.to(dev) for f in cache.fine]
    return cache


def train_stage(
    stage: str, run: str, cache_file: Path, out: Path, budget_s: float, device: str = "auto",
    max_steps: int = 100_000, lr: float = 1e-3, aug: BroadAugment | None = None, cfg: StageConfig | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train ``stage`` (``"coarse"`` or ``"refine"``) of ``run`` for about ``budget_s``
    seconds on the prepared images in ``cache_file``; writes ``out/{run}_{stage}.pt``
    (float32 state dict) and returns what was run."""
    dev = _device(device)
    cfg = cfg or StageConfig()
    aug = aug or BroadAugment()
    full = read_cache(cache_file)
    train_ids, held = run_ids(run, full.ids)
    pos = {i: k for k, i in enumerate(full.ids)}
    tr = [pos[i] for i in train_ids]
    seed = (0 if stage == "coarse" else 100) + (5 if run == "final" else int(run.removeprefix("fold")))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = (cfg.build_coarse() if stage == "coarse" else cfg.build_refine()).to(dev)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cache = _to_device(full, dev)
    budget = _Budget(budget_s, max_steps)
    batch, n_img = 8, 8
    t0, step, losses = time.time(), 0, []
    while step < budget.total:
        for g in opt.param_groups:
            g["lr"] = _lr(lr, step / budget.total)
        if stage == "coarse":
            x, y = coarse_batch(cache, rng.choice(tr, min(batch, len(tr)), replace=False), rng, cfg, aug)
        else:
            x, y, lm = refine_batch(_Subset(cache, tr), rng, cfg, aug, n_img)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred = net(x.contiguous(memory_format=torch.channels_last)).float()
        if stage == "coarse":
            loss = F.mse_loss(pred, y) * 100
        else:
            loss = refine_loss(pred[torch.arange(len(lm), device=dev), lm].flatten(1), y.flatten(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        budget.update(step)
        if step % 200 == 0 or step == budget.total:
            log.info("%s %s step %d/%d loss %.4f lr %.2e %.0fs", run, stage, step, budget.total,
                     float(np.mean(losses)), opt.param_groups[0]["lr"], time.time() - t0)  # fmt: skip
            losses = []
    info: dict[str, Any] = {
        "run": run,
        "stage": stage,
        "steps": step,
        "seconds": round(time.time() - t0, 1),
        "batch": batch if stage == "coarse" else n_img * cfg.n_landmarks,
        "device": str(dev),
    }
    if stage == "coarse" and held:
        info["held_out_coarse_mre_mm"] = _coarse_mre(net, cache, [pos[i] for i in held], cfg, dev)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, out / f"{run}_{stage}.pt")
    log.info("%s", json.dumps(info))
    return info


class _Subset(CephCache):
    """A view of a cache restricted to the images ``rows`` (no copies)."""

    def __init__(self, cache: CephCache, rows: list[int]) -> None:  # noqa: D107
        self.ids = [cache.ids[r] for r in rows]
        self.fine = [cache.fine[r] for r in rows]
        self.xy_fine = cache.xy_fine[rows]


@torch.no_grad()
def _coarse_mre(net: torch.nn.Module, cache: CephCache, rows: list[int], cfg: StageConfig, dev: torch.device) -> float:
    """Mean radial error (mm) of the coarse stage alone on the images ``rows``."""
    net.eval()
    errs = []
    for r in rows:
        xy, _ = coarse_stage(net, cache.coarse[r : r + 1], cfg, dev, cache.size_hw[r])
        orig = (xy[0] + 0.5) / cache.factor_xy[r] - 0.5
        errs.append(np.linalg.norm((orig - cache.xy_orig[r]) * cache.spacing_xy_mm[r], axis=1).mean())
    net.train()
    return round(float(np.mean(errs)), 4)


def prepare_cache(data: Path, cache_file: Path, ids: list[str], cfg: StageConfig | None = None) -> CephCache:
    """Load and resample the images ``ids`` once (the workers share the file)."""
    return build_cache(data, ids, cfg or StageConfig(), cache_file)


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def pack(out: Path, runs: list[str], infos: list[dict[str, Any]], ids: list[str]) -> list[str]:
    """Gather each run's two stages into ``out/{run}.pt`` (fp16) and delete the parts.

    A stage without a new part (``{run}_{stage}.pt``) is taken from an existing
    ``{run}.pt``, so one stage can be trained again; a run with a stage in neither place is
    left unpacked. Returns the runs packed."""
    packed = []
    for run in runs:
        old = torch.load(out / f"{run}.pt", weights_only=True) if (out / f"{run}.pt").exists() else {}
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for s in ("coarse", "refine"):
            if (out / f"{run}_{s}.pt").exists():
                parts[s] = torch.load(out / f"{run}_{s}.pt", weights_only=True)
            elif s in old:
                parts[s] = old[s]
        if len(parts) < 2:
            log.warning(
                "%s: %s missing, not packed", run, " and ".join(s for s in ("coarse", "refine") if s not in parts)
            )
            continue
        tr, held = run_ids(run, ids)
        kept = [
            i
            for i in old.get("info", [])
            if i.get("stage") not in {x.get("stage") for x in infos if x.get("run") == run}
        ]
        torch.save(
            {
                "coarse": _half(parts["coarse"]),
                "refine": _half(parts["refine"]),
                "train_ids": tr,
                "held_out_ids": held,
                "info": kept + [i for i in infos if i.get("run") == run],
                "augment": asdict(BroadAugment()),
                "config": StageConfig().to_dict(),
            },
            out / f"{run}.pt",
        )
        for s in ("coarse", "refine"):
            (out / f"{run}_{s}.pt").unlink(missing_ok=True)
        packed.append(run)
    return packed


def train_all(
    data: Path,
    out: Path,
    budget_s: float,
    runs: list[str],
    device: str = "auto",
    ids: list[str] | None = None,
    stages: tuple[str, ...] = ("coarse", "refine"),
) -> None:
    """Prepare the images once, train every stage of every run in its own process at the
    same time (one torch thread each), then pack the weights."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # a private folder (mode 0700, unguessable name): no other user can plant or swap the cache
    private = Path(tempfile.mkdtemp(prefix="cephspine_cv_"))
    cache_file = private / "cache.pt"
    try:
        _train_workers(data, out, budget_s, runs, device, ids or ALL_IDS, stages, cache_file, t0)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _train_workers(
    data: Path, out: Path, budget_s: float, runs: list[str], device: str, ids: list[str],
    stages: tuple[str, ...], cache_file: Path, t0: float,
) -> None:  # fmt: skip
    prepare_cache(data, cache_file, ids)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    log.info("images prepared in %.0fs; torch %s, GPU %s, %d CPUs", time.time() - t0, torch.__version__, gpu,
             os.cpu_count() or 0)  # fmt: skip
    procs = []
    for run in runs:
        for stage in stages:
            cmd = [sys.executable, "-m", "cephspine.training.ceph_cv", "worker", "--stage", stage, "--run", run]
            cmd += ["--cache", str(cache_file), "--out", str(out), "--budget-s", str(budget_s), "--device", device]
            procs.append(subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"workers failed: exit codes {codes}")
    lines = (out / "infos.jsonl").read_text().splitlines()
    infos = [i for i in map(json.loads, lines) if i["run"] in runs and i["stage"] in stages][-len(procs) :]
    pack(out, runs, infos, ids)
    log.info("all runs done in %.0fs: %s", time.time() - t0, json.dumps(infos))


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="cross-validated ceph training at accelerator scale")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="all folds and the final model")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--budget-s", type=float, default=270.0, help="wall-clock seconds per stage")
    t.add_argument("--runs", default="fold0,fold1,fold2,fold3,fold4,final")
    t.add_argument("--device", default="auto")
    t.add_argument(
        "--stages", default="coarse,refine", help="stages to train (the other stage is taken from OUT/RUN.pt)"
    )
    t.add_argument("--n-images", type=int, default=150, help="the first N images only (tests)")
    pk = sub.add_parser("package", help="the final model with out-of-fold calibration, thresholds and metrics")
    pk.add_argument("--runs", type=Path, required=True, help="folder with the trained runs (final*)")
    pk.add_argument("--data", type=Path, required=True)
    pk.add_argument("--oof", type=Path, required=True, help="out-of-fold predictions (cephspine.training.ceph_oof)")
    pk.add_argument("--model-out", type=Path, required=True)
    pk.add_argument("--version", required=True)
    pk.add_argument("--info", type=Path, default=None, help="JSON with training facts for the card")
    pk.add_argument(
        "--registration-check", type=Path, default=None, help="JSON from ceph_oof.registration_check, for the card"
    )
    w = sub.add_parser("worker", help="one stage of one run (started by train)")
    w.add_argument("--stage", choices=["coarse", "refine"], required=True)
    w.add_argument("--run", required=True)
    w.add_argument("--cache", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--budget-s", type=float, required=True)
    w.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if args.cmd == "package":
        from cephspine.training.finalize import finalize_ceph_cv

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        info = json.loads(args.info.read_text()) if args.info else None
        check = json.loads(args.registration_check.read_text()) if args.registration_check else None
        finalize_ceph_cv(
            args.runs, args.data, args.model_out, args.oof, args.version, card_extra=info, registration_check=check
        )
        return
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "train_log.txt")],
    )
    if args.cmd == "train":
        ids = ALL_IDS[: args.n_images]
        train_all(args.data, args.out, args.budget_s, args.runs.split(","), args.device, ids,
                  tuple(args.stages.split(",")))  # fmt: skip
    else:
        torch.set_num_threads(1)
        info = train_stage(args.stage, args.run, args.cache, args.out, args.budget_s, args.device)
        with open(args.out / "infos.jsonl", "a") as fh:
            fh.write(json.dumps(info) + "\n")


if __name__ == "__main__":
    main()
