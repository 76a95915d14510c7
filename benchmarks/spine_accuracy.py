"""Accuracy of the shipped spine model on its held-out AASCE training images (the seeded
split of :func:`cephspine.training.spine.split_spine`, never trained on): SDR at 2/3/4/6 mm
(L4–L5 = 35 mm per image), MRE in pixels and mm, Cobb-angle SMAPE, the mean absolute error
of each Cobb angle (PT, MT, TL) in degrees against the dataset's reference angles (and, for
reference, that of the AASCE reference algorithm run on the annotated corners), median time
per image.

    python benchmarks/spine_accuracy.py --data ../shared/data/aasce [--model spine]

``--hold-out-period P --model M`` is the headline of a new site: ``M`` (trained with
``python -m cephspine.training.spine ... --hold-out-period P``, never on period ``P``) is
scored on every clean film of acquisition period ``P`` (:func:`cephspine.training.spine.period_split`):
level-shifted films, SDR 2/3/4/6 mm, MRE, Cobb SMAPE and end vertebrae named right, each
with a 95 % bootstrap interval over patient cases, for all films and split by whether C7 is
in view (:func:`c7_in_view`). ``--save`` keeps the per-film results.

``--reframe`` evaluates the same films re-framed as another site might frame them (field
of view moved up or down by one or two vertebra heights, the film zoomed out to 0.8 by
padding all round, the content scaled by 0.85 or 1.15 about the centre; see
:func:`reframe`) and reports per setting the share of films whose predicted chain fits the
truth better shifted by one or more levels, SDR, MRE, Cobb SMAPE and how often each Cobb
angle's end vertebrae are named right.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

REFRAMINGS = ("as_is", "fov_up_1", "fov_up_2", "fov_down_1", "fov_down_2", "zoom_out_0.8", "scale_0.85", "scale_1.15")


FIELDS = (
    "shift", "err_mm", "pred_deg", "true_deg", "pred_ends", "true_ends", "end_prob", "centre_prob", "beyond", "conf",
)  # fmt: skip
"""Per film and setting: level shift, corner errors (mm), predicted and true Cobb angles and
end vertebrae, the first and last vertebra's centre probability, all 17 centre
probabilities, the strongest peaks above and below the chain, the corner confidences."""


def vertebra_height(xy68: np.ndarray) -> float:
    """Mean height of the 17 vertebrae (mean of their left and right edges), pixels."""
    q = xy68.reshape(17, 4, 2)  # TL, TR, BL, BR
    return float((np.linalg.norm(q[:, 2] - q[:, 0], axis=1) + np.linalg.norm(q[:, 3] - q[:, 1], axis=1)).mean() / 2)


def reframe(img: np.ndarray, xy: np.ndarray, setting: str) -> tuple[np.ndarray, np.ndarray]:
    """``img`` ``(H, W)`` and its corners ``xy`` re-framed; black where there was no film.

    ``fov_up_k``: the field of view moved up by ``k`` vertebra heights (black added at the
    top, as much cut at the bottom, never past L5); ``fov_down_k``: moved down (cut at the
    top, never past T1, black added at the bottom); ``zoom_out_f``: black added all round
    so that the film fills ``f`` of each side; ``scale_s``: the content scaled by ``s``
    about the centre on the same canvas."""
    h, w = img.shape
    if setting == "as_is":
        return img, xy
    kind, _, value = setting.rpartition("_")
    v = float(value)
    if kind in ("fov_up", "fov_down"):
        k = v * vertebra_height(xy)
        if kind == "fov_up":
            k = int(min(k, max(0.0, h - 1 - xy[:, 1].max() - 5)))
            return np.concatenate([np.zeros((k, w), img.dtype), img[: h - k]]), xy + [0, k]
        k = int(min(k, max(0.0, xy[:, 1].min() - 5)))
        return np.concatenate([img[k:], np.zeros((k, w), img.dtype)]), xy - [0, k]
    if kind == "zoom_out":
        ph, pw = int(round(h * (1 / v - 1) / 2)), int(round(w * (1 / v - 1) / 2))
        return np.pad(img, ((ph, ph), (pw, pw))), xy + [pw, ph]
    if kind == "scale":
        c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        out = ndimage.affine_transform(img, np.eye(2) / v, offset=c[::-1] - c[::-1] / v, order=1, cval=0.0)
        return out.astype(img.dtype), (xy - c) * v + c
    raise ValueError(f"unknown re-framing {setting!r}; known: {', '.join(REFRAMINGS)}")


def level_shift(pred68: np.ndarray, true68: np.ndarray, max_shift: int = 2) -> int:
    """The shift (in vertebrae) of the predicted chain that best fits the true one: 0 when
    the levels are right, +1 when the predicted vertebra *i* sits on true vertebra *i + 1*
    (the chain named one level too high), and so on."""
    p = pred68.reshape(17, 4, 2).mean(1)
    t = true68.reshape(17, 4, 2).mean(1)
    best, best_d = 0, np.inf
    for s in range(-max_shift, max_shift + 1):
        i = np.arange(max(0, -s), min(17, 17 - s))
        d = float(np.linalg.norm(p[i] - t[i + s], axis=1).mean())
        if d < best_d - 1e-9:
            best, best_d = s, d
    return best


def c7_in_view(xy68: np.ndarray) -> bool:
    """Whether the film shows the vertebra above T1: the top of T1 (its higher top corner)
    lies at least one vertebra pitch (the distance between the T1 and T2 centres) below the
    top edge. The films are annotated T1–L5 only, so this is a proxy from the room above T1."""
    q = xy68.reshape(17, 4, 2)
    pitch = float(np.linalg.norm(q[1].mean(0) - q[0].mean(0)))
    return bool(q[0, :2, 1].min() >= pitch)


def bootstrap_ci(
    values: np.ndarray, groups: list[str], stat: object, n: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of ``stat(values[rows])`` over ``n`` resamples of whole
    groups (patient cases) with replacement."""
    names = sorted(set(groups))
    rows = {g: [i for i, h in enumerate(groups) if h == g] for g in names}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pick = rng.integers(0, len(names), len(names))
        idx = np.concatenate([rows[names[k]] for k in pick])
        out.append(stat(idx))  # type: ignore[operator]
    lo, hi = np.percentile(out, [2.5, 97.5])
    return float(lo), float(hi)


def period_table(results: dict[str, np.ndarray], ids: list[str], keep: np.ndarray | None = None) -> list[str]:
    """Markdown rows (point estimate [95 % case-bootstrap interval]) of the per-film results
    of a held-out period (films ``keep`` only, when given)."""
    from cephspine.metrics import smape
    from cephspine.training.spine import case_of

    k = np.ones(len(ids), bool) if keep is None else keep
    sel = np.flatnonzero(k)
    groups = [case_of(ids[i]) for i in sel]
    d = {f: np.asarray(v)[sel] for f, v in results.items()}
    stats = {
        "level-shifted films (%)": lambda i: 100 * np.mean(d["shift"][i] != 0),
        **{f"SDR {r} mm (%)": (lambda i, r=r: 100 * np.mean(d["err_mm"][i] <= r)) for r in (2, 3, 4, 6)},
        "MRE (mm)": lambda i: float(d["err_mm"][i].mean()),
        "Cobb SMAPE (%)": lambda i: float(smape(d["pred_deg"][i], d["true_deg"][i])),
        **{
            f"{c} end vertebrae right (%)": (
                lambda i, j=j: 100 * np.mean((d["pred_ends"][i, j] == d["true_ends"][i, j]).all(-1))
            )
            for j, c in enumerate(("PT", "MT", "TL"))
        },
    }
    rows = []
    for name, f in stats.items():
        lo, hi = bootstrap_ci(np.arange(len(sel)), groups, f)
        rows.append(f"| {name} | {f(np.arange(len(sel))):.1f} [{lo:.1f}, {hi:.1f}] |")
    return rows


def held_out_period(
    det: object, data: Path, period: str, save: Path | None = None, max_images: int | None = None
) -> None:
    """Score ``det`` on the clean films of ``period`` and print the tables (all films, C7
    in view, C7 not in view)."""
    from cephspine.io.datasets import AasceDataset
    from cephspine.training.spine import case_of, period_split

    _, _, test_ids, excluded = period_split(data, period)
    test_ids = test_ids[:max_images]
    results = reframed(det, data, test_ids, save, settings=("as_is",), quiet=True)["as_is"]
    ds = AasceDataset(data)
    c7 = np.array([c7_in_view(ds[i].landmarks) for i in test_ids])
    n_cases = len({case_of(i) for i in test_ids})
    print(f"period {period} held out: {len(test_ids)} clean films of {n_cases} cases "
          f"({sum(1 for i in excluded if i in set(ds.ids))} records with known defects excluded overall)")  # fmt: skip
    for label, keep in (("all films", None), ("C7 in view", c7), ("C7 not in view", ~c7)):
        print(f"\n{label} ({len(test_ids) if keep is None else int(keep.sum())} films):")
        print("| measure | value [95 % interval over cases] |\n|---|---|")
        print("\n".join(period_table(results, test_ids, keep)))


def reframed(
    det: object, data: Path, ids: list[str], save: Path | None = None, settings: tuple[str, ...] = REFRAMINGS,
    quiet: bool = False,
) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Predict every film in every re-framing; per setting, per film: the level shift,
    the corner errors (mm), predicted and true Cobb angles and end vertebrae, and what the
    chain's ends rest on (the centre probabilities of the first and last vertebra and of
    the strongest peaks beyond them). Saved to ``save`` (``.npz``, keys
    ``setting/field``) when given."""
    from cephspine.geometry import cobb_angles_batch
    from cephspine.io.datasets import AasceDataset
    from cephspine.metrics import radial_errors, spine_mm_scale

    ds = AasceDataset(data)
    recs = [ds[i] for i in ids]
    results: dict[str, dict[str, np.ndarray]] = {}
    for setting in settings:
        rows: dict[str, list[object]] = {k: [] for k in FIELDS}
        for r in recs:
            img, xy = reframe(np.asarray(r.radiograph.pixels, dtype=np.float32), r.landmarks, setting)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = det.predict(img)  # type: ignore[attr-defined]
            rows["shift"].append(level_shift(pred.xy_px, xy))
            rows["err_mm"].append(radial_errors(pred.xy_px, xy) * spine_mm_scale(xy))
            pb = cobb_angles_batch(pred.xy_px[None], [img.shape[0]])
            tb = cobb_angles_batch(xy[None], [img.shape[0]])
            rows["pred_deg"].append(pb.angles_deg[0])
            rows["true_deg"].append(tb.angles_deg[0])
            rows["pred_ends"].append(pb.end_vertebrae[0])
            rows["true_ends"].append(tb.end_vertebrae[0])
            peak = np.asarray(pred.meta["features"]["coarse_peak"])
            rows["end_prob"].append([peak[0], peak[-1]])
            rows["centre_prob"].append(peak.reshape(17, 4)[:, 0])
            b = pred.meta["decoding"].get("beyond_ends", {})
            rows["beyond"].append([b.get("above", np.nan), b.get("below", np.nan)])
            rows["conf"].append(pred.confidence)
        results[setting] = {k: np.asarray(v) for k, v in rows.items()}
        if not quiet:
            print_table(results, [setting], header=setting == settings[0])
    if save is not None:
        flat = {f"{s}/{k}": v for s, d in results.items() for k, v in d.items()}
        np.savez_compressed(save, ids=np.array(ids), **flat)
    return results


def print_table(results: dict[str, dict[str, np.ndarray]], settings: list[str], keep: np.ndarray | None = None,
                header: bool = True) -> None:  # fmt: skip
    """One table row per setting (films ``keep`` only, a boolean mask, when given)."""
    from cephspine.metrics import smape

    if header:
        print("| setting | films | level-shifted | SDR 2 / 3 / 4 / 6 mm | MRE (mm) | Cobb SMAPE ", end="")
        print("| end vertebrae right (PT / MT / TL) |")
        print("|---|---|---|---|---|---|---|")
    for setting in settings:
        d = results[setting]
        k = np.ones(len(d["shift"]), bool) if keep is None else keep
        e = d["err_mm"][k].ravel()
        sh = d["shift"][k]
        ends = (d["pred_ends"][k] == d["true_ends"][k]).all(axis=-1).mean(axis=0)
        print(
            f"| {setting} | {int(k.sum())} | {100 * np.mean(sh != 0):.1f} % "
            + f"(−: {np.sum(sh < 0)}, +: {np.sum(sh > 0)}) | "
            + " / ".join(f"{100 * np.mean(e <= r):.1f}" for r in (2, 3, 4, 6))
            + f" % | {e.mean():.2f} | {smape(d['pred_deg'][k], d['true_deg'][k]):.2f} % | "
            + " / ".join(f"{100 * v:.0f} %" for v in ends)
            + " |",
            flush=True,
        )


def load_results(path: Path) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """What :func:`reframed` saved: the film ids and the per-setting results."""
    from cephspine.training.spine import load_reframed

    return load_reframed(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="spine")
    ap.add_argument("--reframe", action="store_true", help="also evaluate the films re-framed (see the module docs)")
    ap.add_argument("--max-images", type=int, default=None, help="the first N held-out images only")
    ap.add_argument("--no-end-prior", action="store_true", help="decode without the model's end prior")
    ap.add_argument("--no-refine-flip", action="store_true", help="refine without the mirrored pass")
    ap.add_argument(
        "--save", type=Path, default=None, help="--reframe, --hold-out-period: save the per-film results (.npz)"
    )
    ap.add_argument("--bf16", action="store_true", help="--hold-out-period: predict under CPU bfloat16 autocast")
    ap.add_argument(
        "--hold-out-period",
        choices=("A", "B", "C"),
        default=None,
        help="score a model trained without this acquisition period on all of its clean films (see the module docs)",
    )
    ap.add_argument(
        "--show",
        type=Path,
        default=None,
        help="print the tables of results saved with --save (all films, then the films no film of whose "
        "case was trained on) instead of predicting",
    )
    args = ap.parse_args()

    from cephspine import Detector
    from cephspine.evaluation import evaluate_spine
    from cephspine.geometry import COBB_CURVES, cobb_angles
    from cephspine.io.datasets import AasceDataset
    from cephspine.metrics import smape
    from cephspine.training.spine import case_of, split_spine

    train_ids, val_ids, excluded = split_spine(args.data)
    val_ids = val_ids[: args.max_images]
    if args.show is not None:
        ids, results = load_results(args.show)
        seen = {case_of(i) for i in train_ids}
        unseen = np.array([case_of(i) not in seen for i in ids])
        print(f"all {len(ids)} held-out films:")
        print_table(results, [s for s in REFRAMINGS if s in results])
        print(f"\nthe {int(unseen.sum())} held-out films no film of whose case was trained on:")
        print_table(results, [s for s in REFRAMINGS if s in results], keep=unseen)
        return
    options = {"end_prior": not args.no_end_prior, "refine_flip": not args.no_refine_flip}
    det = Detector.from_pretrained(args.model, device="cpu", **options)
    if args.hold_out_period:
        import contextlib
        import time

        import torch

        bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
        t0 = time.perf_counter()
        with bf16:
            held_out_period(det, args.data, args.hold_out_period, args.save, args.max_images)
        print(f"\n{'bf16 autocast' if args.bf16 else 'float32'}: {time.perf_counter() - t0:.0f} s in all")
        return
    if args.reframe:
        reframed(det, args.data, val_ids, args.save)
        return
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
