"""Accuracy of a ceph model on ISBI training images (121–150 by default: held out by
``cephspine train ceph``'s split; the shipped model was trained on all 150, so give
``--model`` a model trained without them), with and without template registration, on the
original images and on copies with a simulated pose/scanner change.

    python benchmarks/ceph_accuracy.py --data ../shared/data/isbi2015 [--ids 121-150]
        [--perturb] [--modes never,auto,always] [--model ceph]

``--downsample 2`` shrinks each image 2x first (0.2 mm pixels), as from a coarser scanner.
``--perturb`` rotates each image by ±8–12° and rescales it by 0.85–1.15 about its centre
(seeded) and moves the ground truth with it, to measure robustness to an unusual pose.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def perturbed(pixels: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import affine_transform

    h, w = pixels.shape
    ang = np.deg2rad(rng.choice([-1, 1]) * rng.uniform(8, 12))
    s = rng.uniform(0.85, 1.15)
    # forward map (x, y) -> centre + s R (p - centre); scipy needs the inverse in (row, col)
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) * s
    new_truth = (truth - c) @ r.T + c
    inv = np.linalg.inv(r)
    a_rc = inv[::-1, ::-1]
    c_rc = c[::-1]
    offset = c_rc - a_rc @ c_rc
    out = affine_transform(pixels, a_rc, offset, order=1, cval=float(pixels.min()))
    return out.astype(np.float32), new_truth


def downsampled(
    pixels: np.ndarray, truth: np.ndarray, factor: float, spacing: Any
) -> tuple[np.ndarray, np.ndarray, Any]:
    """The image shrunk by ``factor`` (bilinear), the truth mapped to it, and its new spacing."""
    from scipy.ndimage import zoom

    from cephspine.radiograph import Spacing

    h, w = pixels.shape
    out = zoom(pixels, 1.0 / factor, order=1).astype(np.float32)
    nh, nw = out.shape
    new_truth = (truth + 0.5) * np.array([nw / w, nh / h]) - 0.5
    return out, new_truth, Spacing(spacing.row_mm * h / nh, spacing.col_mm * w / nw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--ids", default="121-150")
    ap.add_argument("--model", default="ceph")
    ap.add_argument("--modes", default="never,auto,always")
    ap.add_argument("--perturb", action="store_true")
    ap.add_argument("--truth", default="mean", choices=["mean", "senior"])
    ap.add_argument(
        "--downsample",
        type=float,
        default=1.0,
        help="shrink each image by this factor first (another scanner's pixel size)",
    )
    args = ap.parse_args()

    from cephspine import Detector, Radiograph
    from cephspine.io.datasets import IsbiDataset, parse_ids
    from cephspine.metrics import radial_errors

    ds = IsbiDataset(args.data)
    records = [ds[i] for i in parse_ids(args.ids)]
    for mode in args.modes.split(","):
        det = Detector.from_pretrained(args.model, device="cpu", register=mode)
        rng = np.random.default_rng(0)
        errs, used, secs = [], 0, []
        for rec in records:
            rg = rec.radiograph
            truth = rec.landmarks if args.truth == "mean" else rec.senior
            if args.downsample != 1.0:
                px, truth, spacing = downsampled(rg.pixels, truth, args.downsample, rg.spacing)
                rg = Radiograph(px, spacing, "user", rg.source, dict(rg.meta))
            if args.perturb:
                px, truth = perturbed(rg.pixels, truth, rng)
                rg = Radiograph(px, rg.spacing, rg.spacing_source, rg.source, dict(rg.meta))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                pred = det.predict(rg)
                secs.append(time.perf_counter() - t)
            used += bool(pred.meta["registration"].get("used"))
            errs.append(radial_errors(pred.xy_px, truth, spacing=rg.spacing))
        e = np.array(errs)
        sdr = " ".join(f"{100 * (e <= r).mean():.2f}" for r in (2, 2.5, 3, 4))
        print(
            f"{'perturbed' if args.perturb else 'original'} register={mode:<6} n={len(e)} "
            f"MRE {e.mean():.3f} mm SD {e.std():.3f} SDR 2/2.5/3/4 mm {sdr} "
            f"registered {used}/{len(e)} median {np.median(secs):.2f} s"
        )


if __name__ == "__main__":
    main()
