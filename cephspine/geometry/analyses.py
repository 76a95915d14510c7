"""Named cephalometric analyses (Steiner, Downs, Tweed, Björk–Jarabak, McNamara, Holdaway,
Burstone–Legan, Ricketts) on the 19 ISBI 2015 landmarks.

:func:`ceph_analyses` returns one row per measure: the measures the ISBI landmarks allow
exactly (``domain.md`` §5) with their norms and a flag, and — as rows with no value — the
measures of these analyses that need points the ISBI set lacks (incisor apices, pronasale,
condylion, molar cusps, Xi), never approximated.

Geometry, in millimetres (``X_mm = (x · col_mm, y · row_mm)``), image axes, y down:

- ``v(P, Q) = Q − P``; ``ang(u, w)`` the unsigned angle between two vectors, in [0°, 180°];
- ``line(P, Q, R, T)`` the acute angle between the lines P–Q and R–T, in [0°, 90°];
- ``u`` the unit vector porion → orbitale (anterior along Frankfort horizontal), ``w`` it
  turned by 90° with ``(Me − N)·w > 0`` (inferior, perpendicular to FH);
- ``n(P, Q)`` the unit normal of the line P–Q with ``n·u > 0`` (pointing anterior); the
  signed distance of X from that line is ``(X − P)·n(P, Q)``.

Every value is unchanged by a rigid motion of the landmarks and by mirroring them (a
left-facing profile needs no ``facing`` argument): the signed measures take their sign
from ``u``, ``w`` and ``n``, which turn and mirror with the head.

The norms ship as a data file beside this module (``analysis_norms.csv``), each with its
source and population (:func:`shipped_norms`); a clinic's own norms replace them by key
(``norms=``, :func:`read_norms`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS
from cephspine.errors import InputNotFoundError, InvalidArgumentError, LandmarkError
from cephspine.prediction import Prediction
from cephspine.radiograph import Spacing, as_spacing

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ANALYSES",
    "ANALYSIS_COLUMNS",
    "ANALYSIS_KEYS",
    "ANALYSIS_MEASURES",
    "NORM_COLUMNS",
    "AnalysisMeasure",
    "analysis_name",
    "analysis_values",
    "ceph_analyses",
    "format_measure",
    "format_norm",
    "read_norms",
    "select_analyses",
    "shipped_norms",
]

FloatArray = npt.NDArray[np.float64]

ANALYSES: Final[dict[str, str]] = {
    "steiner": "Steiner",
    "downs": "Downs",
    "tweed": "Tweed",
    "bjork-jarabak": "Björk–Jarabak",
    "mcnamara": "McNamara",
    "holdaway": "Holdaway",
    "burstone-legan": "Burstone–Legan",
    "ricketts": "Ricketts",
}
"""The analyses, short name (as the command line takes it) → name as shown, in table order."""

_ALIASES: Final[dict[str, str]] = {
    "bjork": "bjork-jarabak",
    "björk": "bjork-jarabak",
    "jarabak": "bjork-jarabak",
    "burstone": "burstone-legan",
    "legan": "burstone-legan",
}


@dataclass(frozen=True)
class AnalysisMeasure:
    """One measure of the named analyses.

    Attributes:
        key: the measure's key, also its cohort-table column (``"saddle_angle_deg"``).
        name: its name as shown (``"saddle angle N–S–Ar"``).
        analysis: the analysis it is listed under (a name of :data:`ANALYSES`).
        unit: ``"deg"``, ``"mm"`` or ``"%"``.
        definition: the formula, in words (the module documentation defines the primitives).
        landmarks: the ISBI landmarks (abbreviations) it uses; empty when not available.
        also_in: other analyses that use the measure too.
        needs: for a measure the ISBI landmarks do not allow: the point(s) it needs;
            ``None`` when it is computed.
    """

    key: str
    name: str
    analysis: str
    unit: str
    definition: str
    landmarks: tuple[str, ...] = ()
    also_in: tuple[str, ...] = ()
    needs: str | None = None

    @property
    def available(self) -> bool:
        """Whether the ISBI landmarks allow this measure."""
        return self.needs is None

    @property
    def analyses(self) -> tuple[str, ...]:
        """Every analysis that uses this measure, the one it is listed under first."""
        return (self.analysis, *self.also_in)


def _m(
    key: str,
    name: str,
    analysis: str,
    unit: str,
    definition: str,
    landmarks: str = "",
    also_in: tuple[str, ...] = (),
    needs: str | None = None,
) -> AnalysisMeasure:
    others = tuple(ANALYSES[a] for a in also_in)
    return AnalysisMeasure(key, name, ANALYSES[analysis], unit, definition, tuple(landmarks.split()), others, needs)


_APEX_U = "the upper incisor apex"
_APEX_L = "the lower incisor apex"

ANALYSIS_MEASURES: Final[tuple[AnalysisMeasure, ...]] = (
    # Steiner
    _m("sn_gogn_deg", "SN to GoGn (mandibular plane)", "steiner", "deg",
       "line(S, N, Go, Gn): the acute angle between S–N and gonion–gnathion", "S N Go Gn"),
    _m("fh_sn_deg", "SN to Frankfort horizontal", "steiner", "deg",
       "line(Po, Or, S, N): the acute angle between Frankfort horizontal and S–N", "Po Or S N",
       also_in=("downs",)),
    _m("sn_pp_deg", "SN to palatal plane", "steiner", "deg",
       "line(S, N, PNS, ANS): the acute angle between S–N and the palatal plane", "S N PNS ANS",
       also_in=("bjork-jarabak",)),
    _m("u1_na_deg", "upper incisor to NA", "steiner", "deg",
       "the angle between the upper incisor's long axis and N–A", needs=_APEX_U),
    _m("l1_nb_deg", "lower incisor to NB", "steiner", "deg",
       "the angle between the lower incisor's long axis and N–B", needs=_APEX_L),
    _m("interincisal_angle_deg", "interincisal angle", "steiner", "deg",
       "the angle between the long axes of the upper and lower incisors",
       also_in=("downs",), needs="the upper and lower incisor apices"),
    _m("overjet_mm", "overjet (along Frankfort horizontal)", "steiner", "mm",
       "(UIT − LIT)·u: upper incisor tip ahead of the lower one along FH", "UIT LIT Po Or"),
    _m("overbite_mm", "overbite (perpendicular to Frankfort horizontal)", "steiner", "mm",
       "(UIT − LIT)·w: upper incisor tip below the lower one, perpendicular to FH", "UIT LIT Po Or N Me"),
    # Downs
    _m("facial_angle_deg", "facial angle", "downs", "deg",
       "ang(v(Or, Po), v(N, Pog)): Frankfort horizontal to the facial plane N–Pog", "Or Po N Pog"),
    _m("convexity_deg", "angle of convexity N–A–Pog", "downs", "deg",
       "180 − ang(v(A, N), v(A, Pog)), negative when A lies behind the line N–Pog", "N A Pog Po Or"),
    _m("y_axis_deg", "Y-axis (S–Gn to Frankfort horizontal)", "downs", "deg",
       "ang(v(Po, Or), v(S, Gn))", "Po Or S Gn"),
    _m("occlusal_plane_fh_deg", "cant of the occlusal plane", "downs", "deg",
       "the angle between the occlusal plane and Frankfort horizontal", needs="the molar and premolar cusps"),
    # Tweed
    _m("fh_mp_deg", "Tweed's FMA: Frankfort–mandibular plane (not ISBI's)", "tweed", "deg",
       "line(Po, Or, Go, Me): the acute angle between Frankfort horizontal and Go–Me", "Po Or Go Me",
       also_in=("downs",)),
    _m("impa_deg", "lower incisor to mandibular plane (IMPA)", "tweed", "deg",
       "the angle between the lower incisor's long axis and the mandibular plane", needs=_APEX_L),
    _m("fmia_deg", "lower incisor to Frankfort horizontal (FMIA)", "tweed", "deg",
       "the angle between the lower incisor's long axis and Frankfort horizontal", needs=_APEX_L),
    # Björk–Jarabak
    _m("saddle_angle_deg", "saddle angle N–S–Ar", "bjork-jarabak", "deg",
       "ang(v(S, N), v(S, Ar))", "S N Ar"),
    _m("articular_angle_deg", "articular angle S–Ar–Go", "bjork-jarabak", "deg",
       "ang(v(Ar, S), v(Ar, Go))", "S Ar Go"),
    _m("gonial_angle_deg", "gonial angle Ar–Go–Me", "bjork-jarabak", "deg",
       "ang(v(Go, Ar), v(Go, Me))", "Ar Go Me"),
    _m("bjork_sum_deg", "Björk's sum (saddle + articular + gonial)", "bjork-jarabak", "deg",
       "the saddle, articular and gonial angles added", "N S Ar Go Me"),
    _m("jarabak_ratio_pct", "Jarabak ratio (posterior / anterior face height)", "bjork-jarabak", "%",
       "100 · |S − Go| / |N − Me|", "S Go N Me"),
    _m("u1_sn_deg", "upper incisor to SN", "bjork-jarabak", "deg",
       "the angle between the upper incisor's long axis and S–N", needs=_APEX_U),
    # McNamara
    _m("a_to_nperp_mm", "A point to nasion perpendicular", "mcnamara", "mm",
       "(A − N)·u: A point ahead of the perpendicular to FH through nasion", "A N Po Or"),
    _m("pog_to_nperp_mm", "pogonion to nasion perpendicular", "mcnamara", "mm",
       "(Pog − N)·u: pogonion ahead of the perpendicular to FH through nasion", "Pog N Po Or"),
    _m("lafh_ratio_pct", "lower / total anterior face height", "mcnamara", "%",
       "100 · |ANS − Me| / |N − Me|", "ANS Me N"),
    _m("co_a_mm", "effective midfacial length Co–A", "mcnamara", "mm",
       "|Co − A|", needs="condylion"),
    _m("co_gn_mm", "effective mandibular length Co–Gn", "mcnamara", "mm",
       "|Co − Gn|", needs="condylion"),
    _m("maxillomandibular_difference_mm", "maxillomandibular differential", "mcnamara", "mm",
       "|Co − Gn| − |Co − A|", needs="condylion"),
    # Holdaway
    _m("h_angle_deg", "H angle (H line to N–B)", "holdaway", "deg",
       "line(Pog', UL, B, N): the acute angle between the H line Pog'–UL and N–B", "Pog' UL B N"),
    # Burstone–Legan
    _m("ul_to_snpog_mm", "upper lip to Sn–Pog'", "burstone-legan", "mm",
       "(UL − Sn)·n(Sn, Pog'): upper lip ahead of the line subnasale–soft tissue pogonion",
       "UL Sn Pog' Po Or"),
    _m("ll_to_snpog_mm", "lower lip to Sn–Pog'", "burstone-legan", "mm",
       "(LL − Sn)·n(Sn, Pog'): lower lip ahead of the line subnasale–soft tissue pogonion",
       "LL Sn Pog' Po Or"),
    # Ricketts
    _m("ul_to_eline_mm", "upper lip to E-line", "ricketts", "mm",
       "the upper lip's distance from the line pronasale–soft tissue pogonion", needs="pronasale"),
    _m("ll_to_eline_mm", "lower lip to E-line", "ricketts", "mm",
       "the lower lip's distance from the line pronasale–soft tissue pogonion", needs="pronasale"),
    _m("xi_lower_face_height_deg", "lower face height ANS–Xi–Pm", "ricketts", "deg",
       "the angle at Xi between ANS and protuberance menti", needs="Xi point and protuberance menti"),
)  # fmt: skip
"""Every measure of the named analyses, in table order (grouped by :data:`ANALYSES`)."""

ANALYSIS_KEYS: Final[tuple[str, ...]] = tuple(m.key for m in ANALYSIS_MEASURES if m.available)
"""The keys of the measures computed from the ISBI landmarks (``domain.md`` §5), in table
order: each is a float column of the cohort table."""

_BY_KEY: Final[dict[str, AnalysisMeasure]] = {m.key: m for m in ANALYSIS_MEASURES}

NORM_COLUMNS: Final[tuple[str, ...]] = (
    "key",
    "norm_mean",
    "norm_sd",
    "norm_low",
    "norm_high",
    "norm_source",
    "norm_population",
)
"""The columns of a norms table (``norms=``); ``norm_note`` may be added."""

_NUMBER_COLUMNS = ("norm_mean", "norm_sd", "norm_low", "norm_high")
_TEXT_COLUMNS = ("norm_source", "norm_population", "norm_note")

ANALYSIS_COLUMNS: Final[tuple[str, ...]] = (
    "key",
    "measure",
    "analysis",
    "also_in",
    "value",
    "unit",
    "norm_mean",
    "norm_sd",
    "norm_low",
    "norm_high",
    "norm_source",
    "norm_population",
    "flag",
    "status",
    "note",
    "landmarks",
)
"""The columns of :func:`ceph_analyses`' table, in order."""

_IDX = {abbr: i for i, abbr in enumerate(CEPH_ABBREVIATIONS)}
_N = len(CEPH_LANDMARKS)
_DEGENERATE_REL = 1e-9  # a vector shorter than this fraction of the landmarks' extent counts as zero

NORMS_FILE = "analysis_norms.csv"


# --------------------------------------------------------------------------- geometry


class _Undefined(Exception):
    """A measure cannot be computed on these landmarks (the message says why)."""


class _Geometry:
    """The landmarks in mm and the primitives of ``domain.md`` §5 on them."""

    def __init__(self, mm: FloatArray) -> None:
        self.mm = mm
        finite = mm[np.all(np.isfinite(mm), axis=1)]
        extent = float(np.ptp(finite, axis=0).max()) if len(finite) > 1 else 0.0
        self.tol = _DEGENERATE_REL * extent

    def p(self, abbr: str) -> FloatArray:
        xy = self.mm[_IDX[abbr]]
        if not np.all(np.isfinite(xy)):
            raise _Undefined(f"landmark {abbr} ({CEPH_LANDMARKS[_IDX[abbr]]}) is missing")
        return xy

    def v(self, a: str, b: str) -> FloatArray:
        d = self.p(b) - self.p(a)
        if math.hypot(d[0], d[1]) <= self.tol:
            raise _Undefined(f"{a} and {b} coincide")
        return d

    def unit(self, a: str, b: str) -> FloatArray:
        d = self.v(a, b)
        return d / math.hypot(d[0], d[1])

    @staticmethod
    def ang(u: FloatArray, w: FloatArray) -> float:
        cross = u[0] * w[1] - u[1] * w[0]
        return math.degrees(math.atan2(abs(cross), float(u @ w)))

    def line(self, p: str, q: str, r: str, t: str) -> float:
        a = self.ang(self.v(p, q), self.v(r, t))
        return min(a, 180.0 - a)

    def dist(self, a: str, b: str) -> float:
        d = self.p(b) - self.p(a)
        return math.hypot(d[0], d[1])

    def u(self) -> FloatArray:
        """Unit vector porion → orbitale (anterior along Frankfort horizontal)."""
        return self.unit("Po", "Or")

    def w(self) -> FloatArray:
        """``u`` turned by 90°, pointing inferior: ``(Me − N)·w > 0``."""
        u = self.u()
        w = np.array([-u[1], u[0]])
        s = float(self.v("N", "Me") @ w)
        if abs(s) <= self.tol:
            raise _Undefined("N–Me is parallel to Frankfort horizontal, so 'inferior' is undefined")
        return w if s > 0 else -w

    def n(self, a: str, b: str) -> FloatArray:
        """Unit normal of the line a–b pointing anterior (``n·u > 0``)."""
        d = self.unit(a, b)
        n = np.array([-d[1], d[0]])
        s = float(n @ self.u())
        if abs(s) <= 1e-12:
            raise _Undefined(f"the line {a}–{b} is parallel to Frankfort horizontal, so 'anterior' is undefined")
        return n if s > 0 else -n


def _convexity(g: _Geometry) -> float:
    angle = 180.0 - g.ang(g.v("A", "N"), g.v("A", "Pog"))
    behind = float((g.p("A") - g.p("N")) @ g.n("N", "Pog")) < 0
    return -angle if behind else angle


def _height_ratio(g: _Geometry, a: str, b: str) -> float:
    g.v("N", "Me")  # the denominator must not vanish
    return 100.0 * g.dist(a, b) / g.dist("N", "Me")


def _saddle(g: _Geometry) -> float:
    return g.ang(g.v("S", "N"), g.v("S", "Ar"))


def _articular(g: _Geometry) -> float:
    return g.ang(g.v("Ar", "S"), g.v("Ar", "Go"))


def _gonial(g: _Geometry) -> float:
    return g.ang(g.v("Go", "Ar"), g.v("Go", "Me"))


_COMPUTE: Final[dict[str, Callable[[_Geometry], float]]] = {
    "sn_gogn_deg": lambda g: g.line("S", "N", "Go", "Gn"),
    "fh_sn_deg": lambda g: g.line("Po", "Or", "S", "N"),
    "sn_pp_deg": lambda g: g.line("S", "N", "PNS", "ANS"),
    "overjet_mm": lambda g: float((g.p("UIT") - g.p("LIT")) @ g.u()),
    "overbite_mm": lambda g: float((g.p("UIT") - g.p("LIT")) @ g.w()),
    "facial_angle_deg": lambda g: g.ang(g.v("Or", "Po"), g.v("N", "Pog")),
    "convexity_deg": _convexity,
    "y_axis_deg": lambda g: g.ang(g.v("Po", "Or"), g.v("S", "Gn")),
    "fh_mp_deg": lambda g: g.line("Po", "Or", "Go", "Me"),
    "saddle_angle_deg": _saddle,
    "articular_angle_deg": _articular,
    "gonial_angle_deg": _gonial,
    "bjork_sum_deg": lambda g: _saddle(g) + _articular(g) + _gonial(g),
    "jarabak_ratio_pct": lambda g: _height_ratio(g, "S", "Go"),
    "a_to_nperp_mm": lambda g: float((g.p("A") - g.p("N")) @ g.u()),
    "pog_to_nperp_mm": lambda g: float((g.p("Pog") - g.p("N")) @ g.u()),
    "lafh_ratio_pct": lambda g: _height_ratio(g, "ANS", "Me"),
    "h_angle_deg": lambda g: g.line("Pog'", "UL", "B", "N"),
    "ul_to_snpog_mm": lambda g: float((g.p("UL") - g.p("Sn")) @ g.n("Sn", "Pog'")),
    "ll_to_snpog_mm": lambda g: float((g.p("LL") - g.p("Sn")) @ g.n("Sn", "Pog'")),
}
assert set(_COMPUTE) == set(ANALYSIS_KEYS)
_UNITS: Final[dict[str, str]] = {m.key: m.unit for m in ANALYSIS_MEASURES}


# --------------------------------------------------------------------------- norms


def _norms_frame(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """A validated norms table: one row per key, the number columns as floats, the text
    columns as strings (``pd.NA`` when empty), ``norm_note`` added when absent."""
    import pandas as pd

    cols = [str(c).strip() for c in df.columns]
    df = df.set_axis(cols, axis=1)
    if "key" not in cols:
        raise InvalidArgumentError(f"{where}: the norms table has no 'key' column; columns: {cols}")
    allowed = set(NORM_COLUMNS) | {"norm_note"}
    unknown = [c for c in cols if c not in allowed]
    if unknown:
        raise InvalidArgumentError(
            f"{where}: unknown column(s) {unknown} in the norms table; expected {list(NORM_COLUMNS)} (and norm_note)"
        )
    if len(set(cols)) != len(cols):
        raise InvalidArgumentError(f"{where}: a column appears twice in the norms table: {cols}")
    keys = [str(k).strip() if isinstance(k, str) else k for k in df["key"].tolist()]
    bad = [k for k in keys if not isinstance(k, str) or k not in _BY_KEY]
    if bad:
        raise InvalidArgumentError(
            f"{where}: unknown measure key(s) {bad} in the norms table; known: {list(ANALYSIS_KEYS)}"
        )
    not_computed = [k for k in keys if not _BY_KEY[k].available]
    if not_computed:
        raise InvalidArgumentError(
            f"{where}: norms for {not_computed}, which cannot be computed from the ISBI landmarks; "
            f"known: {list(ANALYSIS_KEYS)}"
        )
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise InvalidArgumentError(f"{where}: key(s) {dup} appear more than once in the norms table")
    out: dict[str, Any] = {"key": keys}
    for c in _NUMBER_COLUMNS:
        if c not in df.columns:
            out[c] = [math.nan] * len(keys)
            continue
        values = []
        for k, raw in zip(keys, df[c].tolist()):
            if raw is None or raw is pd.NA or (isinstance(raw, str) and not raw.strip()):
                values.append(math.nan)
                continue
            try:
                x = float(raw)
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"{where}: {c} of {k} is {raw!r}, not a number") from None
            if math.isinf(x):
                raise InvalidArgumentError(f"{where}: {c} of {k} is infinite")
            values.append(x)
        out[c] = values
    for c in _TEXT_COLUMNS:
        raw_text = df[c].tolist() if c in df.columns else [None] * len(keys)
        out[c] = [None if _missing(t) or not str(t).strip() else " ".join(str(t).split()) for t in raw_text]
    for i, k in enumerate(keys):
        sd, low, high = out["norm_sd"][i], out["norm_low"][i], out["norm_high"][i]
        if sd < 0:
            raise InvalidArgumentError(f"{where}: norm_sd of {k} is negative ({sd:g})")
        if low > high:
            raise InvalidArgumentError(f"{where}: norm_low of {k} ({low:g}) is above its norm_high ({high:g})")
        if math.isnan(low) != math.isnan(high):
            raise InvalidArgumentError(f"{where}: {k} has only one of norm_low and norm_high; give both or neither")
    frame = pd.DataFrame({c: out[c] for c in (*NORM_COLUMNS, "norm_note")})
    for c in _NUMBER_COLUMNS:
        frame[c] = frame[c].astype(np.float64)
    for c in ("key", *_TEXT_COLUMNS):
        frame[c] = frame[c].astype(pd.StringDtype("python"))
    return frame


def read_norms(norms: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """A norms table from a CSV file or a DataFrame, checked.

    The table has a ``key`` column (a key of :data:`ANALYSIS_KEYS`) and any of
    ``norm_mean, norm_sd, norm_low, norm_high`` (numbers; empty = none),
    ``norm_source, norm_population`` and ``norm_note`` (text). A row whose numbers are
    all empty removes the norm of its key. Read from a file, a row with numbers but no
    ``norm_source`` gets ``"user norms file <file name>"`` as its source (from a
    DataFrame, :func:`ceph_analyses` labels it ``"user-supplied"``).

    Args:
        norms: a CSV path or a DataFrame.

    Returns:
        The table with exactly the columns :data:`NORM_COLUMNS` + ``norm_note``.

    Raises:
        InputNotFoundError: the file does not exist.
        InvalidArgumentError: the file cannot be read as CSV, or the table has no
            ``key`` column, an unknown column or key, a key twice, a value that is not a
            number, a negative SD, ``norm_low`` above ``norm_high`` or only one of them
            (the message names the file and the problem).
    """
    import pandas as pd

    if isinstance(norms, pd.DataFrame):
        return _norms_frame(norms, "norms")
    if not isinstance(norms, (str, os.PathLike)):
        raise InvalidArgumentError(f"norms must be a CSV path or a pandas DataFrame, got {type(norms).__name__}")
    path = Path(os.fspath(norms)).expanduser()
    if not path.is_file():
        if path.exists():
            raise InvalidArgumentError(f"{path}: the norms file is not a file")
        raise InputNotFoundError(f"{path}: the norms file does not exist")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, comment=None)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InvalidArgumentError(f"{path}: cannot read the norms table as CSV ({reason})") from None
    frame = _norms_frame(df, str(path))
    # name the file as the source of its rows that give none, wherever the table goes next
    # (the command line and the reports read the file once and pass the table on)
    unsourced = frame["norm_source"].isna() & frame[list(_NUMBER_COLUMNS)].notna().any(axis=1)
    frame.loc[unsourced, "norm_source"] = f"user norms file {path.name}"
    return frame


@lru_cache(maxsize=1)
def _shipped() -> pd.DataFrame:
    import pandas as pd

    text = resources.files("cephspine.geometry").joinpath(NORMS_FILE).read_text(encoding="utf-8")
    from io import StringIO

    df = pd.read_csv(StringIO(text), dtype=str, keep_default_na=False)
    return _norms_frame(df, f"cephspine/geometry/{NORMS_FILE}")


def shipped_norms() -> pd.DataFrame:
    """The norms that ship with cephspine (``cephspine/geometry/analysis_norms.csv``): one
    row per key that has a sourced norm, with its source and population."""
    return _shipped().copy()


def _merged_norms(norms: str | os.PathLike[str] | pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Key → norm row: the shipped norms, each replaced by the user's row of that key
    (``"user": True`` on those)."""
    table: dict[str, dict[str, Any]] = {
        str(r["key"]): {**{str(k): v for k, v in r.items()}, "user": False} for r in _shipped().to_dict("records")
    }
    if norms is not None:
        user = read_norms(norms)
        for r in user.to_dict("records"):
            if any(not math.isnan(r[c]) for c in _NUMBER_COLUMNS) and _missing(r["norm_source"]):
                r["norm_source"] = "user-supplied"  # a file's rows are already named by read_norms
            # the whole row replaces the shipped one: sources never mix
            table[str(r["key"])] = {**{str(k): v for k, v in r.items()}, "user": True}
    return table


def _missing(x: Any) -> bool:
    import pandas as pd

    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def _flag(value: float, norm: Mapping[str, Any] | None) -> str | None:
    """``"below"``, ``"within"`` or ``"above"`` the norm's range: [norm_low, norm_high]
    when given, else mean ± 1 SD; ``None`` without a value or a range."""
    if norm is None or not math.isfinite(value):
        return None
    low, high = norm["norm_low"], norm["norm_high"]
    if math.isnan(low) or math.isnan(high):
        mean, sd = norm["norm_mean"], norm["norm_sd"]
        if math.isnan(mean) or math.isnan(sd):
            return None
        low, high = mean - sd, mean + sd
    if value < low:
        return "below"
    if value > high:
        return "above"
    return "within"


# --------------------------------------------------------------------------- text

_UNIT_TEXT = {"deg": "°", "mm": " mm", "%": " %"}


def _number(x: Any) -> float:
    """``x`` as a float; NaN for ``None``, ``pd.NA`` and anything else that is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def format_measure(value: float | None, unit: str) -> str:
    """A value as shown in tables: ``"89.28°"``, ``"-3.41 mm"``, ``"64.10 %"``; ``"n/a"``
    when missing."""
    v = _number(value)
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.2f}{_UNIT_TEXT.get(unit, ' ' + unit)}"


def format_norm(row: Mapping[str, Any]) -> str:
    """A norm as text, from a row of :func:`ceph_analyses` (or of a norms table with a
    ``unit``): ``"87.8° (82–95°)"``, ``"123 ± 5°"``, ``"62–65 %"``, ``"32°"``; ``"—"``
    without one."""
    sym = _UNIT_TEXT.get(str(row.get("unit", "")), "")
    mean, sd, low, high = (_number(row.get(c)) for c in _NUMBER_COLUMNS)
    rng = f"{low:g}–{high:g}{sym}" if math.isfinite(low) and math.isfinite(high) else ""
    if math.isfinite(mean):
        text = f"{mean:g} ± {sd:g}{sym}" if math.isfinite(sd) else f"{mean:g}{sym}"
        return f"{text} ({rng})" if rng else text
    return rng or "—"


# --------------------------------------------------------------------------- the table


NO_SPACING_NOTE: Final[str] = "a distance in mm: needs the pixel spacing"
"""The ``note`` of a millimetre measure of :func:`ceph_analyses` without a pixel spacing
(its ``status`` is ``"no spacing"``)."""


def _landmarks_mm(xy_px: npt.ArrayLike | Prediction, spacing: Any) -> tuple[FloatArray, bool]:
    """The landmarks in mm and ``True``; without a spacing, in pixels (square pixels) and
    ``False``: the angles and ratios are the same either way, the distances are not mm."""
    from cephspine.geometry.ceph import _prediction_points

    if isinstance(xy_px, Prediction):
        pts = _prediction_points(xy_px)
        if spacing is None:
            spacing = xy_px.spacing
    else:
        try:
            pts = np.asarray(xy_px, dtype=np.float64)
        except (TypeError, ValueError):
            raise LandmarkError(f"landmarks must be a ({_N}, 2) array of numbers") from None
        if pts.shape != (_N, 2):
            raise LandmarkError(f"cephalometric analyses need {_N} landmarks of shape ({_N}, 2), got {pts.shape}")
    sp: Spacing | None = as_spacing(spacing, plausible=False)
    if sp is None:
        return np.array(pts, dtype=np.float64), False
    return np.asarray(pts * sp.xy_mm, dtype=np.float64), True


def analysis_name(name: str) -> str:
    """The analysis a name refers to, as shown (``"steiner"`` → ``"Steiner"``, ``"bjork"``
    → ``"Björk–Jarabak"``); case and dashes do not matter.

    Raises:
        InvalidArgumentError: no analysis of that name.
    """
    s = str(name).strip().lower().replace("–", "-").replace("_", "-").replace(" ", "-")
    s = _ALIASES.get(s, s)
    for short, shown in ANALYSES.items():
        if s in (short, shown.lower().replace("–", "-")):
            return shown
    raise InvalidArgumentError(f"unknown analysis {name!r}; known: {', '.join(ANALYSES)} (or 'all')")


def select_analyses(table: pd.DataFrame, names: str | Sequence[str]) -> pd.DataFrame:
    """The rows of a :func:`ceph_analyses` table that belong to the named analyses (a
    measure listed under one analysis and used by another belongs to both), in table order;
    ``"all"`` keeps every row.

    Raises:
        InvalidArgumentError: an unknown analysis name.
    """
    wanted = [names] if isinstance(names, str) else list(names)
    if any(str(n).strip().lower() == "all" for n in wanted):
        return table.reset_index(drop=True)
    shown = {analysis_name(n) for n in wanted}
    keep = [
        r["analysis"] in shown or any(a in shown for a in str(r["also_in"] or "").split("; ") if a)
        for r in table.to_dict("records")
    ]
    return table[keep].reset_index(drop=True)


def analysis_values(
    xy_px: npt.ArrayLike | Prediction, spacing: Spacing | float | Sequence[float] | None = None
) -> dict[str, float]:
    """The values of :func:`ceph_analyses` alone, without pandas: ``{key: value}`` for
    every key of :data:`ANALYSIS_KEYS`, in that order (degrees, mm or %), NaN where a
    measure cannot be computed (a missing landmark, coincident points) and, without a
    pixel spacing, for the millimetre measures (the angles and ratios need none).

    Raises:
        SpacingError, LandmarkError: as :func:`ceph_analyses`.
    """
    mm, known = _landmarks_mm(xy_px, spacing)
    g = _Geometry(mm)
    out: dict[str, float] = {}
    for key in ANALYSIS_KEYS:
        if not known and _UNITS[key] == "mm":
            out[key] = math.nan
            continue
        try:
            out[key] = float(_COMPUTE[key](g))
        except _Undefined:
            out[key] = math.nan
    return out


def ceph_analyses(
    xy_px: npt.ArrayLike | Prediction,
    spacing: Spacing | float | Sequence[float] | None = None,
    *,
    norms: str | os.PathLike[str] | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The measures of the named cephalometric analyses on one cephalogram, with norms.

    One row per measure of :data:`ANALYSIS_MEASURES`, in its order (grouped by analysis;
    a measure several analyses use is listed once, under one of them, the others named in
    ``also_in``; :func:`select_analyses` picks one analysis' rows). The measures the ISBI
    landmarks allow (:data:`ANALYSIS_KEYS`) have a value; the others keep their row with
    ``status`` ``"not available"`` and a ``note`` naming the missing point.

    Args:
        xy_px: ``(19, 2)`` ``(x, y)`` landmarks in pixels, ISBI 2015 order, or a
            :class:`~cephspine.Prediction` (landmarks by name, its spacing by default).
            A NaN landmark leaves the measures that use it without a value (``status``
            ``"not computed"``, ``note`` naming the landmark); the others are computed.
        spacing: mm per pixel: a number, a ``(row_mm, col_mm)`` pair or a
            :class:`~cephspine.radiograph.Spacing`; overrides a prediction's own.
            Without one (given or the prediction's) the angles and ratios are computed
            (square pixels assumed) and the millimetre measures keep their rows without
            a value, ``status`` ``"no spacing"``.
        norms: a norms table (CSV path or DataFrame, columns :data:`NORM_COLUMNS`) whose
            rows replace the shipped norms (:func:`shipped_norms`) of the same key.

    Returns:
        A DataFrame with the columns :data:`ANALYSIS_COLUMNS`: ``key``, ``measure`` (name),
        ``analysis``, ``also_in`` (other analyses using it, ``"; "``-separated),
        ``value`` (float, NaN when none), ``unit`` (``"deg"``, ``"mm"``, ``"%"``),
        ``norm_mean``, ``norm_sd``, ``norm_low``, ``norm_high`` (floats, NaN when the
        norm has none), ``norm_source``, ``norm_population``, ``flag`` (``"below"``,
        ``"within"``, ``"above"`` the range [norm_low, norm_high], or mean ± 1 SD when
        the norm gives no range; ``<NA>`` without a value or a range), ``status``
        (``"ok"``, ``"not computed"``, ``"not available"``, ``"no spacing"``), ``note`` and
        ``landmarks`` (the ISBI landmarks used). Text columns have pandas' ``string``
        dtype (``<NA>`` when empty).

    Raises:
        SpacingError: an invalid spacing (not positive and finite).
        LandmarkError: not 19 landmarks (or a prediction without the ISBI landmarks).
        InputNotFoundError, InvalidArgumentError: a bad ``norms`` table (see :func:`read_norms`).

    Example::

        from cephspine import IsbiDataset
        from cephspine.geometry import ceph_analyses, select_analyses

        rec = IsbiDataset("isbi2015")["001"]
        t = ceph_analyses(rec.landmarks, spacing=0.1)
        t.set_index("key").loc["gonial_angle_deg", ["value", "norm_mean", "flag"]]
        select_analyses(t, "downs")            # the Downs rows
    """
    import pandas as pd

    mm, known = _landmarks_mm(xy_px, spacing)
    norm_table = _merged_norms(norms)
    g = _Geometry(mm)
    rows: list[dict[str, Any]] = []
    for m in ANALYSIS_MEASURES:
        value, status, note = math.nan, "ok", None
        if m.needs is not None:
            status, note = "not available", f"not available: needs {m.needs}, which the ISBI 2015 landmarks lack"
        elif not known and m.unit == "mm":
            status, note = "no spacing", NO_SPACING_NOTE
        else:
            try:
                value = float(_COMPUTE[m.key](g))
            except _Undefined as exc:
                status, note = "not computed", f"undefined: {exc}"
        norm = norm_table.get(m.key) if m.available else None
        has_norm = norm is not None and any(not math.isnan(norm[c]) for c in _NUMBER_COLUMNS)
        if norm is not None and not _missing(norm["norm_note"]):
            note = f"{note}; {norm['norm_note']}" if note else norm["norm_note"]
        if m.available and not has_norm:
            extra = (
                "no norm: the norms table given leaves it empty"
                if norm is not None and norm["user"]
                else "no norm shipped (only norms checked against a named source are); pass norms= to add one"
            )
            note = f"{note}; {extra}" if note else extra
        rows.append(
            {
                "key": m.key,
                "measure": m.name,
                "analysis": m.analysis,
                "also_in": "; ".join(m.also_in) or None,
                "value": value,
                "unit": m.unit,
                **{c: norm[c] if has_norm and norm is not None else math.nan for c in _NUMBER_COLUMNS},
                "norm_source": norm["norm_source"] if has_norm and norm is not None else None,
                "norm_population": norm["norm_population"] if has_norm and norm is not None else None,
                "flag": _flag(value, norm) if has_norm else None,
                "status": status,
                "note": note,
                "landmarks": " ".join(m.landmarks) or None,
            }
        )
    df = pd.DataFrame(rows, columns=list(ANALYSIS_COLUMNS))
    for c in ANALYSIS_COLUMNS:
        if c in ("value", *_NUMBER_COLUMNS):
            df[c] = df[c].astype(np.float64)
        else:
            df[c] = df[c].astype(pd.StringDtype("python"))
    return df
