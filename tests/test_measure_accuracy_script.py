"""benchmarks/measure_accuracy.py on given landmark files (no model run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "measure_accuracy.py"
IDS = ["121", "122", "123"]

pytestmark = pytest.mark.shared_data


def _run(isbi: Path, predictions: Path, tmp_path: Path) -> pd.DataFrame:
    table = tmp_path / f"{predictions.stem}_table.csv"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(isbi), "--predictions", str(predictions), "--csv", str(table)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "images: 3 (121–123)" in proc.stdout
    return pd.read_csv(table).set_index("measure")


def test_measure_errors_and_type_agreement_from_csv_and_npz(shared_data: Path, tmp_path: Path) -> None:
    from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS
    from cephspine.io.datasets import IsbiDataset

    isbi = shared_data / "isbi2015"
    ds = IsbiDataset(isbi)
    truth = np.array([ds[i].landmarks for i in IDS])

    # the ground truth itself, as a CSV with file names, shuffled rows, landmark names
    n = len(CEPH_LANDMARKS)
    rows = pd.DataFrame(
        {
            "image": np.repeat([f"{i}.jpg" for i in IDS], n),
            "landmark": np.tile(CEPH_LANDMARKS, len(IDS)),
            "x_px": truth[..., 0].ravel(),
            "y_px": truth[..., 1].ravel(),
        }
    ).sample(frac=1.0, random_state=0)
    rows.to_csv(tmp_path / "exact.csv", index=False)
    exact = _run(isbi, tmp_path / "exact.csv", tmp_path)
    measures = ["ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW"]
    assert exact.loc[measures, "mae"].tolist() == pytest.approx([0.0] * 8, abs=1e-9)
    assert exact.loc[measures, "scr_pct"].tolist() == [100.0] * 8
    assert exact.loc["average", "scr_pct"] == 100.0

    # the lower incisor tip moved 3 mm forward: only MW changes
    moved = truth.copy()
    moved[:, CEPH_ABBREVIATIONS.index("LIT"), 0] += 30.0  # 0.1 mm per pixel
    np.savez(tmp_path / "moved.npz", ids=np.array(IDS), xy_px=moved)
    shifted = _run(isbi, tmp_path / "moved.npz", tmp_path)
    assert shifted.loc[measures[:-1], "mae"].tolist() == pytest.approx([0.0] * 7, abs=1e-9)
    assert shifted["mae"].to_numpy(dtype=float)[measures.index("MW")] > 1.0
    assert shifted.loc["MW", "unit"] == "mm"
    # the two doctors' reference columns do not depend on the predictions
    assert shifted["doctors_mae"].tolist() == pytest.approx(exact["doctors_mae"].tolist(), nan_ok=True)


def test_predictions_missing_an_image_fail_with_the_file_name(shared_data: Path, tmp_path: Path) -> None:
    xy = np.zeros((1, 19, 2))
    np.savez(tmp_path / "one.npz", ids=np.array(["121"]), xy_px=xy)
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data",
            str(shared_data / "isbi2015"),
            "--predictions",
            str(tmp_path / "one.npz"),
            "--ids",
            "121-122",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "one.npz: no predictions for images ['122']" in proc.stderr
