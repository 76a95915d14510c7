"""Reading landmark annotations made by people or by other tools.

``cephspine.read_annotations(path)`` reads

- a COCO keypoints JSON file (the ``"coco"`` export of :mod:`cephspine.exports.coco`,
  or any COCO keypoints file): the landmark names are the category's ``keypoints``, the
  points each annotation's ``keypoints`` (``[x, y, v] * N``, in the file's pixel
  coordinates, taken as they are), the image name the ``file_name`` of its
  ``image_id``, and the image size its ``width``/``height``; a ``pixel_spacing_mm``
  (``[row, col]``) field of an image is kept as its spacing;
- a CSV file in the tidy layout ``image, landmark, x_px, y_px`` (other columns are
  ignored, so the ``"csv"`` export and a cohort's landmark table read back), with an
  optional pixel spacing per image: a ``spacing_mm`` column (square pixels) or
  ``row_mm, col_mm`` columns.

The result is an :class:`Annotations`: a read-only mapping image name → ``(N, 2)`` float
array of ``(x, y)`` pixel positions, in the order of :attr:`Annotations.names`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cephspine.errors import InputNotFoundError, InvalidArgumentError, LandmarkError
from cephspine.radiograph import Spacing

__all__ = ["CSV_COLUMNS", "Annotations", "read_annotations"]

CSV_COLUMNS: tuple[str, ...] = ("image", "landmark", "x_px", "y_px")
"""The columns an annotation CSV file must have."""

_SHOWN = 8  # items listed in an error before "and N more"


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


@dataclass(frozen=True, eq=False)
class Annotations(Mapping[str, npt.NDArray[np.float64]]):
    """Landmark annotations of a set of images: a mapping image name → ``(N, 2)`` array.

    Attributes:
        names: the landmark names, the row order of every array.
        points: image name → ``(N, 2)`` float array of ``(x, y)`` pixel positions.
        spacing: image name → pixel spacing, for the images the file gives one.
        image_sizes: image name → ``(height, width)`` in pixels, where known (COCO, or
            read from the ``images=`` folder).
        source: the file read.
    """

    names: tuple[str, ...]
    points: dict[str, npt.NDArray[np.float64]]
    spacing: dict[str, Spacing] = field(default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    source: str = ""

    def __getitem__(self, image: str) -> npt.NDArray[np.float64]:
        return self.points[image]

    def __iter__(self) -> Iterator[str]:
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return f"Annotations({len(self.points)} image(s), {len(self.names)} landmarks, from {self.source or '?'})"


def read_annotations(path: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None) -> Annotations:
    """Read landmark annotations from a COCO keypoints JSON file or a CSV file.

    The format is chosen by the file's suffix (``.json``: COCO, ``.csv``: CSV).

    Args:
        path: the annotation file.
        images: a folder holding the annotated images: each image's size is read from its
            file (which must be there) and every point must lie in it.

    Returns:
        An :class:`Annotations` mapping image name → ``(N, 2)`` pixel positions.

    Raises:
        InputNotFoundError: ``path`` or ``images`` does not exist, or an annotated image
            is not in ``images``.
        InvalidArgumentError: a file of another suffix, one that is not valid JSON/CSV, a
            CSV without the needed columns, a COCO file without keypoint categories, an
            annotation of an image id that is not among the images, or a bad spacing.
        LandmarkError: missing or duplicate landmarks for an image, landmark sets that
            differ between images, positions that are not finite, or points outside the
            image (a pixel's centre ± 0.5 px) where the image size is known.

    Every message names the file and the cause.
    """
    p = Path(os.fspath(path))
    if not p.is_file():
        raise InputNotFoundError(f"{p}: no such annotation file")
    suffix = p.suffix.lower()
    if suffix == ".json":
        ann = _read_coco(p)
    elif suffix == ".csv":
        ann = _read_csv(p)
    else:
        raise InvalidArgumentError(f"{p}: annotations must be a COCO keypoints .json or a .csv file")
    if images is not None:
        ann = _with_folder_sizes(ann, Path(os.fspath(images)), p)
    _check_inside(ann, p)
    return ann


# --------------------------------------------------------------------------- COCO


def _read_coco(p: Path) -> Annotations:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgumentError(f"{p}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations")):
        raise InvalidArgumentError(f"{p}: not a COCO file (no 'images' and 'annotations' lists)")
    categories = {
        c.get("id"): tuple(str(n) for n in c["keypoints"])
        for c in doc.get("categories") or []
        if isinstance(c, dict) and isinstance(c.get("keypoints"), list) and c["keypoints"]
    }
    if not categories:
        raise InvalidArgumentError(f"{p}: no category with keypoint names; not a COCO keypoints file")
    by_id: dict[Any, dict[str, Any]] = {}
    names_seen: set[str] = set()
    for img in doc["images"]:
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            raise InvalidArgumentError(f"{p}: an image entry without id or file_name: {img!r}")
        if img["id"] in by_id:
            raise InvalidArgumentError(f"{p}: image id {img['id']!r} listed more than once")
        if img["file_name"] in names_seen:
            raise LandmarkError(f"{p}: image {img['file_name']!r} listed more than once")
        names_seen.add(img["file_name"])
        by_id[img["id"]] = img
    names: tuple[str, ...] | None = None
    points: dict[str, npt.NDArray[np.float64]] = {}
    for ann in doc["annotations"]:
        if not isinstance(ann, dict) or "keypoints" not in ann:
            continue  # not a keypoint annotation (e.g. a plain box)
        image_id = ann.get("image_id")
        if image_id not in by_id:
            raise InvalidArgumentError(
                f"{p}: annotation {ann.get('id', '?')!r} refers to image id {image_id!r}, which is not among the images"
            )
        cat = ann.get("category_id")
        if cat not in categories:
            raise InvalidArgumentError(
                f"{p}: annotation {ann.get('id', '?')!r} has category {cat!r}, which has no keypoint names"
            )
        cat_names = categories[cat]
        image = str(by_id[image_id]["file_name"])
        if names is None:
            names = cat_names
        elif cat_names != names:
            raise LandmarkError(
                f"{p}: image {image} has landmarks {_listed(cat_names)}, other images {_listed(names)}; "
                "the landmarks must be the same for every image"
            )
        if image in points:
            raise LandmarkError(f"{p}: image {image} has more than one keypoint annotation")
        points[image] = _coco_points(ann["keypoints"], names, image, p)
    if names is None:
        raise InvalidArgumentError(f"{p}: no keypoint annotations")
    spacing: dict[str, Spacing] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for img in by_id.values():
        image = str(img["file_name"])
        if image not in points:
            continue
        if img.get("width") and img.get("height"):
            try:
                sizes[image] = (int(img["height"]), int(img["width"]))
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"{p}: image {image} has a width/height that is not a number") from None
        sp = img.get("pixel_spacing_mm")
        if sp is not None:
            values = sp if isinstance(sp, list) and len(sp) == 2 else None
            spacing[image] = _spacing(values, image, p)
    return Annotations(names=names, points=points, spacing=spacing, image_sizes=sizes, source=str(p))


def _coco_points(keypoints: Any, names: tuple[str, ...], image: str, p: Path) -> npt.NDArray[np.float64]:
    n = len(names)
    try:
        kp = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError):
        raise LandmarkError(f"{p}: image {image}: keypoints are not numbers") from None
    if kp.shape != (3 * n,):
        raise LandmarkError(f"{p}: image {image}: {kp.size} keypoint values where {n} landmarks need {3 * n}")
    kp = kp.reshape(n, 3)
    missing = [names[i] for i in np.flatnonzero(kp[:, 2] == 0)]
    if missing:
        raise LandmarkError(f"{p}: image {image}: landmark(s) {_listed(missing)} not labelled (v = 0)")
    xy = kp[:, :2].copy()
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(xy).all(axis=1))]
    if bad:
        raise LandmarkError(f"{p}: image {image}: landmark(s) {_listed(bad)} have no finite position")
    return xy


# --------------------------------------------------------------------------- CSV


def _read_csv(p: Path) -> Annotations:
    import pandas as pd

    try:
        df = pd.read_csv(p, dtype={"image": str, "landmark": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"{p}: not a readable CSV file ({exc})") from None
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidArgumentError(
            f"{p}: missing column(s) {', '.join(missing)}; an annotation CSV needs {', '.join(CSV_COLUMNS)}"
        )
    if df.empty:
        raise InvalidArgumentError(f"{p}: no rows")
    if df["image"].isna().any() or df["landmark"].isna().any():
        raise LandmarkError(f"{p}: rows without an image or landmark name")
    x = pd.to_numeric(df["x_px"], errors="coerce").to_numpy(dtype=np.float64)
    y = pd.to_numeric(df["y_px"], errors="coerce").to_numpy(dtype=np.float64)
    names: tuple[str, ...] | None = None
    first = ""
    points: dict[str, npt.NDArray[np.float64]] = {}
    spacing: dict[str, Spacing] = {}
    for image, found in df.groupby("image", sort=False).indices.items():
        idx = np.asarray(found, dtype=np.intp)
        image = str(image)
        given = [str(n) for n in df["landmark"].to_numpy()[idx]]
        counts: dict[str, int] = {}
        for g in given:
            counts[g] = counts.get(g, 0) + 1
        dup = [g for g, k in counts.items() if k > 1]
        if dup:
            raise LandmarkError(f"{p}: image {image}: landmark(s) {_listed(dup)} given more than once")
        if names is None:
            names, first = tuple(given), image
        else:
            lacking = [n for n in names if n not in counts]
            extra = [g for g in given if g not in names]
            if lacking or extra:
                what = []
                if lacking:
                    what.append(f"missing {_listed(lacking)}")
                if extra:
                    what.append(f"{_listed(extra)} not in image {first}")
                raise LandmarkError(
                    f"{p}: image {image}: landmarks differ from those of image {first} ({'; '.join(what)}); "
                    "the landmarks must be the same for every image"
                )
        order = {g: k for k, g in enumerate(given)}
        rows = idx[[order[n] for n in names]]
        xy = np.column_stack([x[rows], y[rows]])
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(xy).all(axis=1))]
        if bad:
            raise LandmarkError(f"{p}: image {image}: landmark(s) {_listed(bad)} have no finite x_px, y_px position")
        points[image] = xy
        sp = _csv_spacing(df, idx, image, p)
        if sp is not None:
            spacing[image] = sp
    assert names is not None  # df is not empty
    return Annotations(names=names, points=points, spacing=spacing, source=str(p))


def _csv_spacing(df: Any, idx: npt.NDArray[np.intp], image: str, p: Path) -> Spacing | None:
    """The spacing of one image's rows (``spacing_mm``, or ``row_mm`` and ``col_mm``), or
    ``None`` where the file has no spacing for it."""
    import pandas as pd

    if "row_mm" in df.columns and "col_mm" in df.columns:
        cols = ["row_mm", "col_mm"]
    elif "spacing_mm" in df.columns:
        cols = ["spacing_mm", "spacing_mm"]
    else:
        return None
    values = []
    for c in cols:
        v = pd.to_numeric(df[c].iloc[idx], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(v).all():
            return None
        u = np.unique(v)
        if len(u) != 1:
            raise InvalidArgumentError(f"{p}: image {image}: {c} differs between its rows ({_listed(u.tolist())})")
        values.append(float(u[0]))
    return _spacing(values, image, p)


def _spacing(values: Any, image: str, p: Path) -> Spacing:
    try:
        row, col = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{p}: image {image}: pixel spacing {values!r} is not two numbers") from None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        raise InvalidArgumentError(f"{p}: image {image}: pixel spacing {values!r} is not positive and finite")
    return Spacing(row, col)


# --------------------------------------------------------------------------- image sizes


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, from its header where possible."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            return int(h), int(w)
    except (UnidentifiedImageError, OSError):
        pass
    from cephspine.io import load_image

    return tuple(int(v) for v in load_image(path).shape)  # type: ignore[return-value]


def _with_folder_sizes(ann: Annotations, folder: Path, p: Path) -> Annotations:
    if not folder.is_dir():
        raise InputNotFoundError(f"{folder}: no such image folder (given with the annotations {p})")
    sizes = dict(ann.image_sizes)
    for image in ann.points:
        f = folder / image
        if not f.is_file():
            raise InputNotFoundError(f"{p}: image {image} is not in {folder}")
        sizes[image] = _image_size(f)
    return Annotations(names=ann.names, points=ann.points, spacing=ann.spacing, image_sizes=sizes, source=ann.source)


def _check_inside(ann: Annotations, p: Path) -> None:
    """Every point of an image of known size lies within it (a pixel's centre ± 0.5 px)."""
    for image, (h, w) in ann.image_sizes.items():
        xy = ann.points[image]
        outside = (xy[:, 0] < -0.5) | (xy[:, 0] > w - 0.5) | (xy[:, 1] < -0.5) | (xy[:, 1] > h - 0.5)
        if outside.any():
            where = [f"{ann.names[i]} ({xy[i, 0]:g}, {xy[i, 1]:g})" for i in np.flatnonzero(outside)]
            raise LandmarkError(f"{p}: image {image}: landmark(s) outside the image ({w} × {h} px): {_listed(where)}")
