"""Case-grouped folds of the AASCE films: no patient case on both sides of a split."""

from __future__ import annotations

import pytest

from cephspine.training.spine import case_of, grouped_folds


def test_case_is_the_number_before_the_film_letter_whatever_the_date() -> None:
    assert case_of("sunhl-1th-20-Jul-2016-20_B_AP.jpg") == "20"
    assert case_of("sunhl-1th-21-Jul-2016-20_E_AP") == "20"
    assert case_of("sunhl-1th-21-Nov-2016-138_D_AP2.jpg") == "138"
    assert case_of("sunhl-1th-22-Nov-2016-142_A_AP_(2)") == "142"
    assert case_of("sunhl-1th-20-Jul-2016-coronal3.jpg") == "sunhl-1th-20-Jul-2016-coronal3"
    assert case_of("sunhl-1th-25-Jul-2016-15_A_AP") != case_of("sunhl-1th-25-Jul-2016-156_A_AP")


def test_grouped_folds_keep_each_case_in_one_fold_and_balance_sizes() -> None:
    ids = [f"sunhl-1th-01-Jan-2017-{c}_{chr(65 + j)}_AP" for c in range(40) for j in range(1 + c % 4)]
    ids += [f"sunhl-1th-20-Jul-2016-coronal{i}" for i in range(7)]
    folds = grouped_folds(ids, k=5, seed=3)
    assert sorted(sum(folds, [])) == sorted(ids)
    where = {case_of(i): n for n, f in enumerate(folds) for i in f}
    assert all(where[case_of(i)] == n for n, f in enumerate(folds) for i in f)
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 4  # within one case (at most 4 films)
    assert grouped_folds(ids, k=5, seed=3) == folds
    assert grouped_folds(ids, k=5, seed=4) != folds


def test_grouped_folds_refuse_impossible_requests() -> None:
    with pytest.raises(ValueError, match="at least 2 folds"):
        grouped_folds(["a", "b"], k=1)
    with pytest.raises(ValueError, match="cannot fill"):
        grouped_folds(["sunhl-1th-01-Jan-2017-1_A_AP", "sunhl-1th-01-Jan-2017-1_B_AP"], k=2)


def test_framing_summary_tabulates_saved_reframed_results(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from cephspine.training.spine import framing_summary

    err = np.array([[1.0, 3.0], [1.5, 10.0]])
    ang = np.array([[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]])
    np.savez(tmp_path / "r.npz", ids=np.array(["a", "b"]), **{
        "as_is/err_mm": err, "as_is/shift": np.array([0, 1]), "as_is/pred_deg": ang, "as_is/true_deg": ang,
    })  # fmt: skip
    s = framing_summary(tmp_path / "r.npz")["as_is"]
    assert s == {"films": 2, "level_shifted_pct": 50.0, "sdr_2mm_pct": 50.0, "mre_mm": 3.875, "cobb_smape_pct": 0.0}
