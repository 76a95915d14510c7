"""Quickstart: landmarks, measures, a PDF report and a table for one cephalogram.

python examples/quickstart.py [IMAGE] [--spacing MM] [--out FOLDER]

Without IMAGE it analyses the bundled example (an ISBI 2015 cephalogram, 0.1 mm per
pixel) and writes ``ceph_report.pdf`` (annotated image, measures with normal ranges,
flags) and ``ceph_measures.csv`` / ``ceph_landmarks.csv`` into FOLDER (default
``cephspine-quickstart`` in the current folder).
"""

import argparse
import warnings
from pathlib import Path

import cephspine

parser = argparse.ArgumentParser(description="Analyse one cephalogram and write a PDF report and tables.")
parser.add_argument("image", nargs="?", help="DICOM, JPEG, PNG or TIFF (default: the bundled example)")
parser.add_argument("--spacing", type=float, help="pixel size in mm (a DICOM file's own spacing is used otherwise)")
parser.add_argument("--out", type=Path, default=Path("cephspine-quickstart"), help="output folder")
args = parser.parse_args()

image = args.image or cephspine.example_path("ceph")
# The bundled JPEG carries no spacing (the ISBI images are 0.1 mm per pixel), so give it.
spacing = args.spacing if args.image or args.spacing else 0.1

detector = cephspine.Detector.from_pretrained("ceph")  # shipped weights, nothing downloaded
with warnings.catch_warnings():  # the analysis keeps every warning; they are printed once, below
    warnings.simplefilter("ignore", cephspine.CephspineWarning)
    analysis = cephspine.analyze(image, kind="ceph", spacing=spacing, detector=detector)

print(analysis.prediction)
print()
# Every row names the image (image, pseudonym): kept in the CSV below, left out on screen.
measures = analysis.to_dataframe()
print(measures.drop(columns=["image", "pseudonym"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
for warning in analysis.warnings:
    print("warning:", warning)

args.out.mkdir(parents=True, exist_ok=True)
pdf = cephspine.write_report(analysis, args.out / "ceph_report.pdf", image=image)
measures.to_csv(args.out / "ceph_measures.csv", index=False)  # with image and pseudonym, to join other tables
analysis.landmarks_dataframe().to_csv(args.out / "ceph_landmarks.csv", index=False)
print()
print(f"report:    {pdf}")
print(f"measures:  {args.out / 'ceph_measures.csv'}")
print(f"landmarks: {args.out / 'ceph_landmarks.csv'}")
