"""Write landmarks of the ISBI 2015 dataset as an annotation CSV, for ``cephspine train
landmarks`` and ``cephspine evaluate landmarks``.

python examples/isbi_annotations.py --data path/to/isbi2015 [--out five.csv]
    [--ids 001-006] [--landmarks sella,nasion,menton,gonion,articulare]

One row per image and landmark: ``image, landmark, x_px, y_px, spacing_mm``; the position
is the mean of the dataset's two doctors (``IsbiDataset``'s ground truth), the spacing the
dataset's 0.1 mm. With the defaults it writes the ``five.csv`` of the tutorial
docs/tutorials/own-landmarks.md.
"""

import argparse
from pathlib import Path

import pandas as pd

import cephspine
from cephspine.io.datasets import ISBI_SPACING, parse_ids

parser = argparse.ArgumentParser(description="Write ISBI 2015 landmarks as an annotation CSV.")
parser.add_argument("--data", type=Path, required=True, help="the ISBI 2015 folder (images/, senior/, junior/)")
parser.add_argument("--out", type=Path, default=Path("five.csv"), help="the CSV to write (default: five.csv)")
parser.add_argument("--ids", default="001-006", help="image ids, e.g. 001-006 or 001,005 (default: 001-006)")
parser.add_argument(
    "--landmarks",
    default="sella,nasion,menton,gonion,articulare",
    help="comma-separated ISBI landmark names (default: sella,nasion,menton,gonion,articulare)",
)
args = parser.parse_args()

names = [n.strip() for n in args.landmarks.split(",") if n.strip()]
unknown = [n for n in names if n not in cephspine.CEPH_LANDMARKS]
if unknown:
    parser.error(f"not ISBI landmark names: {', '.join(unknown)} (known: {', '.join(cephspine.CEPH_LANDMARKS)})")
ds = cephspine.IsbiDataset(args.data)
rows = []
for image_id in parse_ids(args.ids):
    rec = ds[image_id]
    for name in names:
        x, y = rec.landmarks[cephspine.CEPH_LANDMARKS.index(name)]
        rows.append(
            {
                "image": rec.image_path.name,
                "landmark": name,
                "x_px": float(x),
                "y_px": float(y),
                "spacing_mm": ISBI_SPACING.col_mm,
            }
        )
pd.DataFrame(rows).to_csv(args.out, index=False)
print(f"{len(rows)} rows ({len(rows) // len(names)} images x {len(names)} landmarks) written to {args.out}")
