"""The cohort report: :func:`write_cohort_report`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt
from reportlab.graphics.shapes import Drawing, Line, Rect, String
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.platypus import CondPageBreak, Flowable, KeepTogether, Paragraph, Spacer, Table, TableStyle

from cephspine.analysis import WRONG_ANATOMY_STATUS
from cephspine.errors import InvalidArgumentError
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS, COBB_SEVERITY_BANDS, MEASURE_UNITS
from cephspine.reports._pdf import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    KIND_TITLES,
    RESEARCH_NOTICE,
    Styles,
    build_pdf,
    check_kind,
    check_target,
    esc,
    format_value,
    height_of,
    keeps_with_next,
    layout_style,
    now,
    pdf_safe,
    plural,
    styles,
    table,
    write_atomic,
)

if TYPE_CHECKING:
    import pandas as pd

BAND_COLOUR = colors.HexColor("#d8f0d8")
"""Fill of the shaded normal range in the histograms."""

_BAR_FILL = colors.HexColor("#4c72b0")
_BAR_STROKE = colors.HexColor("#2b3f66")
_MARK_COLOUR = colors.HexColor("#c03030")

# How the cohort table's ``spacing_source`` values are said in the report.
_SPACING_PHRASES = {
    "PixelSpacing": "from DICOM Pixel Spacing",
    "ImagerPixelSpacing": "from DICOM Imager Pixel Spacing",
    "user": "given by the user",
    "dataset": "from the dataset's convention",
    "": "unknown",
}


# --------------------------------------------------------------------------- histogram axis


def nice_step(span: float, count: int) -> float:
    """The smallest of 1, 2, 2.5 or 5 × 10^k that cuts ``span`` into at most ``count`` steps."""
    raw = span / max(1, count)
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * mag >= raw * (1 - 1e-9):
            return m * mag
    return 10.0 * mag  # pragma: no cover - the loop ends at 10


def _decimals(step: float) -> int:
    """Decimals that print every multiple of ``step`` exactly (0.25 → 2, 2.5 → 1, 5 → 0)."""
    for d in range(0, 10):
        if abs(round(step, d) - step) < 1e-9 * max(1.0, abs(step)):
            return d
    return 10


@dataclass(frozen=True)
class HistogramAxis:
    """The x axis and bins of a histogram.

    Attributes:
        lo, hi: the axis limits; they span the values, the normal range and the marks.
        ticks: round tick values from ``lo`` to ``hi``.
        edges: the bin edges (multiples of a round bin width) covering the values.
        decimals: decimals of the tick labels.
    """

    lo: float
    hi: float
    ticks: tuple[float, ...]
    edges: tuple[float, ...]
    decimals: int

    def labels(self) -> list[str]:
        return [f"{t:.{self.decimals}f}" for t in self.ticks]


def histogram_axis(
    values: npt.NDArray[np.float64], band: tuple[float, float] | None = None, marks: Sequence[float] = ()
) -> HistogramAxis:
    """Bins over ``values`` and an axis with round ticks that spans the values, the
    ``band`` and the ``marks``."""
    vlo, vhi = float(values.min()), float(values.max())
    n_bins = int(min(20, max(5, math.ceil(math.sqrt(values.size)))))
    span = vhi - vlo
    if span <= 1e-9 * max(1.0, abs(vlo)):  # one value
        span = max(abs(vlo) * 0.1, 1e-3)
    width = nice_step(span, n_bins)
    k0 = math.floor(vlo / width + 1e-9)
    k1 = max(k0 + 1, math.ceil(vhi / width - 1e-9))  # np.histogram keeps a value on the last edge
    edges = tuple(k * width for k in range(k0, k1 + 1))
    lo, hi = edges[0], edges[-1]
    for v in (*(band or ()), *marks):
        lo, hi = min(lo, float(v)), max(hi, float(v))
    for count in (5, 4, 3, 2):  # at most 6 ticks once the limits are rounded out
        step = nice_step(hi - lo, count)
        a, b = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
        n = round((b - a) / step)
        if n <= 5:
            break
    lo, hi = a, b
    ticks = tuple(round(lo + i * step, 12) for i in range(n + 1))
    return HistogramAxis(lo, hi, ticks, edges, _decimals(step))


def histogram(
    values: npt.NDArray[np.float64],
    title: str,
    *,
    band: tuple[float, float] | None = None,
    marks: Sequence[float] = (),
    width: float = 4.4 * cm,
    height: float = 3.6 * cm,
) -> Drawing:
    """A histogram drawing (reportlab graphics): the normal ``band`` shaded, ``marks``
    dashed; the axis spans the values, the band and the marks, with round ticks."""
    d = Drawing(width, height)
    d.add(String(2, height - 9, pdf_safe(title), fontName="Helvetica-Bold", fontSize=7.5))
    if values.size == 0:
        d.add(String(4, height / 2, "no values", fontName="Helvetica", fontSize=8))
        return d
    ax = histogram_axis(values, band, marks)
    counts, _ = np.histogram(values, bins=np.asarray(ax.edges))
    x0, y0 = 18.0, 14.0
    cw, ch = width - x0 - 8.0, height - y0 - 16.0

    def x_of(v: float) -> float:
        return x0 + (v - ax.lo) / (ax.hi - ax.lo) * cw

    top = max(1, int(counts.max()))
    ystep = max(1, int(nice_step(top, 4)))
    ytop = ystep * math.ceil(top / ystep)

    def y_of(c: float) -> float:
        return y0 + c / ytop * ch

    if band is not None:
        d.add(Rect(x_of(band[0]), y0, x_of(band[1]) - x_of(band[0]), ch, fillColor=BAND_COLOUR, strokeColor=None))
    for c, a, b in zip(counts, ax.edges[:-1], ax.edges[1:]):
        if c:
            d.add(
                Rect(
                    x_of(a),
                    y0,
                    x_of(b) - x_of(a),
                    y_of(c) - y0,
                    fillColor=_BAR_FILL,
                    strokeColor=_BAR_STROKE,
                    strokeWidth=0.3,
                )
            )
    for m in marks:
        d.add(Line(x_of(m), y0, x_of(m), y0 + ch, strokeColor=_MARK_COLOUR, strokeDashArray=[2, 2], strokeWidth=0.7))
    axis = colors.HexColor("#333333")
    d.add(Line(x0, y0, x0 + cw, y0, strokeColor=axis, strokeWidth=0.5))
    d.add(Line(x0, y0, x0, y0 + ch, strokeColor=axis, strokeWidth=0.5))
    for t, label in zip(ax.ticks, ax.labels()):
        d.add(Line(x_of(t), y0, x_of(t), y0 - 2, strokeColor=axis, strokeWidth=0.5))
        d.add(String(x_of(t), y0 - 8, label, fontName="Helvetica", fontSize=6, textAnchor="middle"))
    for c in range(0, ytop + 1, ystep):
        d.add(Line(x0 - 2, y_of(c), x0, y_of(c), strokeColor=axis, strokeWidth=0.5))
        d.add(String(x0 - 3, y_of(c) - 2, str(c), fontName="Helvetica", fontSize=6, textAnchor="end"))
    return d


def _grid(drawings: list[Drawing], columns: int) -> Table:
    rows: list[list[Any]] = [list(drawings[i : i + columns]) for i in range(0, len(drawings), columns)]
    if rows:
        rows[-1] += [""] * (columns - len(rows[-1]))
    t = Table(rows, colWidths=[FRAME_WIDTH / columns] * columns)
    t.setStyle(layout_style(top=1, bottom=3))
    t.hAlign = "LEFT"
    return t


# --------------------------------------------------------------------------- tables


def _numeric(table_: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    """The finite values of a column (non-numeric entries dropped)."""
    import pandas as pd

    if column not in table_.columns:
        return np.empty(0)
    v = pd.to_numeric(table_[column], errors="coerce").to_numpy(dtype=np.float64)
    return np.asarray(v[np.isfinite(v)], dtype=np.float64)


def _stats_row(label: str, v: npt.NDArray[np.float64], fmt: Callable[[float], str]) -> list[str]:
    if v.size == 0:
        return [label, "0", "—", "—", "—", "—", "—"]
    sd = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    return [
        label,
        str(v.size),
        fmt(float(np.mean(v))),
        fmt(sd) if math.isfinite(sd) else "—",
        fmt(float(np.median(v))),
        fmt(float(np.min(v))),
        fmt(float(np.max(v))),
    ]


def _cell_rows(rows: list[list[str]], st: Styles) -> list[list[Any]]:
    return [[Paragraph(esc(c) if i else f"<b>{esc(c)}</b>", st.cell) for c in row] for i, row in enumerate(rows)]


def _spacing_summary(sources: pd.Series) -> str:
    """``"given by the user for 5 images; unknown for 1 image"``."""
    counts = sources.fillna("").astype(str).value_counts()
    parts = []
    for src, n in counts.items():
        phrase = _SPACING_PHRASES.get(str(src), f"from {src}")
        parts.append(f"{phrase} for {plural(int(n), 'image')}")
    return "; ".join(parts)


def _ceph_types(ok: pd.DataFrame, st: Styles) -> list[Flowable]:
    """Per measure, how many images have each anatomical type (one column per type)."""
    known_types = sorted({t for m in CEPH_MEASURES for t in CEPH_NORMS[m].labels})
    rows: list[list[str]] = []
    has_other = False
    for m in CEPH_MEASURES:
        col = f"{m.lower()}_class"
        if col not in ok.columns:
            continue
        labels = ok[col].fillna("").astype(str)
        labels = labels[labels != ""]
        counts = labels.value_counts()
        known = CEPH_NORMS[m].labels
        cells = [m]
        for t in known_types:
            if t in known:
                n = int(counts.get(known[t], 0))
                share = f"{100 * n / len(labels):.0f} %" if len(labels) else "—"
                cells.append(f"{known[t]}: {n} ({share})")
            else:
                cells.append("—")
        other = [f"{lab}: {int(n)}" for lab, n in counts.items() if lab not in known.values()]
        has_other = has_other or bool(other)
        cells.append("; ".join(other))
        rows.append(cells)
    if not rows:
        return [Paragraph("No classification columns (<i>measure</i>_class) in the table.", st.body)]
    head = ["Measure", *(f"Type {t}" for t in known_types)]
    if has_other:
        head.append("Other")
    else:
        rows = [r[:-1] for r in rows]
    first = 1.4 * cm
    widths = [first] + [(FRAME_WIDTH - first) / (len(head) - 1)] * (len(head) - 1)
    return [
        table(_cell_rows([head, *rows], st), widths),
        Spacer(1, 2),
        Paragraph("Each cell: the classification, the number of images and their share.", st.small),
    ]


def _ceph_cohort(ok: pd.DataFrame, st: Styles) -> list[Flowable]:
    story: list[Flowable] = [Paragraph("Measures", st.heading)]
    stats = [["Measure", "n", "Mean", "SD", "Median", "Min", "Max", "Normal range", "Outside normal"]]
    drawings = []
    for m in CEPH_MEASURES:
        unit = MEASURE_UNITS[m]
        v = _numeric(ok, f"{m.lower()}_{unit}")
        norm = CEPH_NORMS[m]
        outside = int(np.count_nonzero((v < norm.normal_low) | (v > norm.normal_high)))
        row = _stats_row(m, v, partial(format_value, unit=unit))
        row += [norm.normal_range, f"{outside} ({100 * outside / v.size:.0f} %)" if v.size else "—"]
        stats.append(row)
        suffix = {"deg": " (°)", "mm": " (mm)", "ratio": " (ratio)"}[unit]
        drawings.append(
            histogram(
                v,
                f"{m}{suffix}, n = {v.size}",
                band=(norm.normal_low, norm.normal_high),
                width=FRAME_WIDTH / 4,
            )
        )
    widths = [1.4 * cm, 0.9 * cm, 1.7 * cm, 1.5 * cm, 1.7 * cm, 1.7 * cm, 1.7 * cm, 2.2 * cm]
    widths.append(FRAME_WIDTH - sum(widths))
    story += [
        table(_cell_rows(stats, st), widths),
        Spacer(1, 4),
        Paragraph(
            "Histograms of the successful analyses; the normal range (type 1) is shaded green. "
            "Each axis spans the values and the normal range.",
            st.small,
        ),
        Spacer(1, 2),
        _grid(drawings, 4),
        Paragraph("Anatomical types", st.heading),
        *_ceph_types(ok, st),
    ]
    return story


def _spine_cohort(ok: pd.DataFrame, st: Styles) -> list[Flowable]:
    story: list[Flowable] = [Paragraph("Cobb angles", st.heading)]
    stats = [["Angle", "n", "Mean", "SD", "Median", "Min", "Max"]]
    for col, label in (("max_cobb_deg", "max Cobb"), ("pt_deg", "PT"), ("mt_deg", "MT"), ("tl_deg", "TL")):
        stats.append(_stats_row(label, _numeric(ok, col), lambda x: f"{x:.1f}°"))
    story.append(table(_cell_rows(stats, st), [2.4 * cm, 1.0 * cm] + [2.0 * cm] * 5))
    marks = [b.low_deg for b in COBB_SEVERITY_BANDS if b.low_deg > 0]
    v = _numeric(ok, "max_cobb_deg")
    story += [
        Spacer(1, 6),
        histogram(v, f"Largest Cobb angle per image (°), n = {v.size}", marks=marks, width=12 * cm, height=6 * cm),
        Paragraph(
            "Dashed lines: severity band limits (" + ", ".join(f"{m:g}°" for m in marks) + ").",
            st.small,
        ),
        Paragraph("Severity (largest curve per image)", st.heading),
    ]
    sev = ok["severity"].fillna("").astype(str) if "severity" in ok.columns else None
    if sev is None:
        story.append(Paragraph("No severity column in the table.", st.body))
        return story
    sev = sev[sev != ""]
    counts = sev.value_counts()
    rows = [["Severity", "Cobb angle", "Images", "Share"]]
    for b in COBB_SEVERITY_BANDS:
        n = int(counts.get(b.label, 0))
        rows.append([b.label, b.text, str(n), f"{100 * n / len(sev):.0f} %" if len(sev) else "—"])
    story.append(table(_cell_rows(rows, st), [3.0 * cm, 3.0 * cm, 2.0 * cm, 2.0 * cm]))
    return story


def _summary(table_: pd.DataFrame, ok: pd.DataFrame, n_errors: int, st: Styles, n_wrong: int = 0) -> Table:
    """Counts and provenance, two key–value pairs per row."""
    import pandas as pd

    from cephspine import __version__

    pairs = [
        ("Images", str(len(table_))),
        ("Analysed (ok)", str(len(ok))),
        ("Errors", str(n_errors)),
    ]
    if n_wrong:
        pairs.append(("Wrong anatomy (not results)", str(n_wrong)))
    if "n_low_confidence" in ok.columns:
        n_low = int((pd.to_numeric(ok["n_low_confidence"], errors="coerce").fillna(0) > 0).sum())
        pairs.append(("With low-confidence landmarks", str(n_low)))
    if "n_warnings" in ok.columns:
        n_warn = int((pd.to_numeric(ok["n_warnings"], errors="coerce").fillna(0) > 0).sum())
        pairs.append(("With warnings", str(n_warn)))
    pairs += [("cephspine version", __version__), ("Report date", now())]
    wide: list[tuple[str, str]] = []
    if {"model", "model_version"} <= set(ok.columns) and len(ok):
        models = sorted({f"{m} version {v}" for m, v in zip(ok["model"].astype(str), ok["model_version"].astype(str))})
        wide.append(("Models", ", ".join(models)))
    if "spacing_source" in ok.columns and len(ok):
        wide.append(("Pixel spacing", _spacing_summary(ok["spacing_source"])))
    if len(pairs) % 2:
        pairs.append(("", ""))
    rows: list[list[Any]] = []
    for (k1, v1), (k2, v2) in zip(pairs[::2], pairs[1::2]):
        rows.append([Paragraph(esc(k1), st.cell_bold), Paragraph(esc(v1), st.cell)])
        rows[-1] += [Paragraph(esc(k2), st.cell_bold), Paragraph(esc(v2), st.cell)]
    for k, v in wide:
        rows.append([Paragraph(esc(k), st.cell_bold), Paragraph(esc(v), st.cell), "", ""])
    kw, vw = 4.9 * cm, FRAME_WIDTH / 2 - 4.9 * cm
    t = table(rows, [kw, vw, kw, vw], header=False)
    n_pairs = len(pairs) // 2
    t.setStyle(TableStyle([("SPAN", (1, r), (3, r)) for r in range(n_pairs, len(rows))]))
    return t


def _cohort_story(table_: pd.DataFrame, kind: str, st: Styles) -> list[Flowable]:
    import pandas as pd

    status = table_["status"].fillna("ok").astype(str) if "status" in table_.columns else None
    is_error = (status == "error") if status is not None else pd.Series(False, index=table_.index)
    is_wrong = (status == WRONG_ANATOMY_STATUS) if status is not None else pd.Series(False, index=table_.index)
    errors, wrong, ok = table_[is_error], table_[is_wrong], table_[~is_error & ~is_wrong]
    story: list[Flowable] = [
        Paragraph(f"cephspine cohort report: {esc(KIND_TITLES[kind])}", st.title),
        Paragraph(esc(RESEARCH_NOTICE), st.notice),
        _summary(table_, ok, len(errors), st, len(wrong)),
    ]
    if len(ok) == 0:
        body: list[Flowable] = [Paragraph("No successful analyses in the table.", st.body)]
    else:
        body = _ceph_cohort(ok, st) if kind == "ceph" else _spine_cohort(ok, st)
    # The error section follows the section before it on the same page: a short one moves
    # together with the last block of that section, a long one starts where that ends and
    # runs on over the next pages (its header row repeated).
    heading = ParagraphStyle("cs-heading-flow", parent=st.heading, keepWithNext=0)
    errs: list[Flowable] = [Paragraph(f"Errors ({len(errors)})", heading)]
    if len(errors) == 0:
        errs.append(Paragraph("None.", st.body))
    else:
        images = errors["image"].fillna("").astype(str)
        messages = errors["error"].fillna("").astype(str) if "error" in errors.columns else images.map(lambda _: "")
        rows = [[Paragraph("<b>Image</b>", st.cell), Paragraph("<b>Message</b>", st.cell)]]
        rows += [[Paragraph(esc(i), st.cell), Paragraph(esc(m), st.cell)] for i, m in zip(images, messages)]
        errs.append(table(rows, [5.0 * cm, FRAME_WIDTH - 5.0 * cm]))
    if len(wrong):  # analysed, but not of the anatomy: left out of every statistic above
        errs.append(Paragraph(f"Wrong anatomy, not results ({len(wrong)})", heading))
        texts = wrong["warnings"].fillna("").astype(str) if "warnings" in wrong.columns else None
        rows = [[Paragraph("<b>Image</b>", st.cell), Paragraph("<b>Message</b>", st.cell)]]
        for i, (_, r) in enumerate(wrong.iterrows()):
            parts = str(texts.iloc[i]).split(" | ") if texts is not None else []
            said = next((w for w in parts if "does not look like" in w), "the image does not look like the anatomy")
            rows.append([Paragraph(esc(str(r["image"])), st.cell), Paragraph(esc(said), st.cell)])
        errs.append(table(rows, [5.0 * cm, FRAME_WIDTH - 5.0 * cm]))
    last = max((i for i, f in enumerate(body) if keeps_with_next(f)), default=0)
    head, tail = [*story, *body[:last]], body[last:]  # tail: the last section, from its heading
    if height_of([*tail, *errs], FRAME_WIDTH) <= 0.9 * FRAME_HEIGHT:
        return [*head, KeepTogether([*tail, *errs])]
    return [*head, *tail, CondPageBreak(2 * cm), *errs]


def write_cohort_report(table: pd.DataFrame, path: str | os.PathLike[str], *, kind: str) -> Path:
    """Write a summary PDF (A4) of a cohort table.

    Args:
        table: one row per image: :meth:`Analysis.to_row() <cephspine.analysis.Analysis.to_row>`
            rows plus error rows (``status == "error"`` with an ``error`` message), as a
            cohort run produces.
        path: the PDF file to write (atomically, as :func:`~cephspine.reports.write_report`).
        kind: ``"ceph"``: counts, statistics and a histogram per measure (normal range
            shaded, each axis spanning the values and the normal range) and the counts of
            each anatomical type (``<measure>_class``); ``"spine"``: the distribution of
            the largest Cobb angle and the counts per severity band (``severity``). Both
            end with the table of error rows.

    Returns:
        The path written.

    Raises:
        InvalidArgumentError: unknown ``kind``, no ``image`` column, or rows of another kind.
        OutputError: the PDF cannot be written (the message names ``path`` and the cause).
    """
    check_kind(kind)
    if "image" not in table.columns:
        raise InvalidArgumentError(
            "a cohort table needs an 'image' column (rows of Analysis.to_row() and error rows); "
            f"got columns {list(table.columns)[:12]}"
        )
    if "kind" in table.columns:
        status = table["status"].astype(str) if "status" in table.columns else None
        rows = table if status is None else table[status != "error"]
        other = sorted(set(rows["kind"].dropna().astype(str)) - {"", kind})
        if other:
            raise InvalidArgumentError(
                f"the table holds {', '.join(other)} analyses; write_cohort_report got kind={kind!r}"
            )
    check_target(path)
    story = _cohort_story(table, kind, styles())

    def render(fh: BinaryIO) -> None:
        build_pdf(fh, story, title=f"cephspine cohort report ({kind})", footer=f"cephspine cohort report ({kind})")

    return write_atomic(path, render)
