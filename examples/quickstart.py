"""Quickstart: detect the 19 cephalometric landmarks on the bundled example image.

python examples/quickstart.py [IMAGE]
"""

import sys

import cephspine
from cephspine.data import example_path

image = sys.argv[1] if len(sys.argv) > 1 else example_path("ceph")

detector = cephspine.Detector.from_pretrained("ceph")  # shipped weights, nothing downloaded
# The bundled JPEG is an ISBI 2015 image (0.1 mm per pixel) and carries no spacing, so give it;
# a DICOM file's PixelSpacing / ImagerPixelSpacing is used automatically.
pred = detector.predict(image, spacing=0.1 if len(sys.argv) == 1 else None)

print(pred)
print(pred.to_dataframe().drop(columns=["image", "model"]).round(2).to_string(index=False))
for warning in pred.warnings:
    print("warning:", warning)
