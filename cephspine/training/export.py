"""Package trained stages as a model directory: fp16 safetensors + card.json + MODEL_CARD.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from cephspine.registration import Template
from cephspine.registry import CARD_FILE, TEMPLATE_FILE, WEIGHTS_FILE, experimental_status
from cephspine.vertebrae import END_PRIOR_WEIGHT


def state_to_tensors(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as fp16 (the library casts them back), others unchanged."""
    return {prefix + k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def write_model_dir(
    out: Path,
    coarse_state: dict[str, torch.Tensor],
    refine_state: dict[str, torch.Tensor],
    card: dict[str, Any],
    template: Template | None = None,
) -> Path:
    """Write ``model.safetensors``, ``card.json`` (and ``template.npz``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = state_to_tensors("coarse.", coarse_state) | state_to_tensors("refine.", refine_state)
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"name": str(card["name"]), "version": str(card["version"])})
    tmp.replace(out / WEIGHTS_FILE)
    (out / WEIGHTS_FILE).chmod(0o644)
    if template is not None:
        with open(out / (TEMPLATE_FILE + ".tmp"), "wb") as fh:
            np.savez_compressed(fh, image=template.image.astype(np.float16), mask=template.mask)
        (out / (TEMPLATE_FILE + ".tmp")).replace(out / TEMPLATE_FILE)
    (out / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(render_model_card(card), encoding="utf-8")
    return out


def render_model_card(card: dict[str, Any]) -> str:
    """Human-readable ``MODEL_CARD.md`` from a card dict (everything in it is measured)."""
    cfg = card["config"]
    lines = [
        f"# Model card: `{card['name']}` {card['version']}",
        "",
        f"**Landmarks**: {len(card['landmarks'])} ({card['anatomy']}), in this order: "
        + ", ".join(card["landmarks"])
        + ".",
        "",
    ]
    note = experimental_status(card)
    if note is not None:
        lines += [
            f"> **Experimental.** {note[:1].upper() + note[1:]}. Loading it issues an "
            "`ExperimentalModelWarning`, and every prediction carries the same note in its warnings.",
            "",
        ]
    if cfg.get("fine_height_px"):  # spacing-free models: grids by image height
        coarse_grid = f"{cfg['fine_height_px'] // cfg['coarse_pool']} px high"
        fine_grid = f"of the image resampled to {cfg['fine_height_px']} px high"
    else:
        coarse_grid = f"{cfg['fine_mm'] * cfg['coarse_pool']:g} mm/px"
        fine_grid = f"at {cfg['fine_mm']:g} mm/px"
    lines += [
        "## Architecture",
        "",
        card["architecture"] + ".",
        "",
        f"- Coarse grid {coarse_grid}; U-Net base {cfg['coarse_base']} filters, "
        f"depth {cfg['coarse_depth']}, CBAM at every level; global context {cfg['context_width']} filters, "
        f"kernel {tuple(cfg['context_kernel'])}, 7 dilated layers on a grid {cfg['context_stride']}x coarser.",
        f"- Refinement: {cfg['patch']}x{cfg['patch']} patches {fine_grid}"
        + (
            f", one per vertebra (centred on its coarse corners, rotated so its endplates are level, vertebrae "
            f"wider than {cfg['refine_max_width_px']:g} px scaled down to that width), four corner outputs"
            if cfg.get("refine_target") == "vertebrae"
            else ", one per landmark"
        )
        + f"; U-Net base {cfg['refine_base']}, depth {cfg['refine_depth']}, CBAM at every level.",
        (
            f"- Coarse stage: one class-agnostic heatmap of vertebra centres (Gaussian, sigma "
            f"{cfg.get('coarse_sigma_px') or cfg['sigma_px']:g} px, focal loss) and the offsets from each centre "
            "to its four corners (L1 loss); the strongest separate peaks, sorted top to bottom, are the "
            "vertebrae"
            + (
                " (the first and the last chosen by peak strength and by where T1 and L5 lie in the training "
                f"images, weight {cfg.get('end_prior_weight', END_PRIOR_WEIGHT):g})"
                if cfg.get("end_prior")
                else ""
            )
            + ". Refinement: Gaussian heatmaps, sigma "
            f"{cfg['sigma_px']:g} px, cross-entropy between a spatial softmax and the Gaussian normalised to sum 1"
            + (
                ", averaged at inference over each patch and its mirror image (corners swapped)."
                if cfg.get("refine_flip")
                else "."
            )
            if cfg.get("coarse_target") == "vertebrae"
            else f"- Targets: Gaussian heatmaps, sigma {cfg['sigma_px']:g} px of each stage's grid"
            + (f" ({cfg['coarse_sigma_px']:g} px on the coarse grid)" if cfg.get("coarse_sigma_px") else "")
            + ". Coarse stage: peak 1, MSE loss. Refinement: cross-entropy between a spatial softmax and the "
            "Gaussian normalised to sum 1."
        ),
        "- Weights: fp16 safetensors (cast to float32 on load).",
    ]
    if "registration" in card:
        r = card["registration"]
        lines += [
            f"- Registration template: training image {r['template_image']} on the coarse grid, mask = "
            f"landmarks + {r['margin_mm']:g} mm; affine, Mattes mutual information (SimpleITK). "
            f'Default `register="auto"` registers only when the mean coarse heatmap peak is below '
            f"{r['auto_below_mean_coarse_peak']:.3f} ("
            + r.get("fitted_on", "the lowest seen on the held-out images")
            + ").",
        ]
    if "facing" in card:
        f = card["facing"]
        lines += [
            "- Facing: the coarse stage runs on the mirror image only when its first pass's mean heatmap peak is "
            f"below {f['skip_mirror_at_mean_coarse_peak']:.3f} ({f['fitted_on']}); the stronger orientation wins.",
        ]
    if "training" in card:
        t = card["training"]
        lines += ["", "## Training", ""] + [f"- {k.replace('_', ' ')}: {v}" for k, v in t.items()]
    if "metrics" in card:
        m = card["metrics"]
        columns = [("MRE (mm)", f"{m['mre_mm']:.3f}"), ("SD (mm)", f"{m['sd_mm']:.3f}")]
        if "mre_px" in m:
            columns.append(("MRE (px)", f"{m['mre_px']:.1f}"))
        sdr = sorted((float(k[4:-6]), k) for k in m if k.startswith("sdr_") and k.endswith("mm_pct"))
        columns += [(f"SDR {r:g} mm", f"{m[k]:.2f} %") for r, k in sdr]
        if "cobb_smape_pct" in m:
            columns.append(("Cobb SMAPE", f"{m['cobb_smape_pct']:.2f} %"))
        cv_sd = m.get("fold_sd", {})
        if cv_sd:  # cross-validated: mean ± s.d. over folds
            columns = [
                (h, v + (f" ± {cv_sd[k]:.3f}" if k == "mre_mm" else f" ± {cv_sd[k]:.2f}" if k in cv_sd else ""))
                for (h, v), k in zip(columns, ["mre_mm", "sd_mm", *[k for _, k in sdr]])
            ]
        lines += [
            "",
            "## Accuracy (cross-validated, out of fold)" if cv_sd else "## Accuracy (held-out)",
            "",
            f"Data: {m['data']}; truth: {m['truth']}; {m['n_images']} images"
            + (f"; registration: {m['register']}." if "register" in m else ".")
            + (f" Millimetres: {m['mm_convention']}." if "mm_convention" in m else ""),
            "",
            "| " + " | ".join(h for h, _ in columns) + " |",
            "|" + "---|" * len(columns),
            "| " + " | ".join(v for _, v in columns) + " |",
            "",
            "Per-landmark MRE (mm):",
            "",
            "| landmark | MRE (mm) |",
            "|---|---|",
        ] + [f"| {k} | {v:.2f} |" for k, v in m["per_landmark_mre_mm"].items()]
        if "measures" in m:
            lines += [
                "",
                "Measures from the predicted landmarks against the same measures from the truth "
                f"(SCR accuracy averaged over the measures: {m['scr_accuracy_mean_pct']:.1f} %, "
                f"class-balanced {m['scr_balanced_mean_pct']:.1f} %):",
                "",
                "| measure | mean absolute error | SCR accuracy | class-balanced |",
                "|---|---|---|---|",
            ] + [
                f"| {k} | {v['mae']:.3g} | {v['scr_pct']:.1f} % | {v['balanced_pct']:.1f} % |"
                for k, v in m["measures"].items()
            ]
        if "perturbed" in m:
            gaps = card.get("confidence", {}).get("cv_gap_pts", {})
            lines += [
                "",
                "Perturbed copies of the held-out images (`cephspine.perturb`): kinds of change other sites' "
                "films show, of the same kinds as the training augmentation, so this measures robustness to "
                "them, not accuracy at another site:",
                "",
                "| setting | MRE (mm) | SDR 2 mm | SCR accuracy | calibration gap (points) |",
                "|---|---|---|---|---|",
                f"| none | {m['mre_mm']:.3f} | {m['sdr_2mm_pct']:.2f} % | {m['scr_accuracy_mean_pct']:.1f} % "
                f"| {gaps.get('none', float('nan')):.1f} |",
            ] + [
                f"| {k} | {v['mre_mm']:.3f} | {v['sdr_2mm_pct']:.2f} % | {v['scr_accuracy_mean_pct']:.1f} % "
                f"| {v['calibration_gap_pts']:.1f} |"
                for k, v in m["perturbed"].items()
            ]
        if "framing" in m:
            lines += [
                "",
                "The held-out films re-framed (`benchmarks/spine_accuracy.py --reframe`: field of view moved by one "
                "or two vertebra heights, zoomed out, content scaled); level-shifted = the predicted chain fits the "
                "truth better shifted by one or more vertebrae:",
                "",
                "| setting | level-shifted | SDR 2 mm | MRE (mm) | Cobb SMAPE |",
                "|---|---|---|---|---|",
            ] + [
                f"| {k} | {v['level_shifted_pct']:.1f} % | {v['sdr_2mm_pct']:.1f} % | {v['mre_mm']:.2f} "
                f"| {v['cobb_smape_pct']:.2f} % |"
                for k, v in m["framing"].items()
            ]
    if "levels" in card:
        lv = card["levels"]
        ratio = lv.get("ambiguous_ratio")
        cf = lv.get("cross_fitted", {})
        lines += [
            "",
            "## Vertebra levels",
            "",
            f"A chain with a vertebra whose centre probability is below {lv['found_min_prob']:g} (not found: cut "
            "off, covered or missed)"
            + (f", or with a peak beyond an end at least {ratio:g} times as strong as that end," if ratio else "")
            + " gets a `LevelWarning`; those corners get a confidence of at most 0.15 and every other confidence "
            f"is multiplied by {lv['doubt_confidence']:g} (the share of such held-out films whose levels were "
            "right).",
        ]
        if cf:
            s_, r_ = cf["shifted_flagged"], cf["right_flagged"]
            lines.append(
                f"Cross-fitted on two case-grouped halves of the held-out films, as is and re-framed: {s_[0]} of "
                f"{s_[1]} level-shifted chains flagged, {r_[0]} of {r_[1]} correctly named ones."
            )
    if "confidence" in card:
        c = card["confidence"]
        lines += [
            "",
            "## Confidence",
            "",
            f"`confidence` = {c['meaning']}; a logistic model on the refinement peak, the coarse peak and "
            f"the coarse-to-refined shift"
            + (", with one offset per landmark" if c.get("landmark_offsets") else "")
            + f", fitted on {c.get('fitted_on', 'the held-out images')}. "
            + (
                f"Cross-validated over images ({len(c['cv_reliability'])} bins shown): Brier score "
                f"{c['cv_brier']:.3f} (a constant rate scores {c['cv_brier_constant_baseline']:.3f})."
                if c.get("cv_brier") is not None
                else "Not cross-validated (too few held-out images)."
            )
            + (
                f" Largest gap between one landmark's mean confidence and its share within "
                f"{c.get('radius_mm', 2):g} mm: {c['cv_max_landmark_gap_pts']:.1f} points."
                if c.get("cv_max_landmark_gap_pts") is not None
                else ""
            ),
            "",
            f"| confidence bin | landmarks | mean confidence | observed rate within {c.get('radius_mm', 2):g} mm |",
            "|---|---|---|---|",
        ] + [
            f"| {r['bin_lo']:.1f}-{r['bin_hi']:.1f} | {r['n']} | {r['mean_confidence']:.2f} "
            f"| {r['observed_rate']:.2f} |"
            for r in c["cv_reliability"]
        ]
    if card.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in card["notes"]]
    lines += [
        "",
        "## Intended use and licence",
        "",
        card.get("license_note", ""),
        "Not a medical device; outputs must be reviewed by a qualified clinician.",
        "",
        "## Citations",
        "",
    ] + [f"- {c}" for c in card.get("citations", [])]
    return "\n".join(lines) + "\n"
