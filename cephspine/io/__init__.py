"""Reading radiographs (DICOM, JPEG, PNG, TIFF, numpy arrays) and the shared datasets."""

from cephspine.io.datasets import AasceDataset, AasceRecord, Defect, IsbiDataset, IsbiRecord
from cephspine.io.loader import ImageSource, SpacingLike, load_image

__all__ = [
    "AasceDataset",
    "AasceRecord",
    "Defect",
    "ImageSource",
    "IsbiDataset",
    "IsbiRecord",
    "SpacingLike",
    "load_image",
]
