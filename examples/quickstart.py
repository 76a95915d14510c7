"""Quickstart: detect the 19 cephalometric landmarks on the bundled example image.

python examples/quickstart.py [IMAGE]
"""

import sys

import cephspine
from cephspine.data import example_path

image = sys.argv[1] if len(sys.argv) > 1 else example_path("ceph")

detector = cephspine.Detector.from_pretrained("ceph")  # shipped weights, nothing downloaded
pred = detector.predict(image)

print(pred)
print(pred.to_dataframe().drop(columns=["image", "model"]).round(2).to_string(index=False))
for warning in pred.warnings:
    print("warning:", warning)
