"""Turn trained stages into a shippable model directory: evaluate on images the networks did
not train on (a held-out split, or out-of-fold predictions of a cross-validation), calibrate
the confidence there, and write the card."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cephspine._csvcells import write_frame
from cephspine.anatomy import CEPH_LANDMARKS
from cephspine.confidence import calibration_table, fit_calibrator
from cephspine.io.datasets import ISBI_SPACING
from cephspine.pipeline import StageConfig, fine_to_coarse
from cephspine.registration import Template
from cephspine.training.export import write_model_dir

log = logging.getLogger(__name__)

CITATIONS = [
    "Reddy et al., Anatomical Landmark Detection using Deep Appearance-Context Network (seed method).",
    "Wang et al., Evaluation and comparison of anatomical landmark detection methods for cephalometric "
    "X-ray images: a grand challenge, IEEE TMI 34(9), 2015.",
    "Wang et al., A benchmark for comparison of dental radiography analysis algorithms, "
    "Medical Image Analysis 31, 2016.",
]


def cv_calibration(features: np.ndarray, errors: np.ndarray, folds: int = 5, radius: float = 2.0) -> dict[str, Any]:
    """Out-of-fold confidences (images split into folds) and their reliability.

    Args:
        features: ``(M, N, 3)``; errors: ``(M, N)``.
    """
    m = len(errors)
    folds = min(folds, m)  # never a fold without training images
    if folds < 2:
        log.warning("%d held-out image(s): too few to cross-validate the confidence", m)
        return {
            "radius_mm": radius,
            "folds": 0,
            "brier": None,
            "brier_constant_baseline": None,
            "reliability": [],
            "out_of_fold": None,
        }
    oof = np.zeros_like(errors)
    for k in range(folds):
        test = np.arange(m) % folds == k
        cal = fit_calibrator(features[~test].reshape(-1, 3), errors[~test].ravel(), radius)
        oof[test] = cal(features[test].reshape(-1, 3)).reshape(errors[test].shape)
    hit = errors <= radius
    brier = float(np.mean((oof - hit) ** 2))
    base = float(np.mean((hit.mean() - hit) ** 2))
    return {
        "radius_mm": radius,
        "folds": folds,
        "brier": brier,
        "brier_constant_baseline": base,
        "reliability": calibration_table(oof.ravel(), hit.ravel()),
        "out_of_fold": oof,
    }


def make_template(data: Path, image_id: str, cfg: StageConfig, margin_mm: float = 25.0) -> Template:
    """Template for registration: one training image on the coarse grid, with a mask
    covering its landmarks plus ``margin_mm``."""
    from cephspine.training.ceph import build_cache

    c = build_cache(data, [image_id], cfg)
    img = c.coarse[0, 0].numpy().astype(np.float32)
    xy = fine_to_coarse(c.xy_fine[0], cfg.coarse_pool)
    m = margin_mm / cfg.coarse_mm
    lo = np.maximum(np.floor(xy.min(0) - m).astype(int), 0)
    hi = np.ceil(xy.max(0) + m).astype(int)
    mask = np.zeros(img.shape, dtype=bool)
    mask[lo[1] : hi[1], lo[0] : hi[0]] = True
    return Template(img, mask)


def ceph_card(cfg: StageConfig, version: str) -> dict[str, Any]:
    """The fields every ``ceph`` card starts with (identity, configuration, citations)."""
    return {
        "name": "ceph",
        "version": version,
        "anatomy": "ceph",
        "landmarks": list(CEPH_LANDMARKS),
        "config": cfg.to_dict(),
        "architecture": (
            "coarse: CBAM U-Net (local appearance) x 7-layer dilated global-context net, "
            f"{cfg.coarse_mm:g} mm/px; refine: CBAM U-Net on {cfg.patch}x{cfg.patch} patches at {cfg.fine_mm:g} mm/px"
        ),
        "training_spacing_mm": ISBI_SPACING.row_mm,
        "detect_facing": True,
        "citations": CITATIONS,
        "license_note": "Research use only: trained on the ISBI 2015 challenge training images.",
    }


def finalize_ceph(
    run: Path, data: Path, out: Path, val_ids: list[str], card_extra: dict[str, Any], template_id: str = "001"
) -> dict[str, Any]:
    """Evaluate ``run``'s final stages on ``val_ids``, calibrate, and write ``out``."""
    from cephspine.detector import Detector
    from cephspine.evaluation import evaluate_ceph

    card_extra = dict(card_extra)
    cfg = StageConfig.from_dict(json.loads((run / "config.json").read_text()))
    coarse = torch.load(run / "coarse_final.pt", weights_only=True)
    refine = torch.load(run / "refine_final.pt", weights_only=True)
    card = ceph_card(cfg, card_extra.pop("version", "0.1.0"))
    card.update(card_extra)
    margin_mm = 25.0
    template = make_template(data, template_id, cfg, margin_mm)
    card["registration"] = {"template_image": template_id, "margin_mm": margin_mm, "auto_below_mean_coarse_peak": 0.0}
    write_model_dir(out, coarse, refine, card, template)  # uncalibrated first, to evaluate
    det = Detector.from_pretrained(out, device="cpu", register="never")
    ev = evaluate_ceph(det, data, ids=val_ids)
    cv = cv_calibration(ev.features, ev.errors_mm)
    cal = fit_calibrator(ev.features.reshape(-1, 3), ev.errors_mm.ravel(), 2.0)
    e = ev.errors_mm
    card["confidence"] = cal.to_dict() | {
        "meaning": "probability that the landmark is within 2 mm of the truth (mean of two doctors)",
        "cv_brier": cv["brier"],
        "cv_brier_constant_baseline": cv["brier_constant_baseline"],
        "cv_reliability": cv["reliability"],
    }
    card["metrics"] = {
        "data": f"ISBI 2015 training images {val_ids[0]}-{val_ids[-1]} (held out, never trained on)",
        "truth": "mean of senior and junior doctors",
        "register": (
            "never (the default 'auto' registers none of these images: its threshold is their lowest mean coarse peak)"
        ),
        "n_images": len(val_ids),
        "mre_mm": float(e.mean()),
        "sd_mm": float(e.std()),
        **{f"sdr_{r:g}mm_pct": float(100 * (e <= r).mean()) for r in (2, 2.5, 3, 4)},
        "per_landmark_mre_mm": {n: float(v) for n, v in zip(CEPH_LANDMARKS, e.mean(axis=0))},
        "median_predict_s": float(np.median(ev.seconds)),
        "eval_machine": (
            f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        ),
    }
    # registration on demand below the lowest mean coarse peak seen on held-out images
    peaks = ev.features[:, :, 1].mean(axis=1)
    card["registration"]["auto_below_mean_coarse_peak"] = float(peaks.min())
    write_model_dir(out, coarse, refine, card, template)
    write_frame(ev.per_image(), run / "val_predictions.csv", "validation predictions")
    log.info("val MRE %.3f mm, SDR2 %.1f%%", e.mean(), 100 * (e <= 2).mean())
    return card


SPINE_CITATIONS = [
    "Reddy et al., Anatomical Landmark Detection using Deep Appearance-Context Network (seed method).",
    "Wu et al., Automatic landmark estimation for adolescent idiopathic scoliosis assessment using BoostNet, "
    "MICCAI 2017 (AASCE 2019 / SpineWeb dataset 16).",
]


def spine_end_prior(data: Path, val_ids: list[str]) -> tuple[float, float, float, float]:
    """End prior (:func:`cephspine.vertebrae.fit_end_prior`) of the clean AASCE records of
    ``data`` that are not in ``val_ids``."""
    from cephspine.io.datasets import AasceDataset
    from cephspine.vertebrae import fit_end_prior

    held_out = set(val_ids)
    corners, heights, no_size = [], [], []
    for rec in AasceDataset(data):
        if rec.defects or rec.id in held_out:
            continue
        if rec.image_shape is None:  # unreadable image header: no height to relate to
            no_size.append(rec.id)
            continue
        corners.append(rec.landmarks)
        heights.append(rec.image_shape[0])
    if no_size:
        log.warning("end prior: %d record(s) without a readable image size left out: %s", len(no_size), no_size)
    if len(corners) < 2:
        raise ValueError(f"{data}: {len(corners)} clean training record(s) with an image size; the end prior needs 2")
    prior = fit_end_prior(np.stack(corners), np.array(heights))
    log.info("end prior from %d training records: %s", len(corners), prior)
    return prior


def finalize_spine(
    run: Path,
    data: Path,
    out: Path,
    val_ids: list[str],
    card_extra: dict[str, Any],
    radius_mm: float = 3.0,
    coarse_file: Path | None = None,
    drop_levels: bool = False,
    end_prior: bool = False,
    refine_flip: bool = False,
) -> dict[str, Any]:
    """Evaluate ``run``'s spine stages on ``val_ids``, calibrate the confidence to
    P(error ≤ ``radius_mm`` under the L4–L5 = 35 mm scale), and write ``out``.

    ``coarse_file``: the coarse weights (default ``run/coarse_final.pt``), e.g. from another
    run; ``drop_levels``: they were trained with the spine-level channel, which the model
    written here leaves out (:func:`cephspine.vertebrae.drop_level_channel`); ``end_prior``:
    the model decodes with an end prior fitted on the training split's records (the clean
    records of ``data`` not in ``val_ids``, :func:`cephspine.vertebrae.fit_end_prior`);
    ``refine_flip``: the refinement also runs on the mirrored patches
    (:attr:`~cephspine.pipeline.StageConfig.refine_flip`).
    """
    from cephspine.anatomy import SPINE_LANDMARKS
    from cephspine.detector import Detector
    from cephspine.evaluation import evaluate_spine

    card_extra = dict(card_extra)
    cfg = StageConfig.from_dict(json.loads((run / "config.json").read_text()))
    height = cfg.fine_height_px
    if not height:
        raise ValueError("a spine model resamples to a fixed height: config.fine_height_px is required")
    if cfg.min_width_px is None:  # runs from before the field existed: the training canvas
        from cephspine.training.spine import CANVAS_WIDTH_FINE

        cfg = dataclasses.replace(cfg, min_width_px=CANVAS_WIDTH_FINE)
    if end_prior:
        cfg = dataclasses.replace(cfg, end_prior=spine_end_prior(data, val_ids))
    if refine_flip:
        cfg = dataclasses.replace(cfg, refine_flip=True)
    coarse = torch.load(coarse_file or run / "coarse_final.pt", weights_only=True)
    if drop_levels:
        from cephspine.vertebrae import drop_level_channel

        coarse = drop_level_channel(coarse)
    refine = torch.load(run / "refine_final.pt", weights_only=True)
    n_out = len(refine["appearance.head.bias"])
    if n_out != cfg.refine_outputs:
        raise ValueError(
            f"{run / 'refine_final.pt'}: the refinement net has {n_out} outputs but {run / 'config.json'} "
            f"describes {cfg.refine_outputs} (refine_target {cfg.refine_target!r}); the config was last written "
            "by a stage run with other settings: run the refine stage's settings again, or use separate run folders"
        )
    card: dict[str, Any] = {
        "name": "spine",
        "version": card_extra.pop("version", "0.1.0"),
        "anatomy": "spine",
        "landmarks": list(SPINE_LANDMARKS),
        "config": cfg.to_dict(),
        "architecture": (
            (
                "coarse: vertebra centres and corner offsets, CBAM U-Net (local appearance) with its "
                "centre heatmap multiplied by a 7-layer dilated global-context net with "
                if cfg.coarse_target == "vertebrae"
                else "coarse: CBAM U-Net (local appearance) x 7-layer dilated global-context net with "
            )
            + f"{tuple(cfg.context_kernel)} kernels, image resampled to {height // cfg.coarse_pool} px high; "
            f"refine: CBAM U-Net on {cfg.patch}x{cfg.patch} patches of the image resampled to {height} px high"
            + (
                ", one per vertebra rotated to its coarse endplates, four corner outputs"
                if cfg.refine_target == "vertebrae"
                else ", one per corner"
            )
        ),
        "detect_facing": False,
        "citations": SPINE_CITATIONS,
        "license_note": "Research use only: trained on the AASCE 2019 / SpineWeb dataset 16 training images.",
    }
    card.update(card_extra)
    write_model_dir(out, coarse, refine, card)
    det = Detector.from_pretrained(out, device="cpu")
    ev = evaluate_spine(det, data, ids=val_ids)
    cv = cv_calibration(ev.features, ev.errors_mm, radius=radius_mm)
    cal = fit_calibrator(ev.features.reshape(-1, 3), ev.errors_mm.ravel(), radius_mm)
    card["confidence"] = cal.to_dict() | {
        "meaning": f"probability that the corner is within {radius_mm:g} mm of the truth (L4-L5 = 35 mm scale)",
        "cv_brier": cv["brier"],
        "cv_brier_constant_baseline": cv["brier_constant_baseline"],
        "cv_reliability": cv["reliability"],
    }
    s = ev.summary()
    card["metrics"] = {
        "data": f"AASCE training images, {len(val_ids)} held out (seeded split, never trained on)",
        "truth": "dataset landmarks and reference Cobb angles (angles.csv)",
        "n_images": len(val_ids),
        "mre_mm": s["mre_mm"],
        "sd_mm": s["sd_mm"],
        "mre_px": s["mre_px"],
        **{k: v for k, v in s.items() if k.startswith("sdr_")},
        "cobb_smape_pct": s["cobb_smape_pct"],
        "mm_convention": "35 mm between the centres of L4 and L5 (true corners), per image",
        "per_landmark_mre_mm": {n: float(v) for n, v in zip(SPINE_LANDMARKS, ev.errors_mm.mean(axis=0))},
        "median_predict_s": float(np.median(ev.seconds)),
    }
    if "framing" in card:
        card["metrics"]["framing"] = card.pop("framing")
    write_model_dir(out, coarse, refine, card)
    log.info("spine val %s", {k: round(v, 3) for k, v in s.items()})
    return card


PORION_NOTE = (
    "Porion is anatomical porion, as annotated in ISBI 2015 (the top of the external auditory meatus). Films "
    "annotated with machine porion (the top of the ear rod's ring) differ there by several millimetres, and so does "
    "any measure through the Frankfort plane (porion-orbitale; of the eight ISBI measures, ODI and APDI)."
)


def finalize_ceph_cv(
    runs: Path,
    data: Path,
    out: Path,
    oof_file: Path,
    version: str,
    *,
    template_id: str = "001",
    facing_margin: float = 0.1,
    card_extra: dict[str, Any] | None = None,
    registration_check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Package the model trained on all images (``runs/final*``) with everything fitted
    and measured on out-of-fold predictions (``oof_file``, :mod:`cephspine.training.ceph_oof`).

    - confidence: a calibrator fitted on all out-of-fold landmarks, unperturbed and
      perturbed pooled; its reliability is reported from the nested fit (each fold scored
      by a calibrator fitted on the other folds);
    - facing: the mirror image runs only when the first coarse pass's mean peak is below
      the highest mean peak any out-of-fold image reached *mirrored* plus ``facing_margin``;
    - ``register="auto"``: below the lowest mean coarse peak of all out-of-fold predictions,
      unperturbed and perturbed (card ``registration``), i.e. only on films less typical
      than any film of the evaluation; ``registration_check``
      (:func:`~cephspine.training.ceph_oof.registration_check`) records whether
      registration helped the films below the unperturbed films' lowest peak;
    - metrics: the cross-validation means (± s.d. over folds), per landmark, per measure,
      and per perturbation.
    """
    from cephspine.training.ceph_oof import load_run, nested_confidence, summarize

    oof = dict(np.load(oof_file))
    settings = [k.split("/")[0] for k in oof if k.endswith("/errors_mm")]
    conf = nested_confidence(oof, settings)
    summary = summarize(oof, settings, conf)
    coarse, refine = load_run(runs, "final")
    cfg = StageConfig()
    feats = np.concatenate([oof[f"{s}/features"].reshape(-1, 3) for s in settings])
    errs = np.concatenate([oof[f"{s}/errors_mm"].ravel() for s in settings])
    cal = fit_calibrator(feats, errs, 2.0, n_landmarks=len(CEPH_LANDMARKS))
    all_conf = np.concatenate([conf[s].ravel() for s in settings])
    hit = errs <= 2.0
    brier = float(np.mean((all_conf - hit) ** 2))
    mirror_peaks = np.concatenate([oof[f"{s}/facing"][:, 1] for s in settings])
    first_peaks = np.concatenate([oof[f"{s}/facing"][:, 0] for s in settings])
    skip_at = float(np.nanmax(mirror_peaks) + facing_margin)
    clean_peaks = oof["none/facing"][:, 0]
    clean = summary["settings"]["none"]
    final_info = _run_info(runs, "final")
    card = ceph_card(cfg, version)
    card["facing"] = {
        "skip_mirror_at_mean_coarse_peak": skip_at,
        "fitted_on": (
            f"highest mean coarse peak of the mirrored image over {len(mirror_peaks)} out-of-fold predictions "
            f"(unperturbed and perturbed) {np.nanmax(mirror_peaks):.3f}, plus {facing_margin:g}; "
            f"{100 * np.mean(first_peaks >= skip_at):.1f} % of them skip the mirror pass; peaks of the fold "
            "models, applied to the final model"
        ),
    }
    met = {True: "met", False: "not met"}
    card["notes"] = [
        PORION_NOTE,
        "Targets for the cross-validated means: MRE <= 1.05 mm "
        f"({clean['mre_mm']['mean']:.3f} mm, {met[clean['mre_mm']['mean'] <= 1.05]}), SDR 2 mm >= 88 % "
        f"({clean['sdr_2mm_pct']['mean']:.1f} %, {met[clean['sdr_2mm_pct']['mean'] >= 88]}), SCR accuracy >= 86 % "
        f"({clean['scr_accuracy_mean_pct']:.1f} %, {met[clean['scr_accuracy_mean_pct'] >= 86]}).",
    ]
    margin_mm = 25.0
    template = make_template(data, template_id, cfg, margin_mm)
    card["registration"] = {
        "template_image": template_id,
        "margin_mm": margin_mm,
        "auto_below_mean_coarse_peak": float(first_peaks.min()),
        "fitted_on": (
            f"the lowest mean coarse peak of the {len(first_peaks)} out-of-fold predictions (fold models), "
            f"unperturbed and perturbed; the unperturbed films' lowest is {clean_peaks.min():.3f}"
        ),
    }
    if registration_check:
        rc = registration_check
        card["registration"]["check"] = rc
        card["registration"]["fitted_on"] += (
            f"; the {rc['n_films']} out-of-fold films below {rc['threshold']:.3f}, registered, scored MRE "
            f"{rc['mre_registered_mm']:.3f} mm against {rc['mre_unregistered_mm']:.3f} mm unregistered"
        )
    card["confidence"] = cal.to_dict() | {
        "meaning": "probability that the landmark is within 2 mm of the truth (mean of two doctors)",
        "fitted_on": f"{len(errs)} out-of-fold landmarks ({len(settings)} settings: unperturbed and perturbed)",
        "cv_brier": brier,
        "cv_brier_constant_baseline": float(np.mean((hit.mean() - hit) ** 2)),
        "cv_reliability": calibration_table(conf["none"].ravel(), oof["none/errors_mm"].ravel() <= 2.0),
        "cv_gap_pts": {s: summary["settings"][s]["calibration_gap_pts"] for s in settings},
        "cv_max_landmark_gap_pts": summary["settings"]["none"]["max_landmark_gap_pts"],
    }
    card["training"] = {
        "protocol": (
            f"{summary['folds']}-fold cross-validation over the {summary['n_images']} ISBI 2015 training images "
            "(folds: numpy default_rng(2015).permutation, cut into fifths; cephspine.training.ceph_cv.cv_folds), "
            "then the shipped model on all 150"
        ),
        "augmentation": "broad: " + json.dumps(asdict_broad()),
        **{
            f"{st}_final": f"{i['steps']} steps x batch {i['batch']} in {i['seconds']:.0f} s on {i['device']}"
            for st, i in final_info.items()
        },
        **(card_extra or {}),
    }
    card["metrics"] = {
        "data": f"ISBI 2015 training images 001-150, {summary['folds']}-fold cross-validation (out of fold)",
        "truth": "mean of senior and junior doctors",
        "register": "never (out-of-fold predictions)",
        "n_images": summary["n_images"],
        "mre_mm": clean["mre_mm"]["mean"],
        "sd_mm": float(oof["none/errors_mm"].std()),
        **{k: v["mean"] for k, v in clean.items() if k.startswith("sdr_")},
        "fold_sd": {k: v["sd"] for k, v in clean.items() if k.startswith(("sdr_", "mre_"))},
        "per_landmark_mre_mm": clean["per_landmark_mre_mm"],
        "scr_accuracy_mean_pct": clean["scr_accuracy_mean_pct"],
        "scr_balanced_mean_pct": clean["scr_balanced_mean_pct"],
        "measures": clean["measures"],
        "perturbed": {
            s: {
                "mre_mm": r["mre_mm"]["mean"],
                "sdr_2mm_pct": r["sdr_2mm_pct"]["mean"],
                "calibration_gap_pts": r["calibration_gap_pts"],
                "scr_accuracy_mean_pct": r["scr_accuracy_mean_pct"],
            }
            for s, r in summary["settings"].items()
            if s != "none"
        },
    }
    write_model_dir(out, coarse, refine, card, template)
    log.info("ceph %s packaged: CV MRE %.3f mm", version, clean["mre_mm"]["mean"])
    return card


def _run_info(runs: Path, run: str) -> dict[str, dict[str, Any]]:
    """What each stage of ``run`` ran (steps, seconds, device), by stage: from the packed
    ``{run}.pt`` or, for unpacked runs, the last entries of ``infos.jsonl``."""
    packed = runs / f"{run}.pt"
    if packed.exists():
        infos = torch.load(packed, weights_only=True).get("info", [])
    elif (runs / "infos.jsonl").exists():
        infos = [json.loads(x) for x in (runs / "infos.jsonl").read_text().splitlines()]
    else:
        infos = []
    return {i["stage"]: i for i in infos if i.get("run") == run}


def asdict_broad() -> dict[str, Any]:
    """The broad augmentation's settings (for the card)."""
    from cephspine.training.augment import BroadAugment

    return dataclasses.asdict(BroadAugment())
