"""Accuracy of the eight ISBI cephalometric measures computed from predicted landmarks,
against the same measures computed from the ground truth, on ISBI 2015 images.

Per measure: the mean absolute error of the predicted measure (in its unit: degrees, mm
for MW, ratio for FHI), the mean signed error (bias), and the agreement of the anatomical
types: SCR (share of images whose type from the predicted landmarks equals the type from
the ground truth), the class-balanced accuracy (mean recall over the types present in the
ground truth) and the ISBI challenge code's balanced SCR (per-type recalls summed over
the measure's types and divided by 3, an absent type counting 0). For reference, the same
numbers between the two doctors (senior vs junior) on the same images.

    python benchmarks/measure_accuracy.py --data ../shared/data/isbi2015 [--ids 121-150] [--model ceph]
    python benchmarks/measure_accuracy.py --data ../shared/data/isbi2015 --predictions preds.csv

Predicted landmarks come either from running a model (``--model``, default the shipped
``ceph``; images 121–150 by default, which it never trained on) or from a file
(``--predictions``), e.g. cross-validated out-of-fold predictions:

- CSV, one row per landmark: ``image`` (an id such as ``121``, or a file name such as
  ``121.jpg``), ``landmark_index`` (0–18, ISBI order) or ``landmark`` (name), ``x_px``,
  ``y_px`` in original pixels — the layout of ``Prediction.to_dataframe()`` and
  ``cephspine predict -f csv``;
- NPZ with ``ids`` ``(M,)`` and ``xy_px`` ``(M, 19, 2)``.

Without ``--ids`` a predictions file is evaluated on all the images it holds.
``--save-predictions FILE.csv`` writes the landmarks used (to re-run without the model),
``--csv FILE`` the per-measure table.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _image_id(value: Any) -> str:
    """``"121"`` from ``121``, ``"121"``, ``"121.jpg"`` or ``".../images/121.jpg"``."""
    return Path(str(value)).stem


def read_predictions(path: Path) -> dict[str, FloatArray]:
    """``{image id: (19, 2) x, y px}`` from a predictions CSV or NPZ (see the module docstring)."""
    from cephspine.anatomy import CEPH_LANDMARKS

    n = len(CEPH_LANDMARKS)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("ids", "xy_px") if k not in z.files]
            if missing:
                raise SystemExit(f"{path}: missing arrays {missing} (has {z.files})")
            ids, xy = z["ids"], np.asarray(z["xy_px"], dtype=np.float64)
        if xy.ndim != 3 or xy.shape[1:] != (n, 2) or len(ids) != len(xy):
            raise SystemExit(f"{path}: xy_px must have shape (M, {n}, 2) with M = len(ids), got {xy.shape}")
        return {_image_id(i): xy[k] for k, i in enumerate(ids)}

    import pandas as pd

    df = pd.read_csv(path, dtype={"image": str})
    if "landmark_index" not in df.columns and "landmark" in df.columns:
        index = {name: i for i, name in enumerate(CEPH_LANDMARKS)}
        unknown = sorted(set(df["landmark"]) - set(index))
        if unknown:
            raise SystemExit(f"{path}: unknown landmark names {unknown[:3]}")
        df["landmark_index"] = df["landmark"].map(index)
    missing = [c for c in ("image", "landmark_index", "x_px", "y_px") if c not in df.columns]
    if missing:
        raise SystemExit(f"{path}: missing columns {missing} (has {list(df.columns)})")
    out: dict[str, FloatArray] = {}
    for image, g in df.groupby("image", sort=False):
        idx = g["landmark_index"].to_numpy(dtype=int)
        if sorted(idx.tolist()) != list(range(n)):
            raise SystemExit(f"{path}: image {image} needs each landmark index 0–{n - 1} once")
        xy = np.full((n, 2), np.nan)
        xy[idx] = g[["x_px", "y_px"]].to_numpy(dtype=np.float64)
        out[_image_id(image)] = xy
    return out


def write_predictions(path: Path, ids: list[str], xy: FloatArray) -> None:
    import pandas as pd

    from cephspine.anatomy import CEPH_LANDMARKS

    n = len(CEPH_LANDMARKS)
    pd.DataFrame(
        {
            "image": np.repeat(ids, n),
            "landmark_index": np.tile(np.arange(n), len(ids)),
            "landmark": np.tile(CEPH_LANDMARKS, len(ids)),
            "x_px": xy[..., 0].ravel(),
            "y_px": xy[..., 1].ravel(),
        }
    ).to_csv(path, index=False)


def balanced_accuracy(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Mean over the types present in ``true`` of the share of their images predicted as that type, %."""
    p, t = np.asarray(pred), np.asarray(true)
    return float(100.0 * np.mean([np.mean(p[t == k] == k) for k in np.unique(t)]))


def measure_table(pred_xy: FloatArray, true_xy: FloatArray, spacing: list[Any]) -> Any:
    """Per-measure errors and type agreement of ``pred_xy`` against ``true_xy`` (both ``(M, 19, 2)`` px)."""
    import pandas as pd

    from cephspine.geometry import CEPH_MEASURES, MEASURE_UNITS, ceph_measures_batch, ceph_types
    from cephspine.metrics import scr

    pm = ceph_measures_batch(pred_xy, spacing=spacing)
    tm = ceph_measures_batch(true_xy, spacing=spacing)
    pt, tt = ceph_types(pm), ceph_types(tm)
    rows = []
    for m in CEPH_MEASURES:
        err = pm[m] - tm[m]
        present = {int(k): int(c) for k, c in zip(*np.unique(tt[m], return_counts=True))}
        rows.append(
            {
                "measure": m,
                "unit": MEASURE_UNITS[m],
                "n_images": len(err),
                "mae": float(np.abs(err).mean()),
                "bias": float(err.mean()),
                "scr_pct": scr(pt[m], tt[m]),
                "balanced_pct": balanced_accuracy(pt[m], tt[m]),
                "challenge_balanced_pct": scr(pt[m], tt[m], convention="balanced", measure=m),
                "true_types": " ".join(f"{k}:{c}" for k, c in present.items()),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="ISBI 2015 folder (images/, senior/, junior/)")
    ap.add_argument("--ids", default=None, help="image ids, e.g. 121-150 (default 121-150 with a model)")
    ap.add_argument("--model", default="ceph", help="model to run when no --predictions are given")
    ap.add_argument("--predictions", type=Path, default=None, help="CSV or NPZ of predicted landmarks")
    ap.add_argument("--truth", default="mean", choices=["mean", "senior"], help="ground truth (default: mean)")
    ap.add_argument("--save-predictions", type=Path, default=None, help="write the landmarks used (CSV)")
    ap.add_argument("--csv", type=Path, default=None, help="write the per-measure table (CSV)")
    args = ap.parse_args()

    import pandas as pd

    from cephspine.io.datasets import IsbiDataset, parse_ids

    ds = IsbiDataset(args.data)
    given = read_predictions(args.predictions) if args.predictions else None
    if args.ids is not None:
        ids = parse_ids(args.ids)
    elif given is not None:
        ids = sorted(given)
    else:
        ids = parse_ids("121-150")
    if given is not None:
        absent = [i for i in ids if i not in given]
        if absent:
            raise SystemExit(f"{args.predictions}: no predictions for images {absent[:5]}")
    records = [ds[i] for i in ids]

    secs: list[float] = []
    if given is None:
        from cephspine import Detector

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = Detector.from_pretrained(args.model, device="cpu")
            preds = []
            for rec in records:
                t = time.perf_counter()
                preds.append(det.predict(rec.radiograph).xy_px)
                secs.append(time.perf_counter() - t)
        source = f"model {det.name} {det.version}"
        pred_xy = np.array(preds, dtype=np.float64)
    else:
        source = str(args.predictions)
        pred_xy = np.array([given[i] for i in ids], dtype=np.float64)
    if args.save_predictions:
        write_predictions(args.save_predictions, ids, pred_xy)

    true_xy = np.array([r.landmarks if args.truth == "mean" else r.senior for r in records])
    spacing = [r.radiograph.spacing for r in records]
    table = measure_table(pred_xy, true_xy, spacing)
    doctors = measure_table(np.array([r.junior for r in records]), np.array([r.senior for r in records]), spacing)
    table["doctors_mae"] = doctors["mae"]
    table["doctors_scr_pct"] = doctors["scr_pct"]
    table["doctors_balanced_pct"] = doctors["balanced_pct"]
    average = {
        "measure": "average",
        "n_images": len(ids),
        **{c: float(table[c].mean()) for c in table.columns if c.endswith("_pct")},
    }
    table = pd.concat([table, pd.DataFrame([average])], ignore_index=True)

    print(f"predictions: {source}; images: {len(ids)} ({ids[0]}–{ids[-1]}); truth: {args.truth} of the doctors")
    if secs:
        print(f"median {np.median(secs):.2f} s per image")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
