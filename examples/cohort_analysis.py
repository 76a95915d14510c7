"""Cohort analysis: one table row per radiograph of a folder, then pandas group-bys.

python examples/cohort_analysis.py [FOLDER]

Without FOLDER, a temporary folder is filled with three copies of the bundled example
cephalogram (under different names) and one corrupt file, ``broken.jpg``, which becomes an
error row instead of stopping the run. Add ``out="results.csv"`` to write the table as it
goes; running the same call again then resumes where it stopped.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

import cephspine


def demo_folder(folder: Path) -> Path:
    for name in ("patient_a.jpg", "patient_b.jpg", "patient_c.jpg"):
        shutil.copy(cephspine.example_path("ceph"), folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


def main(folder: Path) -> None:
    # The bundled image is an ISBI 2015 cephalogram at 0.1 mm per pixel; a DICOM file's own
    # PixelSpacing would be used without this argument.
    df = cephspine.cohort(folder, kind="ceph", spacing=0.1, progress=False)

    with pd.option_context("display.width", 120, "display.max_columns", 12):
        print(f"{len(df)} images: {(df['status'] == 'ok').sum()} ok, {(df['status'] == 'error').sum()} error(s)\n")
        ok = df[df["status"] == "ok"]
        print("Images per ANB class:")
        print(ok["anb_class"].value_counts().to_string(), "\n")
        print("Mean measures per ANB class:")
        measures = ["anb_deg", "snb_deg", "sna_deg", "fma_deg", "mw_mm", "mean_confidence"]
        print(ok.groupby("anb_class")[measures].mean().round(2).to_string(), "\n")
        print("Error rows:")
        print(df[df["status"] == "error"][["image", "error"]].to_string(index=False))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(demo_folder(Path(tmp)))
