"""Readers for the two shared training layouts: ISBI 2015 (cephalograms) and AASCE (spine).

Both are cheap to construct (they list files and, for AASCE, parse the CSV tables);
images are decoded only when a record's ``radiograph`` is asked for. Records with
problems — points outside the image, corners or vertebrae out of order, missing or
unparsable annotation files — are kept and described in ``record.defects`` rather than
raising or being dropped; ``dataset.defective()`` lists them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from cephspine.anatomy import CEPH_LANDMARKS, CORNERS, SPINE_LANDMARKS, VERTEBRAE
from cephspine.errors import DatasetError
from cephspine.radiograph import Radiograph, Spacing

ISBI_SPACING = Spacing(0.1, 0.1)
"""Pixel spacing of the ISBI 2015 images, mm (row, col)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

GroundTruth = Literal["mean", "senior", "junior"]


class Defect(NamedTuple):
    """One problem found in a dataset record.

    Attributes:
        kind: a short machine-readable tag: ``"missing_image"``, ``"unreadable_image"``,
            ``"missing_annotation"``, ``"bad_annotation"``, ``"missing_points"``,
            ``"outside_image"``, ``"corner_order"``, ``"vertebra_order"``,
            ``"missing_angles"``.
        message: a human-readable explanation.
    """

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def _image_shape(path: Path) -> tuple[tuple[int, int] | None, Defect | None]:
    """``(height, width)`` from the image header, without decoding the pixels."""
    if not path.is_file():
        return None, Defect("missing_image", f"image file {path.name} not found")
    try:
        from PIL import Image

        with Image.open(path) as im:
            width, height = im.size
    except Exception as exc:
        return None, Defect("unreadable_image", f"cannot read the header of {path.name}: {exc}")
    return (int(height), int(width)), None


def _outside(xy: npt.NDArray[np.float64], shape: tuple[int, int] | None, names: tuple[str, ...]) -> list[Defect]:
    """Points outside the image: x or y beyond [-0.5, size - 0.5] (pixel-centre origin)."""
    if shape is None:
        return []
    height, width = shape
    with np.errstate(invalid="ignore"):
        bad = (xy[:, 0] < -0.5) | (xy[:, 0] > width - 0.5) | (xy[:, 1] < -0.5) | (xy[:, 1] > height - 0.5)
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return []
    listed = ", ".join(f"{names[i]} ({xy[i, 0]:g}, {xy[i, 1]:g})" for i in idx[:5])
    more = f" and {idx.size - 5} more" if idx.size > 5 else ""
    return [
        Defect(
            "outside_image",
            f"{idx.size} point(s) outside the {height}x{width} px image: {listed}{more}",
        )
    ]


def _missing(xy: npt.NDArray[np.float64], total: int) -> list[Defect]:
    n = int(np.isnan(xy).any(axis=1).sum())
    return [Defect("missing_points", f"{n} of {total} points missing")] if n else []


# --------------------------------------------------------------------------- ISBI 2015


@dataclass(frozen=True, eq=False)
class IsbiRecord:
    """One ISBI 2015 cephalogram with both doctors' landmarks.

    Attributes:
        id: the image stem, e.g. ``"001"``.
        image_path: the image file.
        senior: ``(19, 2)`` senior doctor's ``(x, y)`` points, pixels; NaN where missing.
        junior: ``(19, 2)`` junior doctor's points, pixels; NaN where missing.
        landmarks: ``(19, 2)`` ground truth, pixels: the mean of the two doctors by
            default, or one doctor (see :class:`IsbiDataset`).
        image_shape: ``(height, width)`` from the file header, or ``None`` if unreadable.
        defects: problems found (empty for a clean record).
    """

    id: str
    image_path: Path
    senior: npt.NDArray[np.float64]
    junior: npt.NDArray[np.float64]
    landmarks: npt.NDArray[np.float64]
    image_shape: tuple[int, int] | None
    defects: tuple[Defect, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return CEPH_LANDMARKS

    @cached_property
    def radiograph(self) -> Radiograph:
        """The image, decoded on first access, with spacing 0.1 mm (source ``"dataset"``)."""
        from cephspine.io.loader import load_image

        return load_image(self.image_path).with_spacing(ISBI_SPACING, source="dataset")

    def __repr__(self) -> str:
        state = f"{len(self.defects)} defect(s)" if self.defects else "ok"
        return f"IsbiRecord({self.id}, {state})"


class IsbiDataset:
    """The ISBI 2015 layout: ``images/NNN.jpg``, ``senior/NNN.txt``, ``junior/NNN.txt``.

    Each txt file holds one ``x,y`` line per landmark (pixels) in the challenge order;
    lines after the 19th (the original files' classification lines) are ignored.

    Args:
        root: the folder containing ``images/``, ``senior/`` and ``junior/``.
        ground_truth: ``"mean"`` (default, as in the literature since the seed paper),
            or ``"senior"`` / ``"junior"`` to compare with challenge-era results scored
            against one doctor.

    Raises:
        DatasetError: when a folder is missing or ``ground_truth`` is unknown.

    Example:
        >>> ds = IsbiDataset("data/isbi2015")
        >>> rec = ds["001"]
        >>> rec.landmarks.shape, rec.radiograph.spacing
        ((19, 2), Spacing(row_mm=0.1, col_mm=0.1))
    """

    def __init__(self, root: str | Path, *, ground_truth: GroundTruth = "mean") -> None:
        self.root = Path(root)
        if ground_truth not in ("mean", "senior", "junior"):
            raise DatasetError(f"{self.root}: ground_truth must be 'mean', 'senior' or 'junior', got {ground_truth!r}")
        self.ground_truth: GroundTruth = ground_truth
        for sub in ("images", "senior", "junior"):
            if not (self.root / sub).is_dir():
                raise DatasetError(f"{self.root}: not an ISBI 2015 folder, '{sub}/' is missing")
        images = sorted(p for p in (self.root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self._paths: dict[str, Path] = {p.stem: p for p in images}
        self.ids: tuple[str, ...] = tuple(self._paths)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item: object) -> bool:
        return item in self._paths

    def __iter__(self) -> Iterator[IsbiRecord]:
        for id_ in self.ids:
            yield self[id_]

    def __getitem__(self, key: int | str) -> IsbiRecord:
        """A record by position or by id (``"001"``); built fresh on each access."""
        id_ = self._key(key)
        path = self._paths[id_]
        defects: list[Defect] = []
        shape, problem = _image_shape(path)
        if problem:
            defects.append(problem)
        senior = self._read_points("senior", id_, defects)
        junior = self._read_points("junior", id_, defects)
        if self.ground_truth == "mean":
            landmarks = (senior + junior) / 2.0
        else:
            landmarks = senior if self.ground_truth == "senior" else junior
        for who, xy in (("senior", senior), ("junior", junior)):
            for d in _outside(xy, shape, CEPH_LANDMARKS):
                defects.append(Defect(d.kind, f"{who}: {d.message}"))
        return IsbiRecord(id_, path, senior, junior, landmarks, shape, tuple(defects))

    def _key(self, key: int | str) -> str:
        if isinstance(key, str):
            if key not in self._paths:
                raise KeyError(f"{self.root}: no image with id {key!r}")
            return key
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self.ids[int(key)]
        raise TypeError(f"record keys are ints or id strings, got {type(key).__name__}")

    def _read_points(self, who: str, id_: str, defects: list[Defect]) -> npt.NDArray[np.float64]:
        n = len(CEPH_LANDMARKS)
        xy = np.full((n, 2), np.nan)
        path = self.root / who / f"{id_}.txt"
        if not path.is_file():
            defects.append(Defect("missing_annotation", f"{who}/{path.name} not found"))
            return xy
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            defects.append(Defect("bad_annotation", f"{who}/{path.name}: unreadable ({exc})"))
            return xy
        for i, line in enumerate(lines[:n]):
            parts = line.replace(";", ",").replace(" ", ",").split(",")
            values = [p for p in parts if p]
            try:
                x, y = (float(v) for v in values)
            except ValueError:
                defects.append(Defect("bad_annotation", f"{who}/{path.name} line {i + 1}: {line!r}"))
                continue
            if math.isfinite(x) and math.isfinite(y):
                xy[i] = (x, y)
        if len(lines) < n:
            defects.append(Defect("bad_annotation", f"{who}/{path.name} has {len(lines)} of {n} lines"))
        defects.extend(Defect(d.kind, f"{who}: {d.message}") for d in _missing(xy, n))
        return xy

    def defective(self) -> dict[str, tuple[Defect, ...]]:
        """Every record with at least one defect: ``{id: defects}`` (reads headers only)."""
        return {rec.id: rec.defects for rec in self if rec.defects}

    def __repr__(self) -> str:
        return f"IsbiDataset({str(self.root)!r}, {len(self)} images, ground truth {self.ground_truth})"


# --------------------------------------------------------------------------- AASCE


@dataclass(frozen=True, eq=False)
class AasceRecord:
    """One AASCE spinal AP radiograph with its 68 corners and reference Cobb angles.

    Attributes:
        id: the image file name, e.g. ``"sunhl-1th-02-Jan-2017-162_A_AP.jpg"``.
        image_path: the image file.
        landmarks: ``(68, 2)`` ``(x, y)`` pixels, T1 TL … L5 BR; NaN where missing.
        angles_deg: ``(3,)`` reference angles ``(pt, mt, tl)`` in degrees (the
            dataset's naming; the first is the largest curve), NaN when absent.
        source_name: the original file name (with spaces), or ``None``.
        image_shape: ``(height, width)`` from the header, or ``None`` if unreadable.
        defects: problems found (empty for a clean record).
    """

    id: str
    image_path: Path
    landmarks: npt.NDArray[np.float64]
    angles_deg: npt.NDArray[np.float64]
    source_name: str | None
    image_shape: tuple[int, int] | None
    defects: tuple[Defect, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return SPINE_LANDMARKS

    @cached_property
    def radiograph(self) -> Radiograph:
        """The image, decoded on first access; spacing unknown (the dataset has none)."""
        from cephspine.io.loader import load_image

        return load_image(self.image_path)

    def __repr__(self) -> str:
        state = f"{len(self.defects)} defect(s)" if self.defects else "ok"
        return f"AasceRecord({self.id}, {state})"


_LANDMARK_COLUMNS = ("image", "vertebra", "corner", "x_px", "y_px")
_ANGLE_COLUMNS = ("image", "pt_deg", "mt_deg", "tl_deg")


class AasceDataset:
    """The AASCE layout: ``images/*.jpg``, ``landmarks.csv``, and optionally ``angles.csv``.

    ``landmarks.csv`` is tidy (``image, vertebra, corner, x_px, y_px``; 68 rows per
    image); ``angles.csv`` has ``image, source_name, pt_deg, mt_deg, tl_deg``. Records
    are the images named in ``landmarks.csv`` followed by image files it does not name.

    Checks reported as defects: missing image or points, unknown vertebra/corner labels
    or duplicated points, points outside the image, corners out of order within a
    vertebra (TL left of TR, BL left of BR, top corners above bottom ones), vertebrae
    out of order (each centre below the previous one), and missing angles.

    Args:
        root: the folder containing ``images/`` and ``landmarks.csv``.

    Raises:
        DatasetError: missing folder/table, or a table without the expected columns.
    """

    def __init__(self, root: str | Path) -> None:
        import pandas as pd

        self.root = Path(root)
        csv = self.root / "landmarks.csv"
        if not csv.is_file():
            raise DatasetError(f"{self.root}: not an AASCE folder, 'landmarks.csv' is missing")
        if not (self.root / "images").is_dir():
            raise DatasetError(f"{self.root}: not an AASCE folder, 'images/' is missing")
        table = self._read_table(pd, csv, _LANDMARK_COLUMNS)
        self._points: dict[str, npt.NDArray[np.float64]] = {}
        self._table_defects: dict[str, list[Defect]] = {}
        self._parse_landmarks(pd, table)
        self._angles: dict[str, tuple[npt.NDArray[np.float64], str | None]] = {}
        self.has_angles = (self.root / "angles.csv").is_file()
        if self.has_angles:
            angles = self._read_table(pd, self.root / "angles.csv", _ANGLE_COLUMNS)
            values = angles[["pt_deg", "mt_deg", "tl_deg"]].apply(pd.to_numeric, errors="coerce")
            names = angles["source_name"] if "source_name" in angles else [None] * len(angles)
            rows = values.to_numpy(float)
            for image, row, src in zip(angles["image"], rows, names, strict=True):
                self._angles[str(image)] = (row, None if pd.isna(src) else str(src))
        files = sorted(p.name for p in (self.root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        extra = [f for f in files if f not in self._points]
        self.ids: tuple[str, ...] = tuple(self._points) + tuple(extra)
        self._index = {id_: i for i, id_ in enumerate(self.ids)}

    @staticmethod
    def _read_table(pd: Any, path: Path, columns: tuple[str, ...]) -> Any:
        try:
            table = pd.read_csv(path, dtype={"image": str, "vertebra": str, "corner": str})
        except Exception as exc:
            raise DatasetError(f"{path}: cannot read the table ({exc})") from exc
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing}; expected {list(columns)}")
        return table

    def _parse_landmarks(self, pd: Any, table: Any) -> None:
        v_index = {v: i for i, v in enumerate(VERTEBRAE)}
        c_index = {c: i for i, c in enumerate(CORNERS)}
        vi = table["vertebra"].map(v_index)
        ci = table["corner"].map(c_index)
        xs = pd.to_numeric(table["x_px"], errors="coerce").to_numpy(float)
        ys = pd.to_numeric(table["y_px"], errors="coerce").to_numpy(float)
        k = (vi * 4 + ci).to_numpy(float)
        groups = table.groupby(table["image"].astype(str), sort=False).indices
        n = len(SPINE_LANDMARKS)
        for image, rows in groups.items():
            xy = np.full((n, 2), np.nan)
            defects: list[Defect] = []
            kk = k[rows]
            unknown = np.isnan(kk)
            if unknown.any():
                labels = sorted(f"{table['vertebra'].iat[r]}/{table['corner'].iat[r]}" for r in rows[unknown])
                defects.append(Defect("bad_annotation", f"unknown vertebra/corner label(s): {labels}"))
            known = rows[~unknown]
            kint = k[known].astype(int)
            values, counts = np.unique(kint, return_counts=True)
            dup = values[counts > 1]
            if dup.size:
                defects.append(
                    Defect(
                        "bad_annotation",
                        "duplicated point(s) " + ", ".join(SPINE_LANDMARKS[i] for i in dup) + "; the last row is used",
                    )
                )
            xy[kint, 0] = xs[known]
            xy[kint, 1] = ys[known]
            self._points[str(image)] = xy
            self._table_defects[str(image)] = defects

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __iter__(self) -> Iterator[AasceRecord]:
        for id_ in self.ids:
            yield self[id_]

    def __getitem__(self, key: int | str) -> AasceRecord:
        """A record by position or by image file name; built fresh on each access."""
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"{self.root}: no image {key!r}")
            id_ = key
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            id_ = self.ids[int(key)]
        else:
            raise TypeError(f"record keys are ints or image names, got {type(key).__name__}")
        n = len(SPINE_LANDMARKS)
        path = self.root / "images" / id_
        defects: list[Defect] = []
        shape, problem = _image_shape(path)
        if problem:
            defects.append(problem)
        if id_ in self._points:
            xy = self._points[id_].copy()
            defects.extend(self._table_defects[id_])
        else:
            xy = np.full((n, 2), np.nan)
            defects.append(Defect("missing_annotation", "image not listed in landmarks.csv"))
        if id_ in self._points:
            defects.extend(_missing(xy, n))
        defects.extend(_outside(xy, shape, SPINE_LANDMARKS))
        defects.extend(spine_order_defects(xy))
        angles, source_name = self._angles.get(id_, (np.full(3, np.nan), None))
        if self.has_angles and np.isnan(angles).any():
            defects.append(Defect("missing_angles", "no reference angles in angles.csv"))
        return AasceRecord(id_, path, xy, angles.copy(), source_name, shape, tuple(defects))

    def defective(self) -> dict[str, tuple[Defect, ...]]:
        """Every record with at least one defect: ``{id: defects}`` (reads headers only)."""
        return {rec.id: rec.defects for rec in self if rec.defects}

    def __repr__(self) -> str:
        return f"AasceDataset({str(self.root)!r}, {len(self)} images)"


def spine_order_defects(xy: npt.NDArray[np.float64]) -> list[Defect]:
    """Corner-order and vertebra-order problems of a ``(68, 2)`` spine annotation (pixels).

    Within a vertebra, TL must be left of TR and BL left of BR (smaller x), and TL above
    BL and TR above BR (smaller y). Each vertebra's centre (mean of its corners) must lie
    below the previous one's. Missing (NaN) points are skipped.

    Returns:
        A list of :class:`Defect` (``"corner_order"``, ``"vertebra_order"``), empty if fine.
    """
    v = np.asarray(xy, dtype=np.float64).reshape(len(VERTEBRAE), 4, 2)
    tl, tr, bl, br = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
    checks = (
        (tl[:, 0] >= tr[:, 0], "TL not left of TR"),
        (bl[:, 0] >= br[:, 0], "BL not left of BR"),
        (tl[:, 1] >= bl[:, 1], "TL not above BL"),
        (tr[:, 1] >= br[:, 1], "TR not above BR"),
    )
    problems: dict[int, list[str]] = {}
    for bad, text in checks:
        for j in np.flatnonzero(bad):
            problems.setdefault(int(j), []).append(text)
    defects = [
        Defect("corner_order", f"{VERTEBRAE[i]}: corners out of order ({'; '.join(msgs)})")
        for i, msgs in sorted(problems.items())
    ]
    centre_y = v[:, :, 1].mean(axis=1)
    for i in range(1, len(VERTEBRAE)):
        if centre_y[i] <= centre_y[i - 1]:  # NaN compares False: skipped
            defects.append(
                Defect(
                    "vertebra_order",
                    f"{VERTEBRAE[i]} centre (y={centre_y[i]:.1f}) is not below "
                    f"{VERTEBRAE[i - 1]} (y={centre_y[i - 1]:.1f})",
                )
            )
    return defects


def parse_ids(spec: str) -> list[str]:
    """Image ids from a command-line style list: ``"121-150"`` gives zero-padded ids
    ``"121" … "150"`` (the width of the first number), ``"001,005"`` gives them as written,
    and both forms can be combined (``"001-003,010"``)."""
    out: list[str] = []
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        if sep and lo.isdigit() and hi.isdigit():
            out.extend(f"{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1))
        elif part.strip():
            out.append(part.strip())
    return out
