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


def test_period_of_reads_the_acquisition_period_from_the_file_name() -> None:
    from cephspine.training.spine import period_of

    assert period_of("sunhl-1th-10-Jan-2017-200_A_AP.jpg") == "A"
    assert period_of("sunhl-1th-25-Jan-2017-250_B_AP") == "A"
    assert period_of("sunhl-1th-02-Jan-2017-170_A_AP.jpg") == "B"
    assert period_of("sunhl-1th-09-Jan-2017-190_C_AP.jpg") == "B"
    assert period_of("sunhl-1th-20-Jul-2016-coronal3.jpg") == "C"
    assert period_of("sunhl-1th-30-Dec-2016-161_A_AP.jpg") == "C"
    for bad in ("scan.jpg", "sunhl-1th-01-Mar-2017-1_A_AP.jpg"):
        with pytest.raises(ValueError, match=bad.split(".")[0]):
            period_of(bad)


@pytest.mark.shared_data
def test_period_split_holds_out_a_whole_period_and_groups_validation_by_case(shared_data) -> None:  # type: ignore[no-untyped-def]
    from cephspine.training.spine import period_of, period_split

    root = shared_data / "aasce"
    for p in ("A", "B", "C"):
        train, val, test, excluded = period_split(root, p)
        assert {period_of(i) for i in test} == {p} and not {period_of(i) for i in train + val} & {p}
        assert not {case_of(i) for i in train} & {case_of(i) for i in val}
        assert not set(excluded) & set(train + val + test)
        assert 0.1 < len(val) / len(train + val) < 0.2
        assert len(train) + len(val) + len(test) + len(excluded) == 481


def test_c7_proxy_and_case_bootstrap_of_the_benchmark() -> None:
    import importlib.util
    from pathlib import Path

    import numpy as np

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "spine_accuracy.py"
    spec = importlib.util.spec_from_file_location("spine_accuracy", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    centres = np.stack([np.full(17, 100.0), 60.0 + 25.0 * np.arange(17)], axis=1)  # pitch 25 px
    box = np.array([[-10, -10], [10, -10], [-10, 10], [10, 10]], float)
    xy = (centres[:, None, :] + box[None]).reshape(68, 2)
    assert bench.c7_in_view(xy)  # T1's top at 50 px, one pitch is 25 px
    assert not bench.c7_in_view(xy - [0, 40])  # T1's top at 10 px: no room for C7
    values = np.array([0.0, 0.0, 1.0, 1.0])
    lo, hi = bench.bootstrap_ci(values, ["a", "a", "b", "b"], lambda i: values[i].mean(), n=400)
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert bench.bootstrap_ci(values, ["a", "b", "c", "d"], lambda i: 7.0, n=10) == (7.0, 7.0)
