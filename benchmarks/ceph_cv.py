"""Cross-validated accuracy of the ``ceph`` model, unperturbed and perturbed.

Tables from the out-of-fold predictions of ``python -m cephspine.training.ceph_oof``
(every image predicted by the fold model that never saw it):

    python benchmarks/ceph_cv.py summary runs/ceph_cv/oof.npz

Any packaged model on chosen images under the same settings (e.g. an earlier model on the
images it was never trained on), for a comparison on the same images:

    python benchmarks/ceph_cv.py model --model runs/ceph_v010 --ids 121-150 --out runs/base.npz
    python benchmarks/ceph_cv.py compare runs/ceph_cv/oof.npz runs/base.npz

(the shipped model was trained on all 150 images: compare models that never saw the
images), and the unperturbed out-of-fold landmarks for ``benchmarks/measure_accuracy.py``:

    python benchmarks/ceph_cv.py export-xy runs/ceph_cv/oof.npz oof_none_xy.npz

Mean ± s.d. over folds for the cross-validated numbers; the calibration gap is
|mean confidence − share within 2 mm| with each fold's confidence from a calibrator
fitted on the other folds' out-of-fold predictions.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np


def _ids(text: str) -> list[str]:
    out: list[str] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += [f"{i:03d}" for i in range(int(a), int(b) + 1)]
        elif part:
            out.append(f"{int(part):03d}")
    return out


def summary(path: Path) -> None:
    from cephspine.training.ceph_oof import summarize

    s = summarize(dict(np.load(path)))
    print(f"{s['n_images']} images, {s['folds']} folds (mean ± s.d. over folds)\n")
    print("| setting | MRE (mm) | SDR 2 mm | SDR 2.5 mm | SDR 3 mm | SDR 4 mm | SCR acc. | SCR bal. ", end="")
    print("| conf. | within 2 mm | gap |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in s["settings"].items():
        cells = [f"{r['mre_mm']['mean']:.3f} ± {r['mre_mm']['sd']:.3f}"] + [
            f"{r[k]['mean']:.1f} ± {r[k]['sd']:.1f} %"
            for k in ("sdr_2mm_pct", "sdr_2.5mm_pct", "sdr_3mm_pct", "sdr_4mm_pct")
        ]
        cells += [f"{r['scr_accuracy_mean_pct']:.1f} %", f"{r['scr_balanced_mean_pct']:.1f} %"]
        cells += [
            f"{r['mean_confidence_pct']:.1f} %",
            f"{r['within_2mm_pct']:.1f} %",
            f"{r['calibration_gap_pts']:.1f}",
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    clean = s["settings"]["none"]
    print("\n| landmark | MRE (mm) |\n|---|---|")
    for k, v in clean["per_landmark_mre_mm"].items():
        print(f"| {k} | {v:.2f} |")
    print("\n| measure | mean absolute error | SCR accuracy | class-balanced |\n|---|---|---|---|")
    for k, v in clean["measures"].items():
        print(f"| {k} | {v['mae']:.3g} | {v['scr_pct']:.1f} % | {v['balanced_pct']:.1f} % |")
    fc = np.load(path)
    sets = [k.split("/")[0] for k in fc if k.endswith("/facing")]
    first = np.concatenate([fc[f"{k}/facing"][:, 0] for k in sets])
    mirror = np.concatenate([fc[f"{k}/facing"][:, 1] for k in sets])
    print(
        f"\nfacing: first-pass mean coarse peak min {first.min():.3f} (median {np.median(first):.3f}); "
        f"mirrored max {np.nanmax(mirror):.3f} (median {np.nanmedian(mirror):.3f}); "
        f"unperturbed first-pass min {fc['none/facing'][:, 0].min():.3f}"
    )


def model(name: str, ids: list[str], data: Path, out: Path, settings: list[str]) -> None:
    from cephspine.detector import Detector
    from cephspine.training.ceph_oof import predict_setting

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = Detector.from_pretrained(name, device="cpu", register="never")
    res: dict[str, np.ndarray] = {"ids": np.array(ids), "fold": np.zeros(len(ids), dtype=int)}
    for s in settings:
        r = predict_setting(det, data, ids, s)
        res.update({f"{s}/{k}": v for k, v in r.items()})
        e = r["errors_mm"]
        print(f"{s:15s} MRE {e.mean():.3f} mm SDR2 {100 * (e <= 2).mean():.1f} %", flush=True)
    np.savez_compressed(out, **res)


def compare(cv_path: Path, other_path: Path) -> None:
    """The cross-validated models and another model on the images both cover."""
    from cephspine.training.ceph_oof import measure_agreement

    a, b = dict(np.load(cv_path)), dict(np.load(other_path))
    ids = [i for i in b["ids"] if i in set(a["ids"])]
    ia = np.array([list(a["ids"]).index(i) for i in ids])
    ib = np.array([list(b["ids"]).index(i) for i in ids])
    sets = [k.split("/")[0] for k in b if k.endswith("/errors_mm") and k in a]
    print(f"{len(ids)} images\n")
    print("| setting | CV folds MRE | other MRE | CV SDR 2 mm | other SDR 2 mm | CV SCR | other SCR |")
    print("|---|---|---|---|---|---|---|")
    for s in sets:
        ea, eb = a[f"{s}/errors_mm"][ia], b[f"{s}/errors_mm"][ib]
        sa = measure_agreement(a[f"{s}/xy"][ia], a[f"{s}/truth"][ia], a[f"{s}/spacing"][ia])
        sb = measure_agreement(b[f"{s}/xy"][ib], b[f"{s}/truth"][ib], b[f"{s}/spacing"][ib])
        scr_a = np.mean([v["scr_pct"] for v in sa.values()])
        scr_b = np.mean([v["scr_pct"] for v in sb.values()])
        print(
            f"| {s} | {ea.mean():.3f} | {eb.mean():.3f} | {100 * (ea <= 2).mean():.1f} % "
            f"| {100 * (eb <= 2).mean():.1f} % | {scr_a:.1f} % | {scr_b:.1f} % |"
        )


def main() -> None:
    from cephspine.training.ceph_oof import SETTINGS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary")
    s.add_argument("oof", type=Path)
    m = sub.add_parser("model")
    m.add_argument("--model", required=True, help="a model directory that never trained on --ids")
    m.add_argument("--ids", default="121-150", help="e.g. 121-150 or 1,5,9-12")
    m.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--settings", default=",".join(SETTINGS))
    x = sub.add_parser("export-xy", help="unperturbed out-of-fold landmarks as an NPZ of ids and xy_px")
    x.add_argument("oof", type=Path)
    x.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("cv", type=Path)
    c.add_argument("other", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.cmd == "summary":
        summary(args.oof)
    elif args.cmd == "export-xy":
        oof = np.load(args.oof)
        np.savez(args.out, ids=oof["ids"], xy_px=oof["none/xy"])
    elif args.cmd == "model":
        model(args.model, _ids(args.ids), args.data, args.out, args.settings.split(","))
    else:
        compare(args.cv, args.other)


if __name__ == "__main__":
    main()
