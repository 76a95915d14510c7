"""The ``"coco"`` export: landmarks as a COCO keypoints JSON file.

The file has the usual COCO sections:

- ``categories``: one per anatomy present (``"ceph"``: id 1, ``"spine"``: id 2), whose
  ``keypoints`` are the landmark names in model order (:mod:`cephspine.anatomy`) and whose
  ``skeleton`` is empty for a cephalogram and, for the spine, the four sides of each
  vertebra (TL–TR, TR–BR, BR–BL, BL–TL; 1-based keypoint indices, as COCO numbers them);
- ``images``: one per analysis: ``id``, ``file_name`` (the analysis' image name),
  ``width``, ``height`` in pixels, and the extra fields ``pixel_spacing_mm``
  (``[row, col]`` or ``null``) and ``pseudonym``;
- ``annotations``: one per image: ``keypoints`` as ``[x, y, v] * N``, ``num_keypoints``,
  ``bbox`` (``[x, y, width, height]`` around the keypoints), ``area`` (of the bbox),
  ``iscrowd`` 0, ``image_id``, ``category_id``, and the extra fields ``keypoint_scores``
  (each landmark's confidence, ``null`` where there is none), ``score`` (their mean, or
  ``null``), ``model`` and ``model_version``.

Positions are cephspine's pixel coordinates written as they are (x to the right, y down,
origin at the centre of the top-left pixel; no half-pixel shift), so that reading the file
back (:func:`cephspine.read_annotations`) gives the same points.

Visibility ``v`` (:func:`visibility`): 2 (labelled and visible) for a landmark whose
confidence is at least :data:`cephspine.analysis.LOW_CONFIDENCE` and for landmarks
supplied by a person (their confidence is NaN); 1 (labelled, uncertain) for a detected
landmark below that threshold. No landmark is written with v = 0: every one has a
position.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cephspine._atomic import write_atomic
from cephspine.errors import InvalidArgumentError

if TYPE_CHECKING:
    from cephspine.analysis import Analysis

__all__ = ["CATEGORY_IDS", "spine_skeleton", "to_coco", "visibility", "write_coco"]

CATEGORY_IDS: dict[str, int] = {"ceph": 1, "spine": 2}
"""The COCO category id of each anatomy."""


def visibility(confidence: npt.ArrayLike) -> list[int]:
    """COCO visibility of each landmark: 1 where the confidence is below
    :data:`~cephspine.analysis.LOW_CONFIDENCE`, otherwise 2 (NaN, a supplied landmark: 2)."""
    from cephspine.analysis import LOW_CONFIDENCE

    conf = np.asarray(confidence, dtype=np.float64)
    return [1 if np.isfinite(c) and c < LOW_CONFIDENCE else 2 for c in conf]


def spine_skeleton() -> list[list[int]]:
    """The spine category's skeleton: each vertebra's four sides as 1-based keypoint pairs."""
    from cephspine.anatomy import CORNERS, SPINE_LANDMARKS

    index = {name: i + 1 for i, name in enumerate(SPINE_LANDMARKS)}
    sides = (("TL", "TR"), ("TR", "BR"), ("BR", "BL"), ("BL", "TL"))
    out = []
    for k in range(0, len(SPINE_LANDMARKS), len(CORNERS)):
        vertebra = SPINE_LANDMARKS[k].rsplit("_", 1)[0]
        out += [[index[f"{vertebra}_{a}"], index[f"{vertebra}_{b}"]] for a, b in sides]
    return out


def _category(kind: str) -> dict[str, Any]:
    from cephspine.anatomy import landmark_names

    return {
        "id": CATEGORY_IDS[kind],
        "name": kind,
        "supercategory": "anatomy",
        "keypoints": list(landmark_names(kind)),
        "skeleton": spine_skeleton() if kind == "spine" else [],
    }


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def to_coco(analyses: Analysis | Sequence[Analysis]) -> dict[str, Any]:
    """The COCO keypoints document of one analysis or of several (one image and one
    annotation each).

    Raises:
        InvalidArgumentError: no analyses, or two analyses of the same image name (a COCO
            file identifies an image by its file name).
    """
    from cephspine import __version__
    from cephspine.analysis import Analysis

    items = [analyses] if isinstance(analyses, Analysis) else list(analyses)
    if not items:
        raise InvalidArgumentError("no analyses to export")
    seen: set[str] = set()
    for a in items:
        if a.image in seen:
            raise InvalidArgumentError(
                f"two analyses of the image {a.image!r}: a COCO file holds one annotation per image file name"
            )
        seen.add(a.image)
    images, annotations = [], []
    for i, a in enumerate(items, start=1):
        p = a.prediction
        h, w = (int(v) for v in p.image_shape)
        sp = p.spacing
        images.append(
            {
                "id": i,
                "file_name": a.image,
                "width": w,
                "height": h,
                "pixel_spacing_mm": [sp.row_mm, sp.col_mm] if sp is not None else None,
                "pseudonym": a.pseudonym,
            }
        )
        xy = p.xy_px
        keypoints: list[float | int] = []
        for (x, y), v in zip(xy.tolist(), visibility(p.confidence)):
            keypoints += [x, y, v]
        x0, y0 = xy.min(axis=0).tolist()
        x1, y1 = xy.max(axis=0).tolist()
        scores = [_finite_or_none(c) for c in p.confidence.tolist()]
        finite = [s for s in scores if s is not None]
        annotations.append(
            {
                "id": i,
                "image_id": i,
                "category_id": CATEGORY_IDS[a.kind],
                "keypoints": keypoints,
                "num_keypoints": len(p.names),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
                "keypoint_scores": scores,
                "score": float(np.mean(finite)) if finite else None,
                "model": p.model,
                "model_version": p.model_version,
            }
        )
    kinds = sorted({a.kind for a in items}, key=CATEGORY_IDS.__getitem__)
    return {
        "info": {
            "description": "cephspine landmarks",
            "version": __version__,
            "date_created": items[0].created,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [_category(k) for k in kinds],
    }


def write_coco(analyses: Analysis | Sequence[Analysis], path: str | os.PathLike[str]) -> Path:
    """Write the COCO keypoints file of one analysis or of a cohort's analyses (many
    images in one file) to ``path``, atomically.

    Raises:
        InvalidArgumentError: as :func:`to_coco`.
        OutputError: ``path`` cannot be written.
    """
    data = (json.dumps(to_coco(analyses), indent=1, allow_nan=False) + "\n").encode("utf-8")
    return write_atomic(path, lambda fh: fh.write(data), "export")
