"""Where a spine model's error comes from, on the held-out AASCE training images (the
seeded split of :func:`cephspine.training.spine.split_spine`, never trained on).

The refinement stage is run from different starting points: the coarse stage's corners
(the model as shipped), the same refined again (two passes), and the true corners, exactly
or with Gaussian noise of 6 and 12 fine pixels. The gap between "coarse" and "true" starts
is what a better coarse stage could gain; the "true" row is what the refinement alone
reaches; "coarse, gross fixed" replaces only the coarse corners more than 40 fine pixels
from the truth (vertebrae at the wrong level or missing) by the true ones. Also prints
how far the coarse corners are from the true ones, in fine pixels.

The stages are run as the detector runs a spine model (no spacing, no mirroring, no
registration); models that mirror or register are refused.

    python benchmarks/spine_error_sources.py --data ../shared/data/aasce [--model spine]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="spine")
    ap.add_argument("--seed", type=int, default=0, help="seed of the noise added to the true corners")
    args = ap.parse_args()

    import torch

    from cephspine import Detector
    from cephspine.geometry.cobb import cobb_angles
    from cephspine.io.datasets import AasceDataset
    from cephspine.metrics import radial_errors, smape, spine_mm_scale
    from cephspine.pipeline import coarse_stage, prepare, refine_stage
    from cephspine.preprocess import normalize_intensity
    from cephspine.training.spine import split_spine

    _, val_ids, _ = split_spine(args.data)
    ds = AasceDataset(args.data)
    det = Detector.from_pretrained(args.model, device="cpu")
    cfg = det.config
    if not cfg.fine_height_px or det.detect_facing or det.register != "never":
        raise SystemExit(f"{args.model}: not a spine model (its stages run here without mirroring or registration)")
    rng = np.random.default_rng(args.seed)
    rows = (
        "coarse only",
        "coarse + refine",
        "coarse + refine x2",
        "coarse, gross fixed",
        "true",
        "true + N(0, 6 px)",
        "true + N(0, 12 px)",
    )
    errs: dict[str, list[np.ndarray]] = {k: [] for k in rows}
    angles: dict[str, list[np.ndarray]] = {k: [] for k in rows}
    truth, coarse_px = [], []
    with torch.no_grad():
        for i in val_ids:
            rec = ds[i]
            rg = rec.radiograph
            fine, coarse_img = prepare(normalize_intensity(rg.pixels), (1.0, 1.0), cfg)
            true_f = fine.to_resampled(rec.landmarks)
            c, _ = coarse_stage(det.coarse, coarse_img, cfg, "cpu", fine.size_hw)
            dist = np.linalg.norm(c[0] - true_f, axis=1)
            coarse_px.append(dist)
            once, _ = refine_stage(det.refine, fine, c[0], cfg, "cpu")
            fine_xy = {
                "coarse only": c[0],
                "coarse + refine": once,
                "coarse + refine x2": refine_stage(det.refine, fine, once, cfg, "cpu")[0],
            }
            gross = dist > 40
            fixed = np.where(gross[:, None], true_f, c[0])
            fine_xy["coarse, gross fixed"] = refine_stage(det.refine, fine, fixed, cfg, "cpu")[0]
            for name, sd in (("true", 0.0), ("true + N(0, 6 px)", 6.0), ("true + N(0, 12 px)", 12.0)):
                start = true_f + rng.normal(0.0, sd, true_f.shape) if sd else true_f
                fine_xy[name] = refine_stage(det.refine, fine, start, cfg, "cpu")[0]
            limit = np.array([rg.width - 1, rg.height - 1], dtype=np.float64)
            for name, f in fine_xy.items():
                xy = np.clip(fine.to_original(f), 0.0, limit)  # as the detector does
                errs[name].append(radial_errors(xy, rec.landmarks) * spine_mm_scale(rec.landmarks))
                angles[name].append(cobb_angles(xy, image_height=rg.height).angles_deg)
            truth.append(rec.angles_deg)
    d = np.concatenate(coarse_px)
    print(
        f"{len(val_ids)} held-out images; coarse corners vs true, fine pixels: median {np.median(d):.1f}, "
        + ", ".join(f"<= {t}: {100 * np.mean(d <= t):.0f} %" for t in (6, 12, 22, 32))
        + f", > 40: {100 * np.mean(d > 40):.0f} %"
    )
    for name in rows:
        e = np.array(errs[name])
        sdr = " / ".join(f"{100 * (e <= r).mean():.1f}" for r in (2, 3, 4, 6))
        s = smape(np.array(angles[name]), np.array(truth))
        print(f"  {name:20s} MRE {e.mean():5.2f} mm  SDR 2/3/4/6 mm {sdr} %  Cobb SMAPE {s:5.2f} %")


if __name__ == "__main__":
    main()
