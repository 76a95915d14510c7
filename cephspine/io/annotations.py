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
  optional pixel spacing per image: a ``spacing_mm`` column (square pixels), or
  ``row_mm, col_mm`` or ``spacing_row_mm, spacing_col_mm`` columns (as the ``"csv"``
  export writes them).

The result is an :class:`Annotations`: a read-only mapping image name → ``(N, 2)`` float
array of ``(x, y)`` pixel positions, in the order of :attr:`Annotations.names`.

Only regular files of at most :data:`MAX_ANNOTATION_BYTES` are read, every COCO field is
checked for its type and range before it is used, and with ``images=`` an image name must
stay inside that folder (after ``..`` and symbolic links are resolved).
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from cephspine.errors import ImageReadError, InputNotFoundError, InvalidArgumentError, LandmarkError
from cephspine.io._checks import MAX_SIDE_PX, check_shape
from cephspine.radiograph import Spacing, implausible_spacing

__all__ = ["CSV_COLUMNS", "MAX_ANNOTATION_BYTES", "Annotations", "read_annotations"]

CSV_COLUMNS: tuple[str, ...] = ("image", "landmark", "x_px", "y_px")
"""The columns an annotation CSV file must have."""

MAX_ANNOTATION_BYTES = 256 * 2**20
"""The largest annotation file read (256 MiB, a COCO or CSV file of tens of thousands of
images); a larger one is refused before it is read."""

_SHOWN = 8  # items listed in an error before "and N more"
_SHOWN_CHARS = 200  # characters of a value from the file quoted in an error


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _shown(value: Any) -> str:
    """A short description of a value read from a file, for an error message."""
    scalar = (str, int, float)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)) and (len(value) > 4 or not all(isinstance(v, scalar) for v in value)):
        return "an array"
    text = repr(value[:_SHOWN_CHARS] if isinstance(value, str) else value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _is_id(value: Any) -> TypeGuard[int | str]:
    """Whether ``value`` can be a COCO id: an integer or a string."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (not a boolean)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _as_float(value: Any) -> float:
    """A number as a float, an integer beyond the float range as ±infinity."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


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
        path: the annotation file: a regular file (or a symbolic link to one) of at most
            :data:`MAX_ANNOTATION_BYTES`.
        images: a folder holding the annotated images: each image's size is read from its
            file (which must be there) and every point must lie in it. Image names are
            paths relative to this folder and must stay inside it.

    Returns:
        An :class:`Annotations` mapping image name → ``(N, 2)`` pixel positions.

    Raises:
        InputNotFoundError: ``path`` or ``images`` does not exist, or an annotated image
            is not in ``images``.
        InvalidArgumentError: ``path`` is not a regular file or is larger than
            :data:`MAX_ANNOTATION_BYTES`; a file of another suffix, one that is not valid
            JSON/CSV, a CSV without the needed columns, a COCO file without keypoint
            categories, a COCO field of the wrong type or out of range (ids that are not
            integers or strings, sizes that are not whole numbers from 1 to
            :data:`~cephspine.io._checks.MAX_SIDE_PX`, file names that are not strings,
            keypoints that are not a flat array of numbers, a visibility other than 0, 1
            or 2, ...), an annotation of an image id that is not among the images, or a
            bad spacing; with ``images``, an image name that leads outside the folder
            (absolute, through ``..`` or a symbolic link: the same error whether or not
            the file it names exists) or that names something other than a regular file.
        LandmarkError: missing or duplicate landmarks for an image, landmark sets that
            differ between images, positions that are not finite, or points outside the
            image (a pixel's centre ± 0.5 px) where the image size is known.
        ImageReadError: with ``images``, an image file whose size cannot be read, or whose
            size is beyond what :func:`cephspine.load_image` accepts (e.g. a decompression
            bomb).

    Every message names the file and the cause.
    """
    p = Path(os.fspath(path))
    _check_regular(_stat(p), p)
    suffix = p.suffix.lower()
    if suffix == ".json":
        ann = _read_coco(p, _read_bytes(p))
    elif suffix == ".csv":
        ann = _read_csv(p, _read_bytes(p))
    else:
        raise InvalidArgumentError(f"{p}: annotations must be a COCO keypoints .json or a .csv file")
    if images is not None:
        ann = _with_folder_sizes(ann, Path(os.fspath(images)), p)
    _check_inside(ann, p)
    return ann


def _stat(p: Path) -> os.stat_result:
    try:
        return os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise InputNotFoundError(f"{p}: no such annotation file") from None
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"{p}: cannot read the annotation file ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _check_regular(st: os.stat_result, p: Path) -> None:
    """Refuse what is not a regular file of at most :data:`MAX_ANNOTATION_BYTES`."""
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgumentError(f"{p}: not a regular file; annotations are read from regular files only")
    if st.st_size > MAX_ANNOTATION_BYTES:
        raise InvalidArgumentError(
            f"{p}: {st.st_size} bytes, more than the {MAX_ANNOTATION_BYTES // 2**20} MiB an annotation file may have"
        )


def _read_bytes(p: Path) -> bytes:
    """The content of the annotation file, checked again on the open file (regular, and read
    no further than :data:`MAX_ANNOTATION_BYTES`, should it have grown)."""
    from cephspine.io.bounded import UnsafeFileError, read_bounded

    try:
        return read_bounded(p, MAX_ANNOTATION_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raise InputNotFoundError(f"{p}: no such annotation file") from None
    except UnsafeFileError as exc:
        raise InvalidArgumentError(
            f"{p}: {exc.strerror}; annotations are read from regular files of at most "
            f"{MAX_ANNOTATION_BYTES // 2**20} MiB"
        ) from None
    except OSError as exc:
        raise InvalidArgumentError(f"{p}: cannot read the annotation file ({_reason(exc)})") from None


# --------------------------------------------------------------------------- COCO


def _read_coco(p: Path, data: bytes) -> Annotations:
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise InvalidArgumentError(f"{p}: not a JSON file this reader accepts (nested too deeply)") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of more digits than Python converts
        raise InvalidArgumentError(f"{p}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations")):
        raise InvalidArgumentError(f"{p}: not a COCO file (no 'images' and 'annotations' lists)")
    categories = _coco_categories(doc.get("categories"), p)
    if not categories:
        raise InvalidArgumentError(f"{p}: no category with keypoint names; not a COCO keypoints file")
    by_id: dict[int | str, str] = {}
    names_seen: set[str] = set()
    spacing: dict[str, Spacing] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for i, img in enumerate(doc["images"]):
        where = f"{p}: images[{i}]"
        if not isinstance(img, dict):
            raise InvalidArgumentError(f"{where} is {_shown(img)}, not an object")
        image_id, image = img.get("id"), img.get("file_name")
        if not _is_id(image_id):
            raise InvalidArgumentError(f"{where}: id is {_shown(image_id)}; an image id must be an integer or a string")
        if not isinstance(image, str) or not image:
            raise InvalidArgumentError(f"{where}: file_name is {_shown(image)}; it must be a non-empty string")
        if image_id in by_id:
            raise InvalidArgumentError(f"{p}: image id {_shown(image_id)} listed more than once")
        if image in names_seen:
            raise LandmarkError(f"{p}: image {_shown(image)} listed more than once")
        names_seen.add(image)
        by_id[image_id] = image
        height, width = (_coco_side(img, key, where) for key in ("height", "width"))
        if height is not None and width is not None:
            sizes[image] = (height, width)
        if img.get("pixel_spacing_mm") is not None:
            spacing[image] = _spacing(img["pixel_spacing_mm"], image, p)
    names: tuple[str, ...] | None = None
    points: dict[str, npt.NDArray[np.float64]] = {}
    for i, ann in enumerate(doc["annotations"]):
        where = f"{p}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise InvalidArgumentError(f"{where} is {_shown(ann)}, not an object")
        if ann.get("keypoints") is None:
            continue  # not a keypoint annotation (e.g. a plain box)
        label = _shown(ann["id"]) if _is_id(ann.get("id")) else "?"
        image_id, cat = ann.get("image_id"), ann.get("category_id")
        for key, value in (("image_id", image_id), ("category_id", cat)):
            if not _is_id(value):
                raise InvalidArgumentError(f"{where}: {key} is {_shown(value)}; it must be an integer or a string")
        if image_id not in by_id:
            raise InvalidArgumentError(
                f"{p}: annotation {label} refers to image id {_shown(image_id)}, which is not among the images"
            )
        if cat not in categories:
            raise InvalidArgumentError(
                f"{p}: annotation {label} has category {_shown(cat)}, which has no keypoint names"
            )
        cat_names = categories[cat]
        image = by_id[image_id]
        if names is None:
            names = cat_names
        elif cat_names != names:
            raise LandmarkError(
                f"{p}: image {image} has landmarks {_listed(cat_names)}, other images {_listed(names)}; "
                "the landmarks must be the same for every image"
            )
        if image in points:
            raise LandmarkError(f"{p}: image {image} has more than one keypoint annotation")
        points[image] = _coco_points(ann["keypoints"], names, image, f"{where} (image {image})", p)
    if names is None:
        raise InvalidArgumentError(f"{p}: no keypoint annotations")
    return Annotations(
        names=names,
        points=points,
        spacing={image: sp for image, sp in spacing.items() if image in points},
        image_sizes={image: hw for image, hw in sizes.items() if image in points},
        source=str(p),
    )


def _coco_categories(value: Any, p: Path) -> dict[int | str, tuple[str, ...]]:
    """Category id → landmark names, for the categories that have keypoint names."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise InvalidArgumentError(f"{p}: categories is {_shown(value)}, not an array")
    categories: dict[int | str, tuple[str, ...]] = {}
    for i, c in enumerate(value):
        where = f"{p}: categories[{i}]"
        if not isinstance(c, dict):
            raise InvalidArgumentError(f"{where} is {_shown(c)}, not an object")
        names = c.get("keypoints")
        if names is None or names == []:
            continue  # a category of other annotations (e.g. boxes)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidArgumentError(
                f"{where}: keypoints is {_shown(names)}; it must be an array of landmark names (strings)"
            )
        cat = c.get("id")
        if not _is_id(cat):
            raise InvalidArgumentError(f"{where}: id is {_shown(cat)}; a category id must be an integer or a string")
        if cat in categories:
            raise InvalidArgumentError(f"{p}: category id {_shown(cat)} listed more than once")
        counts = Counter(names)
        dup = [n for n, k in counts.items() if k > 1]
        if dup:
            raise LandmarkError(f"{where}: landmark(s) {_listed(dup)} named more than once in its keypoints")
        categories[cat] = tuple(names)
    return categories


def _coco_side(img: dict[str, Any], key: str, where: str) -> int | None:
    """An image's ``width`` or ``height``: ``None`` where not given, else a whole number of
    pixels from 1 to :data:`~cephspine.io._checks.MAX_SIDE_PX`."""
    value = img.get(key)
    if value is None:
        return None
    side = _as_float(value) if _is_number(value) else math.nan
    if not (side.is_integer() and 1 <= side <= MAX_SIDE_PX):
        raise InvalidArgumentError(
            f"{where}: {key} is {_shown(value)}; it must be a whole number of pixels from 1 to {MAX_SIDE_PX}"
        )
    return int(side)


def _coco_points(keypoints: Any, names: tuple[str, ...], image: str, where: str, p: Path) -> npt.NDArray[np.float64]:
    """The ``(N, 2)`` positions of a flat ``[x, y, v] * N`` keypoints array (``null`` is
    taken as a position that is not finite)."""
    n = len(names)
    form = "they must be a flat array of numbers [x, y, v] * N"
    if not isinstance(keypoints, list):
        raise InvalidArgumentError(f"{where}: keypoints is {_shown(keypoints)}; {form}")
    for v in keypoints:
        if v is not None and not _is_number(v):
            raise InvalidArgumentError(f"{where}: keypoints hold {_shown(v)}; {form}")
    if len(keypoints) != 3 * n:
        raise LandmarkError(f"{p}: image {image}: {len(keypoints)} keypoint values where {n} landmarks need {3 * n}")
    kp = np.array([math.nan if v is None else _as_float(v) for v in keypoints], dtype=np.float64).reshape(n, 3)
    odd = [names[i] for i in np.flatnonzero(~np.isin(kp[:, 2], (0, 1, 2)))]
    if odd:
        raise InvalidArgumentError(f"{where}: landmark(s) {_listed(odd)} have a visibility v other than 0, 1 or 2")
    missing = [names[i] for i in np.flatnonzero(kp[:, 2] == 0)]
    if missing:
        raise LandmarkError(f"{p}: image {image}: landmark(s) {_listed(missing)} not labelled (v = 0)")
    xy = kp[:, :2].copy()
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(xy).all(axis=1))]
    if bad:
        raise LandmarkError(f"{p}: image {image}: landmark(s) {_listed(bad)} have no finite position")
    return xy


# --------------------------------------------------------------------------- CSV


def _read_csv(p: Path, data: bytes) -> Annotations:
    import pandas as pd

    from cephspine._csvcells import unescape_frame

    try:
        df = pd.read_csv(io.BytesIO(data), dtype={"image": str, "landmark": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"{p}: not a readable CSV file ({exc})") from None
    df = unescape_frame(df, ("image", "landmark"))  # names a cephspine CSV escaped for spreadsheets
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


SPACING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("row_mm", "col_mm"),
    ("spacing_row_mm", "spacing_col_mm"),
    ("spacing_mm", "spacing_mm"),
)
"""The (row, column) spacing columns of a CSV file, in the order looked for: ``row_mm,
col_mm``, then ``spacing_row_mm, spacing_col_mm`` (as cephspine's landmark CSVs have
them), then ``spacing_mm`` (square pixels)."""


def spacing_columns(columns: Iterable[Any]) -> tuple[str, str] | None:
    """The columns holding the row and column spacing among ``columns`` (see
    :data:`SPACING_COLUMNS`), or ``None`` when there are none."""
    have = {str(c) for c in columns}
    return next((pair for pair in SPACING_COLUMNS if set(pair) <= have), None)


def _csv_spacing(df: Any, idx: npt.NDArray[np.intp], image: str, p: Path) -> Spacing | None:
    """The spacing of one image's rows (see :func:`spacing_columns`), or ``None`` where the
    file has no spacing for it."""
    import pandas as pd

    cols = spacing_columns(df.columns)
    if cols is None:
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
    """A pixel spacing from a ``[row, col]`` pair of numbers, which must be positive, finite and
    within the range of radiographs (:func:`cephspine.radiograph.implausible_spacing`)."""
    if not isinstance(values, (list, tuple)) or len(values) != 2 or not all(_is_number(v) for v in values):
        raise InvalidArgumentError(f"{p}: image {image}: pixel spacing {_shown(values)} is not two numbers")
    row, col = (_as_float(v) for v in values)
    if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
        raise InvalidArgumentError(f"{p}: image {image}: pixel spacing {_shown(values)} is not positive and finite")
    reason = implausible_spacing((row, col))
    if reason:
        raise InvalidArgumentError(f"{p}: image {image}: pixel spacing {_shown(values)}: {reason}")
    return Spacing(row, col)


# --------------------------------------------------------------------------- image sizes


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, from its header where possible, within the
    sizes :func:`cephspine.load_image` accepts."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large to decode safely: {exc}") from None
    except Exception:  # not a format Pillow reads (DICOM), or a header it cannot parse: load_image tells
        from cephspine.io import load_image

        return tuple(int(v) for v in load_image(path).shape)  # type: ignore[return-value]
    check_shape(int(h), int(w), path)
    return int(h), int(w)


def _with_folder_sizes(ann: Annotations, folder: Path, p: Path) -> Annotations:
    if not folder.is_dir():
        raise InputNotFoundError(f"{folder}: no such image folder (given with the annotations {p})")
    root = folder.resolve()
    sizes = dict(ann.image_sizes)
    for image in ann.points:
        sizes[image] = _image_size(_image_file(image, root, folder, p))
    return Annotations(names=ann.names, points=ann.points, spacing=ann.spacing, image_sizes=sizes, source=ann.source)


def _image_file(image: str, root: Path, folder: Path, p: Path) -> Path:
    """The regular file an image name gives in the folder ``root`` (resolved).

    A name that is absolute or leads out of the folder (through ``..`` or a symbolic link)
    is refused before the file it names is opened, with the same error whether or not
    that file exists.
    """
    outside = InvalidArgumentError(
        f"{p}: image {_shown(image)} is not a path inside the image folder {folder}; image names must be "
        "relative paths that stay in it"
    )
    if not image or "\0" in image or os.path.isabs(image) or Path(image).anchor:
        raise outside
    parts = Path(os.path.normpath(image)).parts
    if parts and parts[0] == os.pardir:
        raise outside
    try:
        target = (root / image).resolve()
    except (OSError, RuntimeError, ValueError):
        raise outside from None
    if not target.is_relative_to(root):
        raise outside
    try:
        st = os.stat(target)
    except (OSError, ValueError):
        raise InputNotFoundError(f"{p}: image {image} is not in {folder}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgumentError(f"{p}: image {image} in {folder} is not a regular file")
    return target


def _check_inside(ann: Annotations, p: Path) -> None:
    """Every point of an image of known size lies within it (a pixel's centre ± 0.5 px)."""
    for image, (h, w) in ann.image_sizes.items():
        xy = ann.points[image]
        outside = (xy[:, 0] < -0.5) | (xy[:, 0] > w - 0.5) | (xy[:, 1] < -0.5) | (xy[:, 1] > h - 0.5)
        if outside.any():
            where = [f"{ann.names[i]} ({xy[i, 0]:g}, {xy[i, 1]:g})" for i in np.flatnonzero(outside)]
            raise LandmarkError(f"{p}: image {image}: landmark(s) outside the image ({w} × {h} px): {_listed(where)}")
