"""Training of the two-stage spine model (68 vertebral corners) on data in the AASCE layout.

Same training loops as the cephalometric model (:mod:`cephspine.training.ceph`);
differences: a coarse stage that finds vertebra centres with their corner offsets, a
refinement with one patch per vertebra and four corner outputs, global-context kernels of
5×3, and images resampled to a fixed height (spine radiographs carry no spacing). Records with known defects (corners or
vertebrae out of order, points outside the image) are excluded, each with its reason logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cephspine.pipeline import StageConfig, prepare
from cephspine.preprocess import normalize_intensity
from cephspine.training.augment import GeometricAugment
from cephspine.training.ceph import (
    CephCache,
    cache_key,
    load_cached,
    run_stage,
    save_cached,
    train_both,
)

log = logging.getLogger(__name__)

SPINE_CONFIG = StageConfig(
    n_landmarks=68,
    fine_height_px=1024,
    coarse_pool=4,
    pad_multiple=128,
    context_kernel=(5, 3),
    context_stride=8,
    patch=128,
    min_width_px=640,
    coarse_sigma_px=2.0,
    coarse_target="vertebrae",
    refine_target="vertebrae",
)
"""Fine grid 1024 px high; the coarse stage finds the 17 vertebra centres on a grid 256 px
high (vertebrae about 12 px apart, centre targets σ 2 px) and reads each vertebra's four
corners from offset channels; vertebra identity comes from the top-to-bottom order of the
centres, so the network never has to count vertebrae. Global context on a 32 × 20 grid
with 5 × 3 kernels (the paper: 64 × 32 on a 512-high image). The refinement stage then
places each vertebra's four corners together on the fine grid: one 128 × 128 patch per
vertebra, centred on its coarse corners and rotated so that their endplates are level
(the median vertebra is 70 fine pixels wide; wider ones are sampled at a coarser scale,
:attr:`StageConfig.refine_max_width_px`), four corner outputs (``spine`` 0.4.0; see
docs/models/spine.md, run 10). (``coarse_levels=True`` adds a spine-level channel
to tell T1 from C7 and L5 from the sacrum; its decoding measured no better than order on
held-out images. The coarse stage of ``spine`` 0.3.0 was trained with it (``--levels``)
and ships without it (``finalize --drop-levels``); 0.4.0 reuses 0.3.0's coarse weights;
see runs 5 and 6.)"""

REFINE_VARIANTS: dict[str, dict[str, object]] = {
    "vertebrae": {"refine_target": "vertebrae", "patch": 128},
    "landmarks": {"refine_target": "landmarks", "patch": 64},
}
"""``--refine``: one patch per vertebra (the default, :data:`SPINE_CONFIG`), or one 64 × 64
patch per corner, each read from its own output channel (``spine`` 0.1.0–0.3.0)."""

FLIP_PERM = np.arange(68).reshape(17, 4)[:, [1, 0, 3, 2]].ravel()
"""Corner order of a left-right mirrored spine: TL ↔ TR and BL ↔ BR of each vertebra
(training augmentation of the coarse stage)."""

CANVAS_WIDTH_FINE = 640
"""Training images are padded on the right to this fine width (every AASCE image is at
most 0.57 times as wide as it is high, i.e. 576 fine pixels); at inference
``StageConfig.min_width_px`` pads to the same canvas."""


_CASE = re.compile(r"^sunhl-1th-\d{2}-[A-Za-z]{3}-\d{4}-(\d+)_[A-Z]_AP")


def case_of(image_id: str) -> str:
    """The patient case of an AASCE film: films named ``…-162_A_AP``, ``…-162_B_AP`` (any
    date) are case ``"162"``; a name without a case number (``…-coronal3``) is its own case.

    The letters of one case continue across dates (``20_B`` … ``20_D`` on one day, ``20_E``
    on the next), so the case is the number alone."""
    m = _CASE.match(Path(image_id).stem)
    return m.group(1) if m else Path(image_id).stem


def grouped_folds(ids: list[str], k: int = 5, seed: int = 0) -> list[list[str]]:
    """``ids`` in ``k`` folds with every case (:func:`case_of`) in exactly one fold: the
    cases are shuffled with ``seed`` and dealt, largest first, to the fold with the fewest
    films so far (sizes stay within one case of each other). Each fold sorted."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, not {k}")
    cases: dict[str, list[str]] = {}
    for i in ids:
        cases.setdefault(case_of(i), []).append(i)
    if len(cases) < k:
        raise ValueError(f"{len(cases)} cases cannot fill {k} folds")
    names = sorted(cases)
    order = [names[j] for j in np.random.default_rng(seed).permutation(len(names))]
    order.sort(key=lambda c: -len(cases[c]))  # stable: shuffled within equal sizes
    folds: list[list[str]] = [[] for _ in range(k)]
    for c in order:
        min(folds, key=len).extend(cases[c])
    return [sorted(f) for f in folds]


_DATE = re.compile(r"^sunhl-1th-(\d{2})-([A-Za-z]{3})-(\d{4})-")

PERIODS = ("A", "B", "C")
"""The acquisition periods of the AASCE training films (from the date in the file name; no
patient case spans two): A = 10–25 Jan 2017, B = 02–09 Jan 2017, C = Jul–Dec 2016."""


def period_of(image_id: str) -> str:
    """The acquisition period (:data:`PERIODS`) of an AASCE film, from its file name."""
    m = _DATE.match(Path(image_id).stem)
    if m is None:
        raise ValueError(f"{image_id}: no acquisition date in the file name")
    day, month, year = int(m.group(1)), m.group(2), int(m.group(3))
    if year == 2017 and month == "Jan":
        return "A" if day >= 10 else "B"
    if year == 2016 and month in ("Jul", "Aug", "Sep", "Oct", "Nov", "Dec"):
        return "C"
    raise ValueError(f"{image_id}: acquired {day:02d}-{month}-{year}, outside the known periods")


def period_split(
    root: Path, test_period: str, val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[str], list[str], list[str], dict[str, str]]:
    """Leave one acquisition period out: ``(train, val, test, excluded)``. ``test`` holds the
    clean records of ``test_period``; the other periods' clean records are split by patient
    case (:func:`grouped_folds`) into ``train`` and a ``val`` share of about ``val_fraction``
    (progress log, calibration). Records with known defects are excluded with their reason."""
    from cephspine.io.datasets import AasceDataset

    if test_period not in PERIODS:
        raise ValueError(f"unknown period {test_period!r}; known: {', '.join(PERIODS)}")
    if not 0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must lie in (0, 0.5), not {val_fraction}")
    clean, excluded = [], {}
    for rec in AasceDataset(root):
        if rec.defects:
            excluded[rec.id] = "; ".join(d.message for d in rec.defects)
        else:
            clean.append(rec.id)
    test = sorted(i for i in clean if period_of(i) == test_period)
    pool = [i for i in clean if period_of(i) != test_period]
    val = grouped_folds(pool, k=max(2, int(round(1 / val_fraction))), seed=seed)[0]
    train = sorted(set(pool) - set(val))
    return train, val, test, excluded


def split_spine(root: Path, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str], dict[str, str]]:
    """Seeded train/validation split of the clean records and the excluded ones with reasons."""
    from cephspine.io.datasets import AasceDataset

    ds = AasceDataset(root)
    clean, excluded = [], {}
    for rec in ds:
        if rec.defects:
            excluded[rec.id] = "; ".join(d.message for d in rec.defects)
        else:
            clean.append(rec.id)
    rng = np.random.default_rng(seed)
    perm = [clean[i] for i in rng.permutation(len(clean))]
    n_val = int(round(len(perm) * val_fraction))
    return sorted(perm[n_val:]), sorted(perm[:n_val]), excluded


def build_spine_cache(root: Path, ids: list[str], cfg: StageConfig, cache_file: Path | None = None) -> CephCache:
    """Like :func:`cephspine.training.ceph.build_cache`, for AASCE records (no spacing:
    errors are measured in original pixels)."""
    from cephspine.io.datasets import AasceDataset

    key = cache_key(root, ids, cfg)
    cached = load_cached(cache_file, key)
    if cached is not None:
        return cached
    ds = AasceDataset(root)
    fine, coarse, xyf, xyo, fac, sizes = [], [], [], [], [], []
    for i in ids:
        rec = ds[i]
        rg = rec.radiograph
        f, _ = prepare(normalize_intensity(rg.pixels), (1.0, 1.0), cfg)
        pad = CANVAS_WIDTH_FINE - f.image.shape[-1]
        if pad < 0:
            raise ValueError(f"{rec.id}: wider than the training canvas ({f.image.shape[-1]} > {CANVAS_WIDTH_FINE})")
        img = F.pad(f.image, (0, pad))
        fine.append(img.half())
        coarse.append(F.avg_pool2d(img, cfg.coarse_pool))
        xyo.append(rec.landmarks)
        xyf.append(f.to_resampled(rec.landmarks))
        fac.append(f.factor_xy)
        sizes.append(f.size_hw)
    cache = CephCache(
        ids,
        fine,
        torch.cat(coarse),
        np.stack(xyf),
        np.stack(xyo),
        np.stack(fac),
        sizes,
        np.ones((len(ids), 2)),
        key,
        "px",
    )
    save_cached(cache_file, cache)
    return cache


def train_spine(
    data: Path, out: Path, *, epochs: int = 15, steps: int = 1000, threads: int | None = None, version: str = "0.1.0"
) -> Path:
    """Train both stages, calibrate and write a model directory ``out / "model"`` (resumable)."""
    from cephspine.training.finalize import finalize_spine

    if threads:
        torch.set_num_threads(threads)
    cfg = SPINE_CONFIG
    tr_ids, va_ids, excluded = split_spine(data)
    for name, why in sorted(excluded.items()):
        log.info("excluded %s: %s", name, why)
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps({"train": tr_ids, "val": va_ids, "excluded": excluded}, indent=1))
    times = train_both(
        build_spine_cache, data, out, cfg, tr_ids, va_ids, epochs=epochs, steps=steps, flip_perm=FLIP_PERM
    )
    info = {
        "train_ids": f"{len(tr_ids)} AASCE training images (seeded 80/20 split of the clean records)",
        "validation_ids": f"{len(va_ids)} images, never trained on: evaluation, confidence calibration, progress log",
        "excluded": f"{len(excluded)} records with known defects (listed in split.json with reasons)",
        "coarse_epochs": epochs,
        "refine_steps": steps,
        "threads": torch.get_num_threads(),
        **times,
    }
    finalize_spine(out, data, out / "model", va_ids, {"version": version, "training": info})
    return out / "model"


def load_reframed(path: Path) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """The per-film re-framed results ``benchmarks/spine_accuracy.py --reframe --save``
    wrote (keys ``setting/field``): the film ids and ``{setting: {field: array}}``."""
    z = np.load(path)
    results: dict[str, dict[str, np.ndarray]] = {}
    for key in z.files:
        if "/" in key:
            setting, field = key.split("/", 1)
            results.setdefault(setting, {})[field] = z[key]
    return [str(i) for i in z["ids"]], results


def framing_summary(results: Path) -> dict[str, dict[str, float]]:
    """Per re-framing setting: films, level-shifted share, SDR 2 mm, MRE and Cobb SMAPE from
    the per-film results (:func:`load_reframed`)."""
    from cephspine.metrics import smape

    out = {}
    for s, d in load_reframed(results)[1].items():
        e = d["err_mm"]
        out[s] = {
            "films": int(len(e)),
            "level_shifted_pct": float(100 * np.mean(d["shift"] != 0)),
            "sdr_2mm_pct": float(100 * np.mean(e <= 2)),
            "mre_mm": float(e.mean()),
            "cobb_smape_pct": float(smape(d["pred_deg"], d["true_deg"])),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """Stage-by-stage entry point (``coarse`` and ``refine`` can run side by side), then
    ``finalize`` evaluates, calibrates and writes the model directory."""
    import argparse

    ap = argparse.ArgumentParser(description="train the two-stage spine model")
    ap.add_argument("stage", choices=["coarse", "refine", "finalize"])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model-out", type=Path, default=None, help="finalize: model directory (default OUT/model)")
    ap.add_argument("--info", type=Path, default=None, help="finalize: JSON with training facts for the card")
    ap.add_argument(
        "--level-rules",
        type=Path,
        default=None,
        help="finalize: level rules (JSON from python -m cephspine.training.spine_levels --out): when a chain "
        "cannot be trusted",
    )
    ap.add_argument(
        "--card-extra", type=Path, default=None, help="finalize: JSON object merged into the card (e.g. status)"
    )
    ap.add_argument(
        "--framing",
        type=Path,
        default=None,
        help="finalize: re-framed held-out results (benchmarks/spine_accuracy.py --reframe --save) for the card",
    )
    ap.add_argument(
        "--hold-out-period",
        choices=PERIODS,
        default=None,
        help="leave this acquisition period out (period_split): train on the others, validate on a case-grouped "
        "share of them; the default is the seeded 80/20 split of all clean records",
    )
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start the stage from these weights (a model directory or a saved state dict)",
    )
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    ap.add_argument("--levels", action="store_true", help="coarse: train with the spine-level channel")
    ap.add_argument("--rotate", type=float, default=2.0, help="coarse only: maximum random rotation, degrees")
    ap.add_argument(
        "--scale",
        type=float,
        nargs=2,
        default=(0.9, 1.1),
        metavar=("LOW", "HIGH"),
        help="coarse only: random scale range (above 1 zooms out)",
    )
    ap.add_argument("--shift", type=float, default=10.0, help="coarse only: maximum random shift, coarse pixels")
    ap.add_argument(
        "--shift-y",
        type=float,
        default=None,
        help="coarse only: maximum random vertical shift, coarse pixels (default: --shift); a framing "
        "augmentation moves the field of view by whole vertebrae (about 13 coarse pixels each)",
    )
    ap.add_argument(
        "--refine-scale",
        type=float,
        nargs=2,
        default=(0.9, 1.1),
        metavar=("LOW", "HIGH"),
        help="refine only: random scale range of the vertebra patches (above 1 the vertebra looks smaller)",
    )
    ap.add_argument(
        "--refine",
        choices=sorted(REFINE_VARIANTS),
        default="vertebrae",
        help="refine stage: one patch per vertebra with its four corners (default), or one per corner "
        "(REFINE_VARIANTS); finalize takes this from the run folder's config.json",
    )
    ap.add_argument("--coarse", type=Path, default=None, help="finalize: coarse weights (default OUT/coarse_final.pt)")
    ap.add_argument(
        "--drop-levels", action="store_true", help="finalize: the coarse weights have a level channel; leave it out"
    )
    ap.add_argument(
        "--end-prior",
        action="store_true",
        help="finalize: decode with a prior on where T1 and L5 lie, fitted on the training split",
    )
    ap.add_argument(
        "--refine-flip",
        action="store_true",
        help="finalize: the vertebra refinement also runs on mirrored patches (averaged)",
    )
    args = ap.parse_args(argv)
    try:
        geometry = GeometricAugment(args.rotate, (args.scale[0], args.scale[1]), args.shift, args.shift_y)
        if not 0 < args.refine_scale[0] <= args.refine_scale[1]:
            raise ValueError(f"invalid --refine-scale {args.refine_scale}: need 0 < low <= high")
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = dataclasses.replace(SPINE_CONFIG, coarse_levels=True) if args.levels else SPINE_CONFIG
    cfg = dataclasses.replace(cfg, **REFINE_VARIANTS[args.refine])  # type: ignore[arg-type]
    test_ids: list[str] = []
    if args.hold_out_period:
        tr_ids, va_ids, test_ids, excluded = period_split(args.data, args.hold_out_period)
    else:
        tr_ids, va_ids, excluded = split_spine(args.data)
    if args.stage == "finalize":
        from cephspine.training.finalize import finalize_spine

        info = json.loads(args.info.read_text()) if args.info else {}
        extra: dict[str, Any] = {"version": args.version, "training": info}
        if args.level_rules:
            from cephspine.vertebrae import LevelRules

            levels = json.loads(args.level_rules.read_text())
            extra["levels"] = LevelRules.from_dict(levels).to_dict() | {
                k: v for k, v in levels.items() if k == "cross_fitted"
            }
        if args.card_extra:
            extra |= json.loads(args.card_extra.read_text())
        if args.framing:
            extra["framing"] = framing_summary(args.framing)
        finalize_spine(args.out, args.data, args.model_out or args.out / "model", va_ids,
                       extra, coarse_file=args.coarse,
                       drop_levels=args.drop_levels, end_prior=args.end_prior,
                       refine_flip=args.refine_flip)  # fmt: skip
        return
    for name, why in sorted(excluded.items()):
        log.info("excluded %s: %s", name, why)
    log.info("%d training, %d validation, %d excluded records", len(tr_ids), len(va_ids), len(excluded))
    args.out.mkdir(parents=True, exist_ok=True)
    split = {"train": tr_ids, "val": va_ids, "excluded": excluded}
    if args.hold_out_period:
        split |= {"held_out_period": args.hold_out_period, "test": test_ids}
    (args.out / "split.json").write_text(json.dumps(split, indent=1))
    t0 = time.time()
    run_stage(
        args.stage, build_spine_cache, args.data, args.out, cfg, tr_ids, va_ids, epochs=args.epochs, steps=args.steps,
        flip_perm=FLIP_PERM, init=args.init, lr=args.lr,
        geometry=geometry, refine_scale=(args.refine_scale[0], args.refine_scale[1]),
    )  # fmt: skip
    log.info("done in %.0fs", time.time() - t0)


if __name__ == "__main__":
    main()
