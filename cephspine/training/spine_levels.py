"""Fit a spine model's :class:`~cephspine.vertebrae.LevelRules` (when to say that a chain's
ends cannot be trusted) on held-out predictions, and measure them cross-fitted.

Input: the per-film results that ``benchmarks/spine_accuracy.py --reframe --save FILE``
writes (every held-out film as is and re-framed, with the chain's centre probabilities,
the strongest peaks beyond its ends and whether its levels were right).

    python -m cephspine.training.spine_levels FILE [--out rules.json]

A film is *flagged* when :func:`~cephspine.vertebrae.chain_doubt` finds a vertebra not
found or an ambiguous end. The rules flag as many level-shifted films as possible while
flagging at most :data:`MAX_FALSE_ALARMS` of the correctly named ones (a warning that
fires on many good films is ignored), chosen over a grid; the grid search is cross-fitted
over two case-grouped halves of the films (fit on one half, count on the other), so the
reported rates are not those the rules were chosen on. ``doubt_confidence`` is the share
of flagged films whose levels were right.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from cephspine.vertebrae import LevelRules, chain_doubt

FOUND_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
RATIO_GRID: tuple[float | None, ...] = (None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MAX_FALSE_ALARMS = 0.05
"""At most this share of correctly named films may be flagged."""


def _flags(centre: np.ndarray, beyond: np.ndarray, rules: LevelRules) -> np.ndarray:
    """Per film: flagged (a vertebra not found or an ambiguous end)."""
    return np.array([chain_doubt(c, float(b[0]), float(b[1]), rules).any for c, b in zip(centre, beyond)])


def fit(centre: np.ndarray, beyond: np.ndarray, wrong: np.ndarray) -> LevelRules:
    """The grid's rules that flag the most level-shifted films among those that flag at most
    :data:`MAX_FALSE_ALARMS` of the others (ties: fewer flags)."""
    best: tuple[float, float, LevelRules] | None = None
    for f, r in itertools.product(FOUND_GRID, RATIO_GRID):
        rules = LevelRules(f, r, 1.0)
        flag = _flags(centre, beyond, rules)
        if (~wrong).any() and flag[~wrong].mean() > MAX_FALSE_ALARMS:
            continue
        key = (float(flag[wrong].mean()) if wrong.any() else 0.0, -float(flag.mean()))
        if best is None or key > best[:2]:
            best = (key[0], key[1], rules)
    rules = best[2] if best is not None else LevelRules(0.0, None, 1.0)
    flag = _flags(centre, beyond, rules)
    right = float((~wrong[flag]).mean()) if flag.any() else 1.0
    return LevelRules(rules.found_min_prob, rules.ambiguous_ratio, round(right, 3))


def pooled(results: dict[str, dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre probabilities, beyond-end peaks, level-shifted and setting index, all settings stacked."""
    keys = sorted(results)
    c = np.concatenate([results[k]["centre_prob"] for k in keys])
    b = np.concatenate([results[k]["beyond"] for k in keys])
    w = np.concatenate([results[k]["shift"] != 0 for k in keys])
    s = np.concatenate([np.full(len(results[k]["shift"]), i) for i, k in enumerate(keys)])
    return c, b, w, s


def main(argv: list[str] | None = None) -> None:
    from cephspine.training.spine import case_of, grouped_folds, load_reframed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="write the rules fitted on all films (JSON)")
    args = ap.parse_args(argv)
    ids, results = load_reframed(args.results)
    keys = sorted(results)
    n = len(ids)
    c, b, w, s = pooled(results)
    halves = grouped_folds(ids, 2, seed=0)
    half_of = {i: h for h, f in enumerate(halves) for i in f}
    film_half = np.tile(np.array([half_of[i] for i in ids]), len(keys))
    flag_cf = np.zeros(len(w), bool)
    for h in (0, 1):
        r = fit(c[film_half != h], b[film_half != h], w[film_half != h])
        flag_cf[film_half == h] = _flags(c[film_half == h], b[film_half == h], r)
        print(f"fitted on half {1 - h}: {r}")
    print(f"{n} films x {len(keys)} settings, {int(w.sum())} level-shifted; cases per half: "
          + ", ".join(str(len({case_of(i) for i in f})) for f in halves))  # fmt: skip
    print("| setting | level-shifted | flagged of those (cross-fitted) | flagged of the rest |")
    print("|---|---|---|---|")
    for i, k in enumerate(keys):
        m = s == i
        ww, ff = w[m], flag_cf[m]
        tp = f"{int(ff[ww].sum())} / {int(ww.sum())}"
        print(f"| {k} | {int(ww.sum())} | {tp} | {int(ff[~ww].sum())} / {int((~ww).sum())} |")
    print(f"| all | {int(w.sum())} | {int(flag_cf[w].sum())} / {int(w.sum())} "
          f"({100 * flag_cf[w].mean():.0f} %) | {int(flag_cf[~w].sum())} / {int((~w).sum())} "
          f"({100 * flag_cf[~w].mean():.0f} %) |")  # fmt: skip
    rules = fit(c, b, w)
    print(f"fitted on all films: {rules}")
    if args.out is not None:
        args.out.write_text(json.dumps({
            **rules.to_dict(),
            "cross_fitted": {
                "shifted_flagged": [int(flag_cf[w].sum()), int(w.sum())],
                "right_flagged": [int(flag_cf[~w].sum()), int((~w).sum())],
            },
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
