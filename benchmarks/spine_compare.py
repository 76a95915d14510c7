"""Paired comparison of two spine models on the held-out AASCE training images (the seeded
split of :func:`cephspine.training.spine.split_spine`, never trained on by either).

Both models predict the same images; the differences B − A in Cobb SMAPE, MRE (mm) and
SDR at 2 / 3 / 4 / 6 mm get 95 % intervals from a paired bootstrap over images (the same
resampled images for both models).

    python benchmarks/spine_compare.py --data ../shared/data/aasce --a OLD_MODEL_DIR --b spine
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RADII = (2.0, 3.0, 4.0, 6.0)


def per_image(ev: Any) -> dict[str, np.ndarray]:
    """Per-image values whose mean over images is the summary metric."""
    from cephspine.metrics import smape

    e = ev.errors_mm
    out = {
        "cobb_smape_pct": np.asarray(smape(ev.pred_angles_deg, ev.true_angles_deg, per_image=True)),
        "mre_mm": e.mean(axis=1),
    }
    out |= {f"sdr_{r:g}mm_pct": 100 * (e <= r).mean(axis=1) for r in RADII}
    return out


def paired_bootstrap(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], n: int = 5000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """``{metric: (B − A, low, high)}``: the mean difference and its 95 % percentile interval."""
    rng = np.random.default_rng(seed)
    m = len(next(iter(a.values())))
    idx = rng.integers(0, m, (n, m))
    out = {}
    for k in a:
        d = b[k] - a[k]
        boot = d[idx].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[k] = (float(d.mean()), float(lo), float(hi))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--a", required=True, help="reference model (name or directory)")
    ap.add_argument("--b", required=True, help="model compared with it (name or directory)")
    ap.add_argument("--resamples", type=int, default=5000)
    args = ap.parse_args()

    from cephspine import Detector
    from cephspine.evaluation import evaluate_spine
    from cephspine.training.spine import split_spine

    _, val_ids, _ = split_spine(args.data)
    vals = {}
    for label, model in (("A", args.a), ("B", args.b)):
        det = Detector.from_pretrained(model, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = evaluate_spine(det, args.data, ids=val_ids, progress=False)
        vals[label] = per_image(ev)
        print(f"{label} = {model} ({det.card.get('version', '?')}): median {np.median(ev.seconds):.3f} s per image")
    diff = paired_bootstrap(vals["A"], vals["B"], args.resamples)
    print(f"{len(val_ids)} held-out images; B − A with 95 % paired-bootstrap intervals ({args.resamples} resamples)")
    for k, (d, lo, hi) in diff.items():
        a, b = vals["A"][k].mean(), vals["B"][k].mean()
        print(f"  {k:16s} A {a:7.3f}  B {b:7.3f}  B−A {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    main()
