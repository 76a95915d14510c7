"""The re-framed spine evaluation of benchmarks/spine_accuracy.py: re-framings keep the
corners on the film, and the level-shift measure names a chain that is one level off."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "spine_accuracy.py"
spec = importlib.util.spec_from_file_location("spine_accuracy", SCRIPT)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def chain(top: float = 60.0, height: float = 30.0, gap: float = 10.0) -> np.ndarray:
    """17 upright 40 × ``height`` px vertebrae, TL, TR, BL, BR, from ``top`` down."""
    q = []
    for i in range(17):
        y0 = top + i * (height + gap)
        q += [[80, y0], [120, y0], [80, y0 + height], [120, y0 + height]]
    return np.array(q, dtype=np.float64)


def dots_image(xy: np.ndarray, h: int = 800, w: int = 200) -> np.ndarray:
    img = np.zeros((h, w), dtype=np.float32)
    for x, y in np.round(xy).astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 1.0
    return img


def test_level_shift_names_the_offset_of_the_chain() -> None:
    t = chain()
    assert bench.level_shift(t, t) == 0
    c = t.reshape(17, 4, 2)
    up = np.concatenate([c[1:], c[-1:] + [0, 40]]).reshape(-1, 2)  # predicted i sits on true i + 1
    assert bench.level_shift(up, t) == 1
    down = np.concatenate([c[:1] - [0, 40], c[:-1]]).reshape(-1, 2)
    assert bench.level_shift(down, t) == -1


@pytest.mark.parametrize("setting", bench.REFRAMINGS)
def test_reframings_keep_the_corners_on_their_dots(setting: str) -> None:
    xy = chain()
    img, q = bench.reframe(dots_image(xy), xy, setting)
    h, w = img.shape
    assert ((q >= 0) & (q < [w, h])).all()
    for x, y in np.round(q).astype(int):
        assert img[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].max() > 0.3


def test_field_of_view_moves_by_vertebra_heights() -> None:
    xy = chain()
    assert bench.vertebra_height(xy) == pytest.approx(30.0)
    _, up = bench.reframe(dots_image(xy), xy, "fov_up_1")
    _, down = bench.reframe(dots_image(xy), xy, "fov_down_1")
    np.testing.assert_allclose(up - xy, [[0, 30]] * 68)
    np.testing.assert_allclose(down - xy, [[0, -30]] * 68)
    with pytest.raises(ValueError, match="unknown re-framing"):
        bench.reframe(dots_image(xy), xy, "tilt_5")


def test_saved_results_read_back_and_tabulate_any_subset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--save`` keeps every film's numbers so that subsets (e.g. films of unseen cases)
    can be tabulated later with ``--show``."""
    rng = np.random.default_rng(0)
    n = 4
    d = {
        "shift": np.array([0, 1, 0, -1]),
        "err_mm": rng.uniform(0, 8, (n, 68)),
        "pred_deg": rng.uniform(5, 40, (n, 3)),
        "true_deg": rng.uniform(5, 40, (n, 3)),
        "pred_ends": np.zeros((n, 3, 2), int),
        "true_ends": np.zeros((n, 3, 2), int),
        "end_prob": rng.uniform(0, 1, (n, 2)),
        "beyond": rng.uniform(0, 1, (n, 2)),
        "conf": rng.uniform(0, 1, (n, 68)),
    }
    flat = {f"as_is/{k}": v for k, v in d.items()}
    np.savez_compressed(tmp_path / "r.npz", ids=np.array(list("abcd")), **flat)
    ids, results = bench.load_results(tmp_path / "r.npz")
    assert ids == list("abcd") and set(results) == {"as_is"}
    np.testing.assert_array_equal(results["as_is"]["err_mm"], d["err_mm"])
    bench.print_table(results, ["as_is"], keep=np.array([True, False, True, False]))
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| as_is | 2 | 0.0 % (−: 0, +: 0) |")
    bench.print_table(results, ["as_is"], header=False)
    assert "| as_is | 4 | 50.0 % (−: 1, +: 1) |" in capsys.readouterr().out
