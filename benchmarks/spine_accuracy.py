"""Accuracy of the shipped spine model on its held-out AASCE training images (the seeded
split of :func:`cephspine.training.spine.split_spine`, never trained on): SDR at 2/3/4/6 mm
(L4–L5 = 35 mm per image), MRE in pixels and mm, Cobb-angle SMAPE, the mean absolute error
of each Cobb angle (PT, MT, TL) in degrees against the dataset's reference angles (and, for
reference, that of the AASCE reference algorithm run on the annotated corners), median time
per image.

    python benchmarks/spine_accuracy.py --data ../shared/data/aasce [--model spine]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="spine")
    args = ap.parse_args()

    from cephspine import Detector
    from cephspine.evaluation import evaluate_spine
    from cephspine.geometry import COBB_CURVES, cobb_angles
    from cephspine.io.datasets import AasceDataset
    from cephspine.metrics import smape
    from cephspine.training.spine import split_spine

    _, val_ids, excluded = split_spine(args.data)
    det = Detector.from_pretrained(args.model, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_spine(det, args.data, ids=val_ids)
    s = ev.summary()
    print(f"held-out images: {len(val_ids)} ({len(excluded)} defective records excluded from the split)")
    print(
        f"MRE {s['mre_px']:.1f} px / {s['mre_mm']:.3f} mm (SD {s['sd_mm']:.3f}); SDR 2/3/4/6 mm "
        + " / ".join(f"{s[f'sdr_{r}mm_pct']:.2f}" for r in (2, 3, 4, 6))
        + f" %; Cobb SMAPE {s['cobb_smape_pct']:.2f} %; median {np.median(ev.seconds):.3f} s per image"
    )
    ds = AasceDataset(args.data)
    recs = [ds[i] for i in ev.ids]
    heights = [r.image_shape[0] if r.image_shape else r.radiograph.height for r in recs]
    on_truth = np.array([cobb_angles(r.landmarks, image_height=h).angles_deg for r, h in zip(recs, heights)])
    for label, angles in (("predicted corners", ev.pred_angles_deg), ("annotated corners", on_truth)):
        err = np.abs(angles - ev.true_angles_deg)
        print(
            f"Cobb angle mean absolute error, {label}: "
            + ", ".join(f"{c.upper()} {e:.2f}°" for c, e in zip(COBB_CURVES, err.mean(axis=0)))
            + f" (all three {err.mean():.2f}°, median {np.median(err):.2f}°); "
            + f"SMAPE {smape(angles, ev.true_angles_deg):.2f} %"
        )


if __name__ == "__main__":
    main()
