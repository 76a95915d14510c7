"""Out-of-fold evaluation of cross-validated ``ceph`` models (:mod:`cephspine.training.ceph_cv`).

Every image is predicted by the fold model that never saw it, as is and under each
perturbation of :mod:`cephspine.perturb`; the result (positions, errors, confidence
features, facing peaks, timings) is what the confidence calibration, the registration
and facing thresholds and the headline numbers are fitted and measured on.

    python -m cephspine.training.ceph_oof --runs runs/ceph_cv --data DATA --out runs/ceph_cv/oof.npz
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cephspine.anatomy import CEPH_LANDMARKS
from cephspine.perturb import PERTURBATIONS, perturb
from cephspine.pipeline import StageConfig
from cephspine.training.ceph_cv import ALL_IDS, cv_folds, run_ids

log = logging.getLogger(__name__)

SETTINGS = ("none", *PERTURBATIONS)


def load_run(runs: Path, run: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The coarse and refinement state dicts (float32) of ``run`` in the folder ``runs``
    (``{run}.pt`` packed by :func:`~cephspine.training.ceph_cv.pack`, or the two
    ``{run}_coarse.pt`` / ``{run}_refine.pt`` files)."""
    packed = runs / f"{run}.pt"
    if packed.exists():
        d = torch.load(packed, weights_only=True)
        parts = {"coarse": d["coarse"], "refine": d["refine"]}
    else:
        parts = {s: torch.load(runs / f"{run}_{s}.pt", weights_only=True) for s in ("coarse", "refine")}
    return tuple(
        {k: v.float() if v.is_floating_point() else v for k, v in parts[s].items()} for s in ("coarse", "refine")
    )  # type: ignore[return-value]


def fold_detector(
    runs: Path, run: str, folder: Path, card_extra: dict[str, Any] | None = None, template: Any = None
) -> Any:
    """A detector of ``run``'s weights without calibration (confidence = refine peak) and,
    without ``template``, without registration, for out-of-fold predictions; written to
    ``folder``."""
    from cephspine.detector import Detector
    from cephspine.training.export import write_model_dir

    coarse, refine = load_run(runs, run)
    cfg = StageConfig()
    card: dict[str, Any] = {
        "name": f"ceph-{run}",
        "version": "cv",
        "anatomy": "ceph",
        "landmarks": list(CEPH_LANDMARKS),
        "config": cfg.to_dict(),
        "architecture": "cross-validation fold model",
        "training_spacing_mm": 0.1,
        "detect_facing": True,
        **(card_extra or {}),
    }
    write_model_dir(folder, coarse, refine, card, template)
    return Detector.from_pretrained(folder, device="cpu", register="never" if template is None else "always")


def predict_setting(det: Any, data: Path, ids: Sequence[str], setting: str) -> dict[str, np.ndarray]:
    """Predictions of ``det`` on the images ``ids`` under the perturbation ``setting``."""
    import warnings

    from cephspine.io.datasets import IsbiDataset
    from cephspine.preprocess import normalize_intensity

    ds = IsbiDataset(data)
    out: dict[str, list[Any]] = {k: [] for k in ("xy", "truth", "spacing", "features", "facing", "mirrored", "seconds")}
    for n, i in enumerate(ids):
        rec = ds[i]
        rg = rec.radiograph
        assert rg.spacing is not None
        img = normalize_intensity(rg.pixels)
        p = perturb(setting, img, rec.landmarks, rg.spacing.row_mm, seed=int(i))
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = det.predict(p.image, spacing=p.spacing_mm)
        out["seconds"].append(time.perf_counter() - t)
        f = pred.meta["features"]
        out["xy"].append(pred.xy_px)
        out["truth"].append(p.xy)
        out["spacing"].append(p.spacing_mm)
        out["features"].append(np.stack([f["refine_peak"], f["coarse_peak"], f["shift_mm"]], 1))
        fc = pred.meta["facing"]
        out["facing"].append([fc["peak"], np.nan if fc["mirror_peak"] is None else fc["mirror_peak"]])
        out["mirrored"].append(pred.meta["mirrored"])
        if n == 0:
            log.info("%s %s %s: %.2fs", det.name, setting, i, out["seconds"][-1])
    arr: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in out.items()}
    arr["errors_mm"] = np.linalg.norm(arr["xy"] - arr["truth"], axis=-1) * arr["spacing"][:, None]
    return arr


def evaluate_folds(
    runs: Path, data: Path, out: Path, settings: Sequence[str] = SETTINGS, ids: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Predict every image with its out-of-fold model under every setting; stores and
    returns arrays keyed ``"{setting}/{field}"`` plus ``"ids"`` and ``"fold"``."""
    ids = ids or ALL_IDS
    ids = [i for i in ALL_IDS if i in set(ids)]
    folds = cv_folds(ids)  # the folds the runs were trained with (ceph_cv.run_ids on the same ids)
    fold_of = {i: k for k, f in enumerate(folds) for i in f}
    result: dict[str, np.ndarray] = {"ids": np.array(ids), "fold": np.array([fold_of[i] for i in ids])}
    parts: dict[str, dict[str, list[np.ndarray]]] = {s: {} for s in settings}
    order: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(len(folds)):
            held = [i for i in ids if fold_of[i] == k]
            if not held:
                continue
            det = fold_detector(runs, f"fold{k}", Path(tmp) / f"fold{k}")
            order += held
            for s in settings:
                t = time.time()
                r = predict_setting(det, data, held, s)
                for key, v in r.items():
                    parts[s].setdefault(key, []).append(v)
                e = r["errors_mm"]
                log.info(
                    "fold%d %-14s MRE %.3f mm SDR2 %.1f%% (%.0fs)",
                    k,
                    s,
                    e.mean(),
                    100 * (e <= 2).mean(),
                    time.time() - t,
                )
    pos = np.argsort([ids.index(i) for i in order])
    for s in settings:
        for key, chunks in parts[s].items():
            result[f"{s}/{key}"] = np.concatenate(chunks)[pos]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **result)  # type: ignore[arg-type]
    return result


def class_balanced_accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean over the classes present in ``true`` of the share predicted as that class, %."""
    return float(100.0 * np.mean([np.mean(pred[true == k] == k) for k in np.unique(true)]))


def measure_agreement(pred_xy: np.ndarray, true_xy: np.ndarray, spacing_mm: np.ndarray) -> dict[str, dict[str, float]]:
    """Per ISBI measure: mean absolute error of the measure from ``pred_xy`` against the one
    from ``true_xy`` (its unit), and the agreement of the anatomical types (SCR accuracy
    and class-balanced accuracy, %)."""
    from cephspine.geometry import CEPH_MEASURES, ceph_measures_batch, ceph_types
    from cephspine.metrics import scr

    sp = [float(s) for s in spacing_mm]
    pm, tm = ceph_measures_batch(pred_xy, spacing=sp), ceph_measures_batch(true_xy, spacing=sp)
    pt, tt = ceph_types(pm), ceph_types(tm)
    return {
        m: {
            "mae": float(np.abs(np.asarray(pm[m]) - np.asarray(tm[m])).mean()),
            "scr_pct": float(scr(pt[m], tt[m])),
            "balanced_pct": class_balanced_accuracy(np.asarray(pt[m]), np.asarray(tt[m])),
        }
        for m in CEPH_MEASURES
    }


def nested_confidence(
    oof: dict[str, np.ndarray], settings: Sequence[str], radius: float = 2.0
) -> dict[str, np.ndarray]:
    """Confidence of every out-of-fold landmark from a calibrator fitted on the *other*
    folds' out-of-fold predictions (all ``settings`` pooled): how a calibration fitted on
    out-of-fold predictions does on images it was not fitted on."""
    from cephspine.confidence import fit_calibrator

    fold = oof["fold"]
    conf = {s: np.zeros_like(oof[f"{s}/errors_mm"]) for s in settings}
    for k in np.unique(fold):
        tr = fold != k
        feats = np.concatenate([oof[f"{s}/features"][tr].reshape(-1, 3) for s in settings])
        errs = np.concatenate([oof[f"{s}/errors_mm"][tr].ravel() for s in settings])
        cal = fit_calibrator(feats, errs, radius, n_landmarks=len(CEPH_LANDMARKS))
        for s in settings:
            f = oof[f"{s}/features"][~tr]
            conf[s][~tr] = cal(f.reshape(-1, 3)).reshape(f.shape[:2])
    return conf


def summarize(
    oof: dict[str, np.ndarray], settings: Sequence[str] | None = None, conf: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Headline numbers of out-of-fold predictions: per setting the mean and s.d. over folds
    of MRE and SDR 2/2.5/3/4 mm, the nested-calibration gap, and for the unperturbed images
    per-landmark MRE and per-measure errors and type agreement. ``conf``: the
    :func:`nested_confidence` of ``settings``, when the caller has it already."""
    settings = list(settings or [k.split("/")[0] for k in oof if k.endswith("/errors_mm")])
    fold = oof["fold"]
    if conf is None:
        conf = nested_confidence(oof, settings)
    out: dict[str, Any] = {"n_images": len(oof["ids"]), "folds": int(len(np.unique(fold))), "settings": {}}
    for s in settings:
        e = oof[f"{s}/errors_mm"]
        per_fold = {
            "mre_mm": [float(e[fold == k].mean()) for k in np.unique(fold)],
            **{
                f"sdr_{r:g}mm_pct": [float(100 * (e[fold == k] <= r).mean()) for k in np.unique(fold)]
                for r in (2, 2.5, 3, 4)
            },
        }
        hit = e <= 2.0
        row: dict[str, Any] = {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                               for k, v in per_fold.items()}  # fmt: skip
        row["mean_confidence_pct"] = float(100 * conf[s].mean())
        row["within_2mm_pct"] = float(100 * hit.mean())
        row["calibration_gap_pts"] = abs(row["mean_confidence_pct"] - row["within_2mm_pct"])
        row["max_landmark_gap_pts"] = float(100 * np.abs(conf[s].mean(axis=0) - hit.mean(axis=0)).max())
        types = measure_agreement(oof[f"{s}/xy"], oof[f"{s}/truth"], oof[f"{s}/spacing"])
        row["scr_accuracy_mean_pct"] = float(np.mean([t["scr_pct"] for t in types.values()]))
        row["scr_balanced_mean_pct"] = float(np.mean([t["balanced_pct"] for t in types.values()]))
        if s == "none":
            row["per_landmark_mre_mm"] = {n: float(v) for n, v in zip(CEPH_LANDMARKS, e.mean(axis=0))}
            row["measures"] = types
            row["median_predict_s"] = float(np.median(oof[f"{s}/seconds"]))
        out["settings"][s] = row
    return out


def registration_check(runs: Path, data: Path, oof: dict[str, np.ndarray], threshold: float) -> dict[str, Any]:
    """Out-of-fold films (every setting) whose mean coarse peak is below ``threshold``,
    predicted again with ``register="always"`` by their fold model (template: the fold's
    first training image): how many there are and their MRE without and with registration."""
    from cephspine.training.finalize import make_template

    settings = [k.split("/")[0] for k in oof if k.endswith("/errors_mm")]
    cases = [(s, j) for s in settings for j in np.flatnonzero(oof[f"{s}/facing"][:, 0] < threshold)]
    before, after, used = [], [], 0
    ids = [str(i) for i in oof["ids"]]
    with tempfile.TemporaryDirectory() as tmp:
        for k in sorted({int(oof["fold"][j]) for _, j in cases}):
            train, _ = run_ids(f"fold{k}", ids)
            reg = {"template_image": train[0], "margin_mm": 25.0, "auto_below_mean_coarse_peak": 0.0}
            template = make_template(data, train[0], StageConfig())
            det = fold_detector(runs, f"fold{k}", Path(tmp) / f"fold{k}", {"registration": reg}, template)
            for s, j in cases:
                if int(oof["fold"][j]) != k:
                    continue
                r = predict_setting(det, data, [str(oof["ids"][j])], s)
                before.append(oof[f"{s}/errors_mm"][j].mean())
                after.append(r["errors_mm"][0].mean())
                used += 1
    return {
        "threshold": threshold,
        "n_films": used,
        "mre_unregistered_mm": float(np.mean(before)) if before else None,
        "mre_registered_mm": float(np.mean(after)) if after else None,
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="out-of-fold predictions of the cross-validated ceph models")
    ap.add_argument("--runs", type=Path, required=True, help="folder with fold0..fold4 weights")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help=".npz file")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--n-images", type=int, default=150, help="the first N images only (tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--registration-check",
        type=Path,
        default=None,
        help="also write JSON: the films below the unperturbed films' lowest mean coarse peak, registered vs not",
    )
    ap.add_argument("--skip-predict", action="store_true", help="reuse the predictions already in OUT")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    if args.skip_predict:
        oof = dict(np.load(args.out))
    else:
        oof = evaluate_folds(args.runs, args.data, args.out, args.settings.split(","), ALL_IDS[: args.n_images])
    if args.registration_check:
        threshold = float(oof["none/facing"][:, 0].min())
        check = registration_check(args.runs, args.data, oof, threshold)
        args.registration_check.write_text(json.dumps(check, indent=1) + "\n")
    log.info("done in %.0fs: %s", time.time() - t0, json.dumps(str(args.out)))


if __name__ == "__main__":
    main()
