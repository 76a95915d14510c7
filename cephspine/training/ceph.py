"""Training of the two-stage cephalometric model on data in the ISBI 2015 layout.

Stages are trained independently (the refinement net learns on patches around the true
points shifted by random offsets that mimic the coarse stage's errors), so they can run
one after the other or side by side. Everything is seeded; checkpoints are written every
epoch / every ``ckpt_every`` steps and a run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cephspine.heatmaps import gaussian_targets
from cephspine.pipeline import StageConfig, coarse_stage, fine_to_coarse, prepare
from cephspine.preprocess import crop_patches, normalize_intensity, rotation_scale
from cephspine.training.augment import GeometricAugment, random_intensity, random_linear, warp_about_centre
from cephspine.vertebrae import CORNER_FLIP, vertebra_frames, vertebra_loss

log = logging.getLogger(__name__)


@dataclass
class CephCache:
    """Prepared training data: fine images (0.2 mm), coarse images, landmarks in fine px."""

    ids: list[str]
    fine: list[torch.Tensor]  # each (1, 1, H, W) float16
    coarse: torch.Tensor  # (M, 1, h, w) float32
    xy_fine: np.ndarray  # (M, 19, 2)
    xy_orig: np.ndarray  # (M, 19, 2)
    factor_xy: np.ndarray  # (M, 2)
    size_hw: list[tuple[int, int]]  # unpadded fine sizes
    spacing_xy_mm: np.ndarray  # (M, 2) original pixel spacing (x, y)
    key: str = ""
    error_unit: str = "mm"  # unit of coarse_errors_mm: "px" for data without spacing


def build_cache(root: Path, ids: list[str], cfg: StageConfig, cache_file: Path | None = None) -> CephCache:
    """Load, normalise and resample the images ``ids`` of an ISBI-layout folder.

    With ``cache_file`` the result is stored (atomically) and reused while the folder,
    the ids and the stage configuration are unchanged.
    """
    from cephspine.io.datasets import IsbiDataset

    key = cache_key(root, ids, cfg)
    cached = load_cached(cache_file, key)
    if cached is not None:
        return cached
    ds = IsbiDataset(root)
    fine, coarse, xyf, xyo, fac, sizes, sps = [], [], [], [], [], [], []
    for i in ids:
        rec = ds[i]
        rg = rec.radiograph
        assert rg.spacing is not None  # the ISBI reader sets the dataset's spacing
        f, c = prepare(normalize_intensity(rg.pixels), (rg.spacing.row_mm, rg.spacing.col_mm), cfg)
        fine.append(f.image.half())
        coarse.append(c)
        xyo.append(rec.landmarks)
        xyf.append(f.to_resampled(rec.landmarks))
        fac.append(f.factor_xy)
        sizes.append(f.size_hw)
        sps.append(rg.spacing.xy_mm)
    shapes = {tuple(c.shape) for c in coarse}
    if len(shapes) != 1:
        raise ValueError(f"training images differ in size after resampling: {shapes}")
    cache = CephCache(
        ids, fine, torch.cat(coarse), np.stack(xyf), np.stack(xyo), np.stack(fac), sizes, np.stack(sps), key
    )
    save_cached(cache_file, cache)
    return cache


CACHE_FIELDS = ("n_landmarks", "fine_mm", "coarse_pool", "pad_multiple", "fine_height_px", "min_width_px")
"""The configuration fields that shape a training cache (resampling, pooling, padding)."""


def cache_key(root: Path, ids: list[str], cfg: StageConfig) -> str:
    """What a cache depends on: the data folder, the ids and the configuration fields that
    shape the prepared images (:data:`CACHE_FIELDS`), so that stages with different network
    settings share one cache."""
    prep = {k: getattr(cfg, k) for k in CACHE_FIELDS}
    return json.dumps({"root": str(Path(root).resolve()), "ids": ids, "config": prep}, sort_keys=True)


def load_cached(cache_file: Path | None, key: str) -> CephCache | None:
    """The cache stored in ``cache_file`` if it was built for ``key``, else ``None``."""
    if cache_file is None or not cache_file.exists():
        return None
    try:
        cache = read_cache(cache_file)
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError) as exc:  # e.g. written by an older version
        log.info("%s: not a readable cache (%s); building it again", cache_file, type(exc).__name__)
        return None
    return cache if cache.key == key else None


def read_cache(cache_file: Path) -> CephCache:
    """A cache written by :func:`save_cached`, read with ``torch.load(weights_only=True)``
    (tensors, numbers and text only: a planted file cannot run code)."""
    d = torch.load(cache_file, weights_only=True)
    arrays = d.pop("numpy_fields", [])
    for k in arrays:
        d[k] = d[k].numpy()
    d["size_hw"] = [tuple(int(v) for v in hw) for hw in d["size_hw"]]
    return CephCache(**d)


def save_cached(cache_file: Path | None, cache: CephCache) -> None:
    """Store ``cache`` atomically (no-op without a file), numpy arrays as tensors."""
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        d = dict(cache.__dict__)
        arrays = [k for k, v in d.items() if isinstance(v, np.ndarray)]
        d |= {k: torch.from_numpy(np.ascontiguousarray(d[k])) for k in arrays}
        _save(cache_file, **d, numpy_fields=arrays)


def train_both(
    build: Any, data: Path, out: Path, cfg: StageConfig, train_ids: list[str], val_ids: list[str],
    *, epochs: int, steps: int, flip_perm: np.ndarray | None = None,
) -> dict[str, float]:  # fmt: skip
    """Build the caches and train both stages one after the other in run folder ``out``.

    Returns the wall time of each part in seconds (``cache_s``, ``coarse_s``, ``refine_s``).
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    t0 = time.time()
    train = build(data, train_ids, cfg, out / "cache_train.pt")
    val = build(data, val_ids, cfg, out / "cache_val.pt")
    t1 = time.time()
    train_coarse(train, val, cfg, out, epochs=epochs, flip_perm=flip_perm)
    t2 = time.time()
    train_refine(train, cfg, out, steps=steps)
    t3 = time.time()
    return {"cache_s": round(t1 - t0, 1), "coarse_s": round(t2 - t1, 1), "refine_s": round(t3 - t2, 1)}


def run_stage(
    stage: str, build: Any, data: Path, out: Path, cfg: StageConfig, train_ids: list[str], val_ids: list[str],
    *, epochs: int, steps: int, flip_perm: np.ndarray | None = None, init: Path | None = None,
    lr: float = 1e-3, geometry: GeometricAugment | None = None,
    refine_scale: tuple[float, float] = (0.9, 1.1),
) -> None:  # fmt: skip
    """Train one stage (``"coarse"`` or ``"refine"``) in run folder ``out``; ``build`` makes
    the data cache (``build(data, ids, cfg, cache_file)``); ``init`` (weights to start
    from) and ``lr`` (peak learning rate) apply to the stage trained; ``geometry`` is the
    coarse stage's geometric augmentation (default :class:`GeometricAugment`),
    ``refine_scale`` the vertebra refinement's random patch scale."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    train = build(data, train_ids, cfg, out / "cache_train.pt")
    log.info("cache ready (%d images) in %.0fs", len(train_ids), time.time() - t0)
    if stage == "coarse":
        val = build(data, val_ids, cfg, out / "cache_val.pt")
        train_coarse(train, val, cfg, out, epochs=epochs, flip_perm=flip_perm, init=init, lr=lr, geometry=geometry)
    else:
        train_refine(train, cfg, out, steps=steps, init=init, lr=lr, scale_range=refine_scale)


def _save(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _start(
    ckpt: Path, build: Any, lr: float, seed: int, key: str
) -> tuple[torch.nn.Module, torch.optim.Optimizer, int, np.random.Generator]:
    """A seeded network and optimiser, restored from ``ckpt`` when it exists.

    Returns the network, the optimiser, the epoch/step to start from (``key`` in the
    checkpoint) and the random generator.
    """
    torch.manual_seed(seed)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start, rng = 0, np.random.default_rng(seed)
    if ckpt.exists():
        try:
            st = torch.load(ckpt, weights_only=True)  # tensors, numbers and text only: never code
        except pickle.UnpicklingError as exc:
            raise RuntimeError(
                f"{ckpt}: a checkpoint that holds more than tensors, numbers and text (written by an older "
                "version, or not by cephspine) is not read; delete it to start this stage over"
            ) from exc
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        start = st[key]
        rng.bit_generator.state = st["rng"]
        log.info("resumed %s at %s %d", ckpt.name, key, start)
    return net, opt, start, rng


def init_state(path: Path, stage: str = "coarse") -> dict[str, torch.Tensor]:
    """Weights of ``stage`` (``"coarse"`` or ``"refine"``) to start training from: a model
    directory (its ``model.safetensors``) or a saved state dict (``coarse_final.pt``)."""
    path = Path(path)
    if path.is_dir():
        from safetensors.torch import load_file

        tensors = load_file(path / "model.safetensors")
        prefix = stage + "."
        return {
            k.removeprefix(prefix): (v.float() if v.is_floating_point() else v)
            for k, v in tensors.items()
            if k.startswith(prefix)
        }
    state: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return state


def load_overlapping(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy ``state`` into ``net`` where names match; a tensor whose shape differs only in
    its first dimension (an output layer with more or fewer channels) is copied on the
    overlap. Returns the names of ``net``'s tensors not (fully) initialised from ``state``."""
    own = net.state_dict()
    partial = []
    for name, t in own.items():
        src = state.get(name)
        if src is None or src.shape[1:] != t.shape[1:]:
            partial.append(name)
            continue
        k = min(len(src), len(t)) if t.ndim else None
        with torch.no_grad():
            if k is None:
                t.copy_(src)
            else:
                t[:k].copy_(src[:k])
        if src.shape != t.shape:
            partial.append(name)
    net.load_state_dict(own)
    return partial


def _lr(base: float, frac: float) -> float:
    """Constant for the first 60 % of training, then cosine decay to 1 % of ``base``."""
    if frac < 0.6:
        return base
    t = (frac - 0.6) / 0.4
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def coarse_batch(
    cache: CephCache,
    idx: np.ndarray,
    rng: np.random.Generator,
    cfg: StageConfig,
    augment: bool = True,
    flip_perm: np.ndarray | None = None,
    geometry: GeometricAugment | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented coarse images and Gaussian targets for the images ``idx`` (see
    :func:`augmented_coarse`)."""
    x, xy = augmented_coarse(cache, idx, rng, cfg, augment, flip_perm, geometry)
    sigma = cfg.coarse_sigma_px if cfg.coarse_sigma_px is not None else cfg.sigma_px
    return x, gaussian_targets(xy, x.shape[-2], x.shape[-1], sigma)


def augmented_coarse(
    cache: CephCache,
    idx: np.ndarray,
    rng: np.random.Generator,
    cfg: StageConfig,
    augment: bool = True,
    flip_perm: np.ndarray | None = None,
    geometry: GeometricAugment | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented coarse images ``(B, 1, H, W)`` and landmarks ``(B, N, 2)`` (coarse pixels)
    for the images ``idx``.

    With ``flip_perm`` (the landmark order of the mirror image, e.g. left and right
    corners swapped) half of the images are mirrored left-right within their own width.
    ``geometry``: the random affine transform (default :class:`GeometricAugment`, the paper's).
    """
    x = cache.coarse[idx]
    xy = fine_to_coarse(cache.xy_fine[idx], cfg.coarse_pool)  # (B, N, 2)
    b, _, h, w = x.shape
    if augment and flip_perm is not None:  # x and xy are already copies (indexed, converted)
        for k in np.flatnonzero(rng.random(b) < 0.5):
            wc = min(w, int(math.ceil(cache.size_hw[idx[k]][1] / cfg.coarse_pool)))
            x[k, :, :, :wc] = x[k, :, :, :wc].flip(-1)
            xy[k] = xy[k][flip_perm]
            xy[k, :, 0] = wc - 1 - xy[k, :, 0]
    if augment:
        g = geometry or GeometricAugment()
        lin = random_linear(rng, b, g.max_rot_deg, g.scale_range)
        x, xy = warp_about_centre(x, xy, lin, g.random_shift(rng, b))
        x = random_intensity(rng, x)
    return x, torch.tensor(xy, dtype=torch.float32)


def refine_batch(
    cache: CephCache, rng: np.random.Generator, cfg: StageConfig, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches around randomly shifted true points, their targets and landmark indices.

    Every landmark of ``batch // n_landmarks`` random images (at least one), so that each
    output channel is supervised at every step.
    """
    n_img = max(1, batch // cfg.n_landmarks)
    img = np.repeat(rng.integers(0, len(cache.ids), n_img), cfg.n_landmarks)
    lm = np.tile(np.arange(cfg.n_landmarks), n_img)
    batch = len(img)
    lim = cfg.patch * 0.35
    off = np.clip(rng.normal(0, cfg.refine_offset_sd_px, (batch, 2)), -lim, lim)
    lin = random_linear(rng, batch, 5.0, (0.9, 1.1))
    patches, targets = [], []
    half = (cfg.patch - 1) / 2.0
    for k in range(batch):
        true = cache.xy_fine[img[k], lm[k]]
        c = true + off[k]
        p = crop_patches(cache.fine[img[k]].float(), c[None], cfg.patch, lin[k : k + 1])
        uv = np.linalg.inv(lin[k].numpy()) @ (true - c) + half
        patches.append(p)
        targets.append(uv)
    x = random_intensity(rng, torch.cat(patches))
    y = gaussian_targets(
        torch.tensor(np.array(targets), dtype=torch.float32)[:, None], cfg.patch, cfg.patch, cfg.sigma_px
    )
    return x, y, torch.as_tensor(lm)


def vertebra_refine_batch(
    cache: CephCache,
    rng: np.random.Generator,
    cfg: StageConfig,
    batch: int,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches of whole vertebrae, their four corner targets and which targets count.

    Every vertebra of ``batch // n_vertebrae`` random images (at least one). Each patch is
    framed as at inference (:func:`~cephspine.vertebrae.vertebra_frames`) from the true
    corners, then its centre is shifted (s.d. ``cfg.refine_offset_sd_px``), its angle
    turned (s.d. ``cfg.refine_angle_sd_deg``) and its scale changed (``scale_range``; above 1
    the vertebra looks smaller) at random,
    as the coarse stage's errors would; half of the patches are mirrored (TL ↔ TR, BL ↔ BR).

    Returns ``(B, 1, p, p)`` patches, ``(B, 4, p, p)`` Gaussian targets and a ``(B, 4)``
    mask that is false for a corner outside its patch.
    """
    n_v = cfg.n_landmarks // 4
    n_img = max(1, batch // n_v)
    img = rng.integers(0, len(cache.ids), n_img)
    p = cfg.patch
    half = (p - 1) / 2.0
    lim = 0.2 * p
    patches, uvs = [], []
    for i in img:
        q = cache.xy_fine[i].reshape(n_v, 4, 2)
        ctr, lin = vertebra_frames(q.reshape(-1, 2), cfg.refine_max_width_px)
        ctr = ctr + np.clip(rng.normal(0, cfg.refine_offset_sd_px, (n_v, 2)), -lim, lim)
        jitter = random_linear(rng, n_v, 0.0, scale_range).numpy()
        ang = np.deg2rad(rng.normal(0, cfg.refine_angle_sd_deg, n_v))
        lin = lin @ rotation_scale(ang) @ jitter
        patches.append(crop_patches(cache.fine[i].float(), ctr, p, torch.as_tensor(lin)))
        uvs.append(np.einsum("vij,vcj->vci", np.linalg.inv(lin), q - ctr[:, None]) + half)
    x = torch.cat(patches)
    uv = np.concatenate(uvs)
    flip = rng.random(len(uv)) < 0.5
    f = torch.from_numpy(flip)
    x[f] = x[f].flip(-1)
    uv[flip] = uv[flip][:, list(CORNER_FLIP)]
    uv[flip, :, 0] = p - 1 - uv[flip, :, 0]
    x = random_intensity(rng, x)
    inside = torch.as_tensor(((uv >= 0) & (uv <= p - 1)).all(axis=-1))
    y = gaussian_targets(torch.tensor(uv, dtype=torch.float32), p, p, cfg.sigma_px)
    return x, y, inside


def refine_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy between a spatial softmax of ``logits`` ``(B, P)`` and the Gaussian
    ``target`` ``(B, P)`` normalised to sum 1, averaged over the rows (weighted by
    ``weight`` ``(B,)`` when given). Converges much faster than MSE on sparse
    single-landmark patches, whose MSE optimum starts out at an all-zero map."""
    p = target / target.sum(dim=1, keepdim=True).clamp_min(1e-12)
    ce = -(p * torch.log_softmax(logits, dim=1)).sum(dim=1)
    if weight is None:
        return ce.mean()
    w = weight.to(ce.dtype)
    return (ce * w).sum() / w.sum().clamp_min(1e-12)


def coarse_errors_mm(net: torch.nn.Module, cache: CephCache, cfg: StageConfig) -> np.ndarray:
    """Radial errors (mm) of the coarse stage alone on ``cache``, ``(M, N)``, computed as
    at inference (padding masked)."""
    from cephspine.metrics import radial_errors

    net.eval()
    pred = []
    for i in range(len(cache.ids)):
        xy, _ = coarse_stage(net, cache.coarse[i : i + 1], cfg, "cpu", cache.size_hw[i])
        pred.append((xy[0] + 0.5) / cache.factor_xy[i] - 0.5)
    net.train()
    spacings = [(sp[1], sp[0]) for sp in cache.spacing_xy_mm]  # (row_mm, col_mm)
    return np.asarray(radial_errors(np.stack(pred), cache.xy_orig, spacing=spacings))


def train_coarse(
    train: CephCache,
    val: CephCache | None,
    cfg: StageConfig,
    out: Path,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch: int = 4,
    seed: int = 0,
    flip_perm: np.ndarray | None = None,
    init: Path | None = None,
    geometry: GeometricAugment | None = None,
) -> Path:
    """Train the coarse stage for ``epochs`` epochs (resuming from ``out/coarse_ckpt.pt``);
    a new run starts from the weights in ``init`` when given (see :func:`load_overlapping`).
    The geometric augmentation (default :class:`GeometricAugment`) is logged and written to
    ``out/coarse_augment.json``."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "coarse_ckpt.pt"
    net, opt, start, rng = _start(ckpt, cfg.build_coarse, lr, seed, "epoch")
    if init is not None and start == 0:
        fresh = load_overlapping(net, init_state(init, "coarse"))
        log.info("coarse stage starts from %s (not from it: %s)", init, ", ".join(fresh) or "none")
    geometry = geometry or GeometricAugment()
    log.info("coarse augmentation: %s", geometry)
    (out / "coarse_augment.json").write_text(json.dumps(asdict(geometry)))
    n = len(train.ids)
    batch = min(batch, n)  # fewer images than a batch: one smaller batch, not zero steps
    t0 = time.time()
    for ep in range(start, epochs):
        for g in opt.param_groups:
            g["lr"] = _lr(lr, ep / epochs)
        perm = rng.permutation(n)
        losses = []
        for s in range(0, n - batch + 1, batch):
            if cfg.coarse_target == "vertebrae":
                x, xy = augmented_coarse(train, perm[s : s + batch], rng, cfg, flip_perm=flip_perm, geometry=geometry)
                sigma = cfg.coarse_sigma_px if cfg.coarse_sigma_px is not None else cfg.sigma_px
                loss = vertebra_loss(net(x), xy, sigma)
            else:
                x, y = coarse_batch(train, perm[s : s + batch], rng, cfg, flip_perm=flip_perm, geometry=geometry)
                loss = F.mse_loss(net(x), y) * 100
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        lr_now = opt.param_groups[0]["lr"]
        msg = f"coarse epoch {ep + 1}/{epochs} loss {np.mean(losses):.4f} lr {lr_now:.2e} {time.time() - t0:.0f}s"
        if val is not None and ((ep + 1) % 5 == 0 or ep + 1 == epochs):
            e = coarse_errors_mm(net, val, cfg)
            msg += f" | val MRE {e.mean():.3f} {val.error_unit}"
            if val.error_unit == "mm":
                msg += f" SDR2 {100 * (e <= 2).mean():.1f}% SDR4 {100 * (e <= 4).mean():.1f}%"
        log.info(msg)
        _save(ckpt, net=net.state_dict(), opt=opt.state_dict(), epoch=ep + 1, rng=rng.bit_generator.state)
    torch.save(net.state_dict(), out / "coarse_final.pt")
    return out / "coarse_final.pt"


def train_refine(
    train: CephCache,
    cfg: StageConfig,
    out: Path,
    *,
    steps: int,
    lr: float = 1e-3,
    batch: int = 38,
    seed: int = 1,
    ckpt_every: int = 50,
    init: Path | None = None,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> Path:
    """Train the refinement stage for ``steps`` steps (resuming from ``out/refine_ckpt.pt``);
    a new run starts from the weights in ``init`` when given. ``scale_range``: the random
    scale of vertebra patches (:func:`vertebra_refine_batch`)."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "refine_ckpt.pt"
    net, opt, start, rng = _start(ckpt, cfg.build_refine, lr, seed, "step")
    if init is not None and start == 0:
        fresh = load_overlapping(net, init_state(init, "refine"))
        log.info("refinement starts from %s (not from it: %s)", init, ", ".join(fresh) or "none")
    t0, losses = time.time(), []
    for step in range(start, steps):
        for g in opt.param_groups:
            g["lr"] = _lr(lr, step / steps)
        if cfg.refine_target == "vertebrae":
            x, y, inside = vertebra_refine_batch(train, rng, cfg, batch, scale_range)
            loss = refine_loss(net(x).flatten(0, 1).flatten(1), y.flatten(0, 1).flatten(1), inside.flatten())
        else:
            x, y, lm = refine_batch(train, rng, cfg, batch)
            loss = refine_loss(net(x)[torch.arange(len(lm)), lm].flatten(1), y.flatten(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            log.info(
                "refine step %d/%d loss %.4f lr %.2e %.0fs",
                step + 1,
                steps,
                np.mean(losses),
                opt.param_groups[0]["lr"],
                time.time() - t0,
            )
            losses = []
            _save(ckpt, net=net.state_dict(), opt=opt.state_dict(), step=step + 1, rng=rng.bit_generator.state)
    torch.save(net.state_dict(), out / "refine_final.pt")
    return out / "refine_final.pt"


def split_ids(n_val: int = 30) -> tuple[list[str], list[str]]:
    """The fixed split of the CPU recipe (``ceph`` 0.1.0): 001–120 train, 121–150 validation."""
    ids = [f"{i:03d}" for i in range(1, 151)]
    return ids[: 150 - n_val], ids[150 - n_val :]


def train_ceph(
    data: Path,
    out: Path,
    *,
    epochs: int = 40,
    steps: int = 1500,
    train_ids: list[str] | None = None,
    val_ids: list[str] | None = None,
    threads: int | None = None,
    cfg: StageConfig | None = None,
    version: str = "0.1.0",
) -> Path:
    """Train both stages, calibrate and write a model directory ``out / "model"``.

    Resumes from the checkpoints in ``out`` when run again. The returned directory loads
    with ``Detector.from_pretrained(path)``. Wall time of each part goes into the card.
    """
    if threads:
        torch.set_num_threads(threads)
    cfg = cfg or StageConfig()
    default_train, default_val = split_ids()
    train_ids = train_ids or default_train
    val_ids = val_ids or default_val
    times = train_both(build_cache, data, out, cfg, train_ids, val_ids, epochs=epochs, steps=steps)
    from cephspine.training.finalize import finalize_ceph

    finalize_ceph(
        out,
        data,
        out / "model",
        val_ids,
        {
            "version": version,
            "training": {
                "train_ids": f"{train_ids[0]}-{train_ids[-1]} ({len(train_ids)} images)",
                "validation_ids": (
                    f"{val_ids[0]}-{val_ids[-1]} ({len(val_ids)} images, never trained on: used for evaluation, "
                    "for the confidence calibration, for the register='auto' threshold, and for the coarse "
                    "stage's progress log)"
                ),
                "coarse_epochs": epochs,
                "refine_steps": steps,
                "threads": torch.get_num_threads(),
                **times,
            },
            "trained_ids": ",".join(train_ids),  # evaluate ceph warns on these (evaluation.trained_on)
        },
    )
    return out / "model"


def main(argv: list[str] | None = None) -> None:
    """Stage-by-stage entry point of the CPU recipe; ``ceph`` 0.1.0 was made with::

        python -m cephspine.training.ceph coarse --data DATA --out runs/ceph --threads 1 &
        python -m cephspine.training.ceph refine --data DATA --out runs/ceph --threads 1 &
        wait
        python -m cephspine.training.ceph finalize --data DATA --out runs/ceph \\
            --model-out runs/ceph/model --info training_info.json

    (the shipped ``ceph`` 0.2.0 comes from :mod:`cephspine.training.ceph_cv`)

    (``all`` runs the same three steps one after the other.)
    """
    import argparse

    ap = argparse.ArgumentParser(description="train the two-stage ceph model")
    ap.add_argument("stage", choices=["coarse", "refine", "finalize", "all"])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, caches)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-out", type=Path, default=None, help="finalize: model directory (default OUT/model)")
    ap.add_argument("--info", type=Path, default=None, help="finalize: JSON with training facts for the card")
    ap.add_argument("--version", default="0.1.0")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = StageConfig()
    tr_ids, va_ids = split_ids()
    t0 = time.time()
    if args.stage == "all":
        train_ceph(args.data, args.out, epochs=args.epochs, steps=args.steps, version=args.version)
    elif args.stage == "finalize":
        from cephspine.training.finalize import finalize_ceph

        info = json.loads(args.info.read_text()) if args.info else {}
        finalize_ceph(
            args.out,
            args.data,
            args.model_out or args.out / "model",
            va_ids,
            {"version": args.version, "training": info},
        )
    else:
        run_stage(
            args.stage, build_cache, args.data, args.out, cfg, tr_ids, va_ids, epochs=args.epochs, steps=args.steps
        )
    log.info("done in %.0fs", time.time() - t0)


if __name__ == "__main__":
    main()
