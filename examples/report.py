"""Write a PDF report for the bundled example cephalogram and print its measures.

python examples/report.py [OUT.pdf]      (default: ceph_report.pdf in the current folder)
"""

import sys
from pathlib import Path

import cephspine
from cephspine.reports import report

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("ceph_report.pdf")

# The bundled JPEG is an ISBI 2015 image (0.1 mm per pixel) and carries no spacing, so give it;
# a DICOM file's PixelSpacing / ImagerPixelSpacing is used automatically.
analysis = report(cephspine.example_path(), out, kind="ceph", spacing=0.1)

table = analysis.to_dataframe().drop(columns=["image", "pseudonym", "normal_low", "normal_high"])
print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
for warning in analysis.warnings:
    print("warning:", warning)
print(f"report written to {out}")
