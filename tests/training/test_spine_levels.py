"""Fitting when a spine chain's ends cannot be trusted (LevelRules) from held-out results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cephspine.training.spine_levels import _flags, fit, main


def films(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half the films shifted: weak T1 or a strong peak below L5; the rest clean."""
    centre = rng.uniform(0.6, 0.95, (n, 17))
    beyond = rng.uniform(0.0, 0.1, (n, 2))
    wrong = np.arange(n) % 2 == 1
    centre[wrong & (np.arange(n) % 4 == 1), 0] = 0.03
    beyond[wrong & (np.arange(n) % 4 == 3), 1] = 0.7
    return centre, beyond, wrong


def test_fit_separates_doubtful_chains_and_measures_the_ambiguous_ones() -> None:
    c, b, w = films(80, np.random.default_rng(0))
    rules = fit(c, b, w)
    flag = _flags(c, b, rules)
    assert flag[w].all() and not flag[~w].any()
    assert rules.doubt_confidence == 0.0  # every flagged film was shifted
    assert 0.03 < rules.found_min_prob <= 0.6
    assert rules.ambiguous_ratio is not None and rules.ambiguous_ratio <= 0.7 / 0.6


def test_main_cross_fits_on_case_halves_and_writes_rules(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    n = 40
    ids = [f"sunhl-1th-01-Jan-2017-{i // 2}_{'AB'[i % 2]}_AP" for i in range(n)]
    results = {}
    for k in ("as_is", "fov_up_1"):
        c, b, w = films(n, rng)
        results[k] = {"centre_prob": c, "beyond": b, "shift": w.astype(int)}
    flat = {f"{k}/{f}": v for k, d in results.items() for f, v in d.items()}
    np.savez_compressed(tmp_path / "r.npz", ids=np.array(ids), **flat)
    main([str(tmp_path / "r.npz"), "--out", str(tmp_path / "rules.json")])
    out = capsys.readouterr().out
    assert "| all | 40 | 40 / 40 (100 %) | 0 / 40 (0 %) |" in out
    rules = json.loads((tmp_path / "rules.json").read_text())
    assert rules["cross_fitted"] == {"shifted_flagged": [40, 40], "right_flagged": [0, 40]}
