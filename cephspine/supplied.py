"""Landmarks supplied by a person (corrected, or placed by hand) instead of detected.

``cephspine.analyze(image, kind="ceph", landmarks=...)`` computes everything from the
supplied points and runs no detector. The landmarks are

- an ``(N, 2)`` array of ``(x, y)`` positions in original-image pixels, in the model's
  landmark order (:data:`cephspine.anatomy.CEPH_LANDMARKS` or
  :data:`~cephspine.anatomy.SPINE_LANDMARKS`);
- a DataFrame or a CSV file in the tidy layout ``landmark, x_px, y_px`` (other columns
  are ignored, so a landmark table written by ``cephspine predict -f csv``,
  :meth:`~cephspine.Analysis.landmarks_dataframe` or a cohort's ``landmarks_out`` can be
  edited and read back). Landmark names are the model's (``sella``, ``T1_TL``); a
  cephalogram's may also be abbreviations (``S``, ``Pog'``). With an ``image`` column the
  rows of the analysed image are taken: those whose ``image`` is its file name (or the
  key a cohort table gives it, :func:`~cephspine.cohorts.image_key`), or a path to a file
  of that name. Text cells that cephspine escaped for spreadsheets (a leading apostrophe
  before ``=``, ``+``, ``-``, ``@``, ...; :mod:`cephspine._csvcells`) are read without it.

:func:`supplied_prediction` turns them into the :class:`~cephspine.Prediction` every
later step reads: its :attr:`~cephspine.Prediction.model` is :data:`SUPPLIED_MODEL`, its
confidences are NaN (a person's point has none), ``meta["landmarks_file"]`` names the
file they came from, and ``meta["mirrored"]`` says whether the profile faces left (from
the landmarks: nasion, ANS and orbitale in front of sella, PNS and porion). No
low-confidence or wrong-anatomy check is made on them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cephspine._csvcells import unescape_frame
from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS, landmark_names
from cephspine.errors import InputNotFoundError, InvalidArgumentError, LandmarkError
from cephspine.prediction import SUPPLIED_MODEL, Prediction
from cephspine.radiograph import Radiograph

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LANDMARK_COLUMNS", "SUPPLIED_MODEL", "read_landmarks", "supplied_prediction"]

LANDMARK_COLUMNS: tuple[str, ...] = ("landmark", "x_px", "y_px")
"""The columns a table of supplied landmarks must have (an ``image`` column is optional)."""

_SHOWN = 8  # names listed in an error before "and N more"


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(str(i) for i in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _label(landmarks: Any) -> str:
    """How errors name the landmarks: the file as given, or what was passed."""
    if isinstance(landmarks, (str, os.PathLike)):
        return os.fspath(landmarks)
    if isinstance(landmarks, (np.ndarray, list, tuple)):
        return "landmarks array"
    return "landmarks table"


def _aliases(kind: str) -> dict[str, int]:
    """Landmark name (and, for a cephalogram, abbreviation) → index in model order."""
    names = landmark_names(kind)
    out = {n: i for i, n in enumerate(names)}
    if kind == "ceph":
        out |= {a: i for i, a in enumerate(CEPH_ABBREVIATIONS)}
    return out


MAX_LANDMARKS_BYTES = 64 * 2**20
"""Largest landmarks CSV that ``analyze(landmarks=...)`` reads (a regular file only)."""


def _read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    import pandas as pd

    from cephspine.io.bounded import read_bounded

    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise InputNotFoundError(f"{os.fspath(path)}: landmarks file not found")
    if p.is_dir():
        raise InvalidArgumentError(f"{os.fspath(path)}: is a folder, not a landmarks file (CSV)")
    try:
        # lines starting with '#' are comments; a '#' inside a line (an image called
        # "case#12.png") is data, so pandas' comment= (which cuts every line at '#') is not used
        raw = read_bounded(p, MAX_LANDMARKS_BYTES).decode("utf-8-sig")
        text = "".join(line for line in io.StringIO(raw, newline="") if not line.lstrip().startswith("#"))
        df = pd.read_csv(io.StringIO(text), dtype={"landmark": str, "image": str}, skipinitialspace=True)
        return unescape_frame(df, ("landmark", "image"))  # names a cephspine CSV escaped for spreadsheets
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LandmarkError(f"{os.fspath(path)}: not a readable CSV table of landmarks ({exc})") from None
    except OSError as exc:
        raise LandmarkError(f"{os.fspath(path)}: cannot be read ({exc.strerror or exc})") from None


def _image_rows(df: pd.DataFrame, image_name: str | None, label: str) -> pd.DataFrame:
    """The rows of ``df`` for the image ``image_name`` (all of them without an ``image``
    column, or when it is empty)."""
    if "image" not in df.columns:
        return df
    cells = df["image"].astype("string").str.strip()
    present = cells.notna() & (cells != "")
    if not present.any():
        return df
    images = list(dict.fromkeys(cells[present]))
    if image_name is None or image_name == "<array>":
        if len(images) == 1:
            return df[present]
        raise LandmarkError(
            f"{label}: holds the landmarks of {len(images)} images ({_listed(images)}); an image given as an "
            "array has no file name to choose its rows by: pass a table of that image's landmarks only"
        )
    from cephspine.cohorts.columns import escape_key

    keyed = escape_key(image_name)  # how a cohort table names it
    matches = [i for i in images if i in (image_name, keyed) or Path(str(i)).name in (image_name, keyed)]
    if not matches:
        raise LandmarkError(f"{label}: no landmarks for image {image_name} (the file has {_listed(images)})")
    if len(matches) > 1:
        raise LandmarkError(f"{label}: rows of several images match {image_name} ({_listed(matches)}); keep one")
    return df[cells == matches[0]]


def _from_table(df: pd.DataFrame, kind: str, image_name: str | None, label: str) -> npt.NDArray[np.float64]:
    import pandas as pd

    missing_cols = [c for c in LANDMARK_COLUMNS if c not in df.columns]
    if missing_cols:
        raise LandmarkError(
            f"{label}: needs the columns {', '.join(LANDMARK_COLUMNS)} (optional: image); "
            f"missing {', '.join(missing_cols)} (columns found: {_listed([str(c) for c in df.columns])})"
        )
    rows = _image_rows(df, image_name, label)
    names = landmark_names(kind)
    n = len(names)
    aliases = _aliases(kind)
    given = [str(v).strip() if not pd.isna(v) else "" for v in rows["landmark"]]
    unknown = [g or "(empty)" for g in given if g not in aliases]
    if unknown:
        example = "sella, nasion, … or S, N, …" if kind == "ceph" else "T1_TL, T1_TR, …, L5_BR"
        raise LandmarkError(
            f"{label}: unknown landmark name(s) {_listed(unknown)} for {kind} (its {n} landmarks are named "
            f"{example}; see cephspine.anatomy)"
        )
    idx = [aliases[g] for g in given]
    counts = np.bincount(np.asarray(idx, dtype=np.intp), minlength=n) if idx else np.zeros(n, dtype=np.intp)
    dup = [names[i] for i in np.flatnonzero(counts > 1)]
    if dup:
        raise LandmarkError(f"{label}: landmark(s) {_listed(dup)} given more than once")
    missing = [names[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        raise LandmarkError(f"{label}: {len(given)} landmarks where {kind} needs all {n}; missing {_listed(missing)}")
    xy = np.full((n, 2), np.nan)
    for col, axis in (("x_px", 0), ("y_px", 1)):
        values = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=np.float64)
        xy[idx, axis] = values
    return xy


def read_landmarks(
    landmarks: Any, kind: str, *, image_name: str | None = None
) -> tuple[npt.NDArray[np.float64], str | None]:
    """Supplied landmarks as an ``(N, 2)`` array in model order, and the name of the file
    they came from (``None`` for an array or a DataFrame).

    Args:
        landmarks: an ``(N, 2)`` array (``N`` = 19 for ``"ceph"``, 68 for ``"spine"``, in
            the model's order), a DataFrame or the path of a CSV file with the columns
            ``landmark, x_px, y_px`` (and optionally ``image``).
        kind: ``"ceph"`` or ``"spine"``.
        image_name: the file name of the analysed image, to select its rows of a table
            with an ``image`` column.

    Raises:
        InputNotFoundError: the CSV file does not exist.
        LandmarkError: a wrong number of landmarks, unknown, duplicate or missing names,
            positions that are not finite numbers, a table without the needed columns or
            without rows for the image (each message names the file).
        InvalidArgumentError: ``landmarks`` is of a type that cannot hold landmarks.
    """
    import pandas as pd

    names = landmark_names(kind)
    label = _label(landmarks)
    source: str | None = None
    if isinstance(landmarks, (str, os.PathLike)):
        source = Path(os.fspath(landmarks)).name
        xy = _from_table(_read_table(landmarks), kind, image_name, label)
    elif isinstance(landmarks, pd.DataFrame):
        xy = _from_table(landmarks, kind, image_name, label)
    elif isinstance(landmarks, (np.ndarray, list, tuple)):
        try:
            xy = np.asarray(landmarks, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise LandmarkError(f"{label}: not an array of numbers ({exc})") from None
        if xy.shape != (len(names), 2):
            raise LandmarkError(
                f"{label}: shape {xy.shape}; {kind} needs {len(names)} (x, y) landmarks, shape ({len(names)}, 2), "
                "in the order of cephspine.anatomy"
            )
    else:
        raise InvalidArgumentError(
            "landmarks must be an (N, 2) array, a DataFrame or the path of a CSV file with columns "
            f"landmark, x_px, y_px; got {type(landmarks).__name__}"
        )
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(xy).all(axis=1))]
    if bad:
        raise LandmarkError(f"{label}: landmark(s) {_listed(bad)} have no finite x_px, y_px position")
    return xy, source


def _faces_left(xy: npt.NDArray[np.float64]) -> bool:
    """Whether a cephalogram's profile faces left: nasion, ANS and orbitale lie, taken
    together, at smaller x than sella, PNS and porion."""
    i = {n: k for k, n in enumerate(CEPH_LANDMARKS)}
    pairs = (("sella", "nasion"), ("posterior_nasal_spine", "anterior_nasal_spine"), ("porion", "orbitale"))
    forward = sum(xy[i[b], 0] - xy[i[a], 0] for a, b in pairs)
    return bool(forward < 0)


def supplied_prediction(rg: Radiograph, kind: str, landmarks: Any) -> Prediction:
    """The :class:`~cephspine.Prediction` of landmarks a person supplied for ``rg``.

    Args:
        rg: the radiograph the landmarks were placed on (its size and spacing are used).
        kind: ``"ceph"`` or ``"spine"``.
        landmarks: see :func:`read_landmarks`.

    Returns:
        A prediction with model :data:`SUPPLIED_MODEL`, NaN confidences,
        ``meta["landmarks_file"]`` (the file's name, or ``None``) and ``meta["mirrored"]``
        (a cephalogram facing left).

    Raises:
        LandmarkError: as :func:`read_landmarks`, and for landmarks outside the image
            (a pixel's centre ± 0.5 px).
    """
    names = landmark_names(kind)
    xy, source = read_landmarks(landmarks, kind, image_name=rg.name if rg.source is not None else None)
    h, w = rg.shape
    outside = (xy[:, 0] < -0.5) | (xy[:, 0] > w - 0.5) | (xy[:, 1] < -0.5) | (xy[:, 1] > h - 0.5)
    if outside.any():
        where = [f"{names[i]} ({xy[i, 0]:g}, {xy[i, 1]:g})" for i in np.flatnonzero(outside)]
        raise LandmarkError(
            f"{_label(landmarks)}: landmark(s) outside the image {rg.name} ({w} × {h} px): {_listed(where)}"
        )
    return Prediction(
        names=names,
        xy_px=xy,
        confidence=np.full(len(names), np.nan),
        image_shape=rg.shape,
        spacing=rg.spacing,
        model=SUPPLIED_MODEL,
        model_version="",
        source=rg.name if rg.source is not None else None,
        meta={
            "mirrored": _faces_left(xy) if kind == "ceph" else False,
            "spacing_source": rg.spacing_source,
            "landmarks_file": source,
        },
    )
