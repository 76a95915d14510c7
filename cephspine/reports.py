"""PDF reports: one radiograph (:func:`write_report`, :func:`report`) or a cohort (:func:`write_cohort_report`).

::

    import cephspine
    from cephspine.reports import report, write_cohort_report, write_report

    a = report("scan.dcm", "scan.pdf", kind="ceph")           # analyse, then write the PDF
    write_report(a, "again.pdf", image="scan.dcm")             # from an existing Analysis
    write_cohort_report(table, "cohort.pdf", kind="ceph")      # rows of Analysis.to_row() + error rows

A single-image report (A4) shows the radiograph with the landmarks coloured by confidence
and the lines that define the measures (ceph) or the end vertebrae of each Cobb curve
(spine), the measures with their normal ranges and types, the low-confidence landmarks,
every warning, and where the image, the pixel spacing and the model came from. DICOM
patient identifiers appear only when the analysis carries them
(``include_identifiers=True``). Every page states that the report is for research use.

PDFs are written atomically: rendered into a temporary file next to the target and moved
into place only when complete, so a failure leaves no file behind and never damages an
existing report.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import io
import math
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, Line, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from cephspine.analysis import LOW_CONFIDENCE, Analysis, analyze, check_kind
from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS, VERTEBRAE
from cephspine.errors import ImageReadError
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS, COBB_SEVERITY_BANDS, MEASURE_UNITS
from cephspine.io.loader import ImageSource, SpacingLike, load_image
from cephspine.radiograph import Radiograph

if TYPE_CHECKING:
    import pandas as pd

    from cephspine.detector import Detector

__all__ = [
    "RESEARCH_NOTICE",
    "report",
    "write_cohort_report",
    "write_report",
]

RESEARCH_NOTICE = "Research use only. Not a medical device; not for diagnosis or treatment decisions."
"""The notice printed on every page of every report."""

MAX_IMAGE_SIDE_PX = 1400
"""The radiograph is downscaled to at most this many pixels on its long side in a report."""

HIGH_CONFIDENCE = 0.7
"""Landmarks at or above this confidence are drawn green; between :data:`~cephspine.analysis.LOW_CONFIDENCE`
and this amber; below it red."""

_GREEN = colors.HexColor("#2ca02c")
_AMBER = colors.HexColor("#ffb000")
_RED = colors.HexColor("#e0202f")
_FLAG_BG = colors.HexColor("#fde2e2")
_HEADER_BG = colors.HexColor("#e6e9ef")
_GRID = colors.HexColor("#9aa3b0")

_MARGIN = 1.5 * cm
_FRAME_WIDTH = A4[0] - 2 * _MARGIN

_KIND_TITLES = {"ceph": "lateral cephalogram", "spine": "spine AP radiograph"}
_UNIT_SUFFIX = {"deg": "°", "mm": " mm", "ratio": ""}
_SPACING_SOURCES = {
    "PixelSpacing": "DICOM Pixel Spacing",
    "ImagerPixelSpacing": "DICOM Imager Pixel Spacing",
    "user": "the user",
    "dataset": "the dataset's convention",
}
_NO_SPACING = "unknown — measures in mm unavailable"

# Characters outside the PDF standard fonts' encoding (cp1252), with plain replacements.
_REPLACEMENTS = {
    "→": "->",
    "←": "<-",
    "≥": ">=",
    "≤": "<=",
    "≠": "!=",
    "−": "-",
    "≈": "~",
    "σ": "sigma",
    "Δ": "delta",
}


# --------------------------------------------------------------------------- text helpers


def _pdf_safe(text: object) -> str:
    """``text`` with every character the standard PDF fonts cannot show replaced."""
    out = []
    for ch in str(text):
        if ch in "\n\t":
            out.append(" ")
            continue
        try:
            ch.encode("cp1252")
        except UnicodeEncodeError:
            out.append(_REPLACEMENTS.get(ch, "?"))
        else:
            out.append(ch if ch.isprintable() else "?")
    return "".join(out)


def _esc(text: object) -> str:
    """``text`` made safe for a reportlab :class:`Paragraph` (encoding and XML markup)."""
    return escape(_pdf_safe(text))


def _format_value(value: float, unit: str) -> str:
    """A measure's value as printed: degrees and millimetres with 2 decimals, ratios with 3."""
    if not math.isfinite(value):
        return "n/a"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:.2f}{_UNIT_SUFFIX.get(unit, ' ' + unit)}"


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    subtitle: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    cell: ParagraphStyle
    cell_bold: ParagraphStyle
    notice: ParagraphStyle


def _styles() -> _Styles:
    base = getSampleStyleSheet()
    body = ParagraphStyle("cs-body", parent=base["BodyText"], fontName="Helvetica", fontSize=9, leading=11.5)
    return _Styles(
        title=ParagraphStyle("cs-title", parent=base["Title"], fontSize=16, leading=19, spaceAfter=6),
        subtitle=ParagraphStyle("cs-subtitle", parent=body, alignment=1, fontSize=9.5, spaceAfter=4),
        heading=ParagraphStyle(
            "cs-heading", parent=base["Heading2"], fontSize=11.5, leading=14, spaceBefore=8, keepWithNext=1
        ),
        body=body,
        small=ParagraphStyle("cs-small", parent=body, fontSize=7.5, leading=9.5),
        cell=ParagraphStyle("cs-cell", parent=body, fontSize=8, leading=9.8, spaceBefore=0, spaceAfter=0),
        cell_bold=ParagraphStyle(
            "cs-cell-bold", parent=body, fontName="Helvetica-Bold", fontSize=8, leading=9.8, spaceBefore=0
        ),
        notice=ParagraphStyle(
            "cs-notice",
            parent=body,
            fontName="Helvetica-Bold",
            fontSize=8.5,
            textColor=colors.HexColor("#7a1010"),
            borderColor=colors.HexColor("#7a1010"),
            borderWidth=0.6,
            borderPadding=4,
            spaceBefore=4,
            spaceAfter=8,
        ),
    )


def _table(rows: list[list[Any]], widths: Sequence[float] | None, *, header: bool = True) -> Table:
    """A grid table with an optional shaded header row."""
    t = Table(rows, colWidths=list(widths) if widths is not None else None, repeatRows=1 if header else 0)
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, _GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), _HEADER_BG), ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    t.setStyle(TableStyle(style))
    t.hAlign = "LEFT"
    return t


def _key_values(pairs: Sequence[tuple[str, str]], st: _Styles) -> Table:
    rows = [[Paragraph(_esc(k), st.cell_bold), Paragraph(_esc(v), st.cell)] for k, v in pairs]
    return _table(rows, [4.2 * cm, _FRAME_WIDTH - 4.2 * cm], header=False)


def _bullets(items: Sequence[str], st: _Styles, empty: str) -> list[Flowable]:
    if not items:
        return [Paragraph(_esc(empty), st.body)]
    return [Paragraph(_esc(item), st.body, bulletText="•") for item in items]


def _footer(label: str) -> Callable[[Any, Any], None]:
    text = _pdf_safe(f"{label} · {RESEARCH_NOTICE}")

    def draw(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#444444"))
        canvas.drawString(_MARGIN, 0.9 * cm, text)
        canvas.drawRightString(A4[0] - _MARGIN, 0.9 * cm, f"page {doc.page}")
        canvas.restoreState()

    return draw


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- atomic output


def _check_target(path: str | os.PathLike[str]) -> Path:
    """The output path, refused early when it cannot be a PDF file we may write."""
    target = Path(os.fspath(path)).expanduser()
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot write the report to {target}: it is a directory", str(target))
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write the report to {target}: folder {parent} does not exist", str(target)
        )
    return target


def _write_error(target: Path, exc: OSError) -> OSError:
    reason = exc.strerror or str(exc)
    if exc.errno is None:
        return OSError(f"cannot write the report to {target}: {reason}")
    return OSError(exc.errno, f"cannot write the report to {target}: {reason}", str(target))


def _write_atomic(path: str | os.PathLike[str], render: Callable[[BinaryIO], None]) -> Path:
    """Render into a temporary file beside ``path``, then move it into place.

    On any failure the temporary file is removed and an existing file at ``path`` is left
    untouched. ``OSError`` from writing is re-raised naming ``path``.
    """
    target = _check_target(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        fh = open(tmp, "xb")  # noqa: SIM115 - closed below, before the move
    except OSError as exc:
        raise _write_error(target, exc) from exc
    try:
        try:
            render(fh)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fh.close()
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _write_error(target, exc) from exc
        raise
    return target


def _build_pdf(fh: BinaryIO, story: list[Flowable], *, title: str, footer: str) -> None:
    from cephspine import __version__

    doc = SimpleDocTemplate(
        fh,
        pagesize=A4,
        leftMargin=_MARGIN,
        rightMargin=_MARGIN,
        topMargin=_MARGIN,
        bottomMargin=_MARGIN,
        title=_pdf_safe(title),
        author="cephspine",
        subject=RESEARCH_NOTICE,
        creator=f"cephspine {__version__}",
    )
    page = _footer(footer)
    doc.build(story, onFirstPage=page, onLaterPages=page)


# --------------------------------------------------------------------------- the image


def _display_png(rg: Radiograph, max_side: int = MAX_IMAGE_SIDE_PX) -> bytes:
    """The radiograph as an 8-bit grey PNG, windowed to its 0.5–99.5 percentiles and
    downscaled to at most ``max_side`` pixels on its long side."""
    from PIL import Image

    px = rg.pixels
    step = max(1, int(math.sqrt(px.size / 1e6)))
    sample = px[::step, ::step]
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
        if not hi > lo:
            hi = lo + 1.0
    grey = np.subtract(px, np.float32(lo), dtype=np.float32)
    grey *= np.float32(255.0 / (hi - lo))
    u8 = np.clip(grey, 0.0, 255.0).astype(np.uint8)
    img = Image.fromarray(u8)
    h, w = u8.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _confidence_colour(c: float) -> Any:
    if c >= HIGH_CONFIDENCE:
        return _GREEN
    if c >= LOW_CONFIDENCE:
        return _AMBER
    return _RED


@dataclass(frozen=True)
class _Mapping:
    """Image pixels → PDF points inside the drawn image (origin at the top-left pixel's centre)."""

    scale: float
    height: float
    bottom: float

    def __call__(self, x: float, y: float) -> tuple[float, float]:
        return (x + 0.5) * self.scale, self.bottom + self.height - (y + 0.5) * self.scale


@dataclass(frozen=True)
class _Segment:
    label: str
    a: str
    b: str
    colour: str
    description: str


# The lines that define the ceph measures (domain.md §2), by landmark abbreviation.
CEPH_LINES: tuple[_Segment, ...] = (
    _Segment("S–N", "S", "N", "#00c8ff", "sella–nasion (SNA, SNB, ANB, FMA)"),
    _Segment("N–A", "N", "A", "#ffe14d", "nasion–A point (SNA, ANB)"),
    _Segment("N–B", "N", "B", "#ffa64d", "nasion–B point (SNB, ANB)"),
    _Segment("FH", "Po", "Or", "#ff4dd2", "Frankfort horizontal, porion–orbitale (ODI, APDI)"),
    _Segment("PP", "PNS", "ANS", "#b07cff", "palatal plane, PNS–ANS (ODI, APDI)"),
    _Segment("A–B", "A", "B", "#4dffb8", "A point–B point (ODI, APDI)"),
    _Segment("MP", "Go", "Me", "#7cff4d", "mandibular plane, gonion–menton (ODI)"),
    _Segment("Go–Gn", "Go", "Gn", "#4d94ff", "gonion–gnathion (FMA as in the challenge)"),
    _Segment("N–Pog", "N", "Pog", "#ff7070", "facial plane, nasion–pogonion (APDI)"),
    _Segment("S–Go", "S", "Go", "#c8c8c8", "posterior face height (FHI)"),
    _Segment("N–Me", "N", "Me", "#e8e8a0", "anterior face height (FHI)"),
    _Segment("MW", "UIT", "LIT", "#ff3030", "upper–lower incisor tips (MW)"),
)
"""Line label, end points (abbreviations), colour and description of each measure line drawn on a cephalogram."""

_CURVE_COLOURS = {"pt": "#00c8ff", "mt": "#ff4dd2", "tl": "#ffa64d"}


def _abbreviation(name: str) -> str:
    return CEPH_ABBREVIATIONS[CEPH_LANDMARKS.index(name)] if name in CEPH_LANDMARKS else name


def _ceph_points(a: Analysis) -> dict[str, npt.NDArray[np.float64]]:
    """Abbreviation → pixel position of the finite landmarks of a ceph prediction."""
    p = a.prediction
    return {_abbreviation(n): xy for n, xy in zip(p.names, p.xy_px) if np.all(np.isfinite(xy))}


def _label(canvas: Any, x: float, y: float, text: str, colour: Any, size: float, bounds: tuple[float, float]) -> None:
    """A small label on a dark translucent box, kept inside ``[0, bounds[0]] × [.., bounds[1]]``."""
    text = _pdf_safe(text)
    w = canvas.stringWidth(text, "Helvetica-Bold", size) + 2
    x = min(max(x, 0.0), bounds[0] - w)
    y = min(max(y, 0.0), bounds[1] - size - 1)
    canvas.saveState()
    canvas.setFillColor(colors.black)
    canvas.setFillAlpha(0.55)
    canvas.rect(x, y - 1, w, size + 1.5, stroke=0, fill=1)
    canvas.setFillAlpha(1.0)
    canvas.setFillColor(colour)
    canvas.setFont("Helvetica-Bold", size)
    canvas.drawString(x + 1, y + 0.2, text)
    canvas.restoreState()


def _draw_landmarks(canvas: Any, a: Analysis, to_pdf: _Mapping, bounds: tuple[float, float]) -> None:
    """Every landmark as a dot coloured by confidence (ceph: with its abbreviation)."""
    p = a.prediction
    radius = 1.3 if a.kind == "spine" else 2.2
    canvas.saveState()
    canvas.setStrokeColor(colors.black)
    canvas.setLineWidth(0.4)
    for xy, conf in zip(p.xy_px, p.confidence):
        if not np.all(np.isfinite(xy)):
            continue
        x, y = to_pdf(float(xy[0]), float(xy[1]))
        canvas.setFillColor(_confidence_colour(float(conf)))
        canvas.circle(x, y, radius, stroke=1, fill=1)
    canvas.restoreState()
    if a.kind == "ceph":
        for name, xy in zip(p.names, p.xy_px):
            if np.all(np.isfinite(xy)):
                x, y = to_pdf(float(xy[0]), float(xy[1]))
                _label(canvas, x + 3, y + 2, _abbreviation(name), colors.white, 5.5, bounds)


def _draw_ceph_lines(canvas: Any, a: Analysis, to_pdf: _Mapping, bounds: tuple[float, float]) -> None:
    pts = _ceph_points(a)
    canvas.saveState()
    canvas.setLineWidth(0.9)
    for seg in CEPH_LINES:
        if seg.a not in pts or seg.b not in pts:
            continue
        x0, y0 = to_pdf(*pts[seg.a])
        x1, y1 = to_pdf(*pts[seg.b])
        canvas.setStrokeColor(colors.HexColor(seg.colour))
        canvas.line(x0, y0, x1, y1)
    canvas.restoreState()
    for seg in CEPH_LINES:
        if seg.a in pts and seg.b in pts and seg.label != "MW":
            x0, y0 = to_pdf(*pts[seg.a])
            x1, y1 = to_pdf(*pts[seg.b])
            _label(canvas, (x0 + x1) / 2 - 6, (y0 + y1) / 2 - 7, seg.label, colors.HexColor(seg.colour), 5, bounds)


def _curve_lines(a: Analysis) -> list[tuple[str, str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]]:
    """Per Cobb curve: name, text and the two lines (each ``(2, 2)`` pixels) of its end vertebrae."""
    if a.cobb is None:
        return []
    try:
        v = a.prediction.by_vertebra()
    except ValueError:
        return []
    out = []
    for c in a.cobb.curves:
        lines = []
        for k, side in ((c.upper_vertebra, "upper"), (c.lower_vertebra, "lower")):
            q = v[k]
            if a.cobb.method == "endplates":  # the endplates the angle is measured between
                seg = np.stack([q[0], q[1]]) if side == "upper" else np.stack([q[2], q[3]])
            else:  # the reference method measures between vertebra axes
                seg = np.stack([(q[0] + q[2]) / 2, (q[1] + q[3]) / 2])
            mid, d = seg.mean(axis=0), seg[1] - seg[0]
            lines.append(np.stack([mid - 0.85 * d, mid + 0.85 * d]))
        text = f"{c.name.upper()} {c.angle_deg:.1f}° ({c.upper_name}–{c.lower_name})"
        out.append((c.name, text, (lines[0], lines[1])))
    return out


def _draw_spine_lines(canvas: Any, a: Analysis, to_pdf: _Mapping, bounds: tuple[float, float]) -> None:
    p = a.prediction
    canvas.saveState()
    try:
        v = p.by_vertebra()
    except ValueError:
        v = None
    if v is not None:  # vertebra outlines and names
        canvas.setStrokeColor(colors.white)
        canvas.setStrokeAlpha(0.6)
        canvas.setLineWidth(0.4)
        for q in v:
            if not np.all(np.isfinite(q)):
                continue
            ring = [to_pdf(*q[i]) for i in (0, 1, 3, 2)]
            path = canvas.beginPath()
            path.moveTo(*ring[0])
            for xy in ring[1:]:
                path.lineTo(*xy)
            path.close()
            canvas.drawPath(path, stroke=1, fill=0)
    canvas.restoreState()
    labelled = _curve_lines(a)
    canvas.saveState()
    canvas.setLineWidth(1.1)
    for name, _, lines in labelled:
        canvas.setStrokeColor(colors.HexColor(_CURVE_COLOURS.get(name, "#ffffff")))
        for seg in lines:
            if np.all(np.isfinite(seg)):
                canvas.line(*to_pdf(*seg[0]), *to_pdf(*seg[1]))
    canvas.restoreState()
    if v is not None:
        for k, q in enumerate(v):
            if np.all(np.isfinite(q)):
                x, y = to_pdf(*((q[0] + q[2]) / 2))
                _label(canvas, x - 14, y - 2, VERTEBRAE[k], colors.white, 4.5, bounds)
    for i, (name, text, lines) in enumerate(labelled):
        seg = lines[0]
        if np.all(np.isfinite(seg)):
            x, y = to_pdf(*seg[int(np.argmax(seg[:, 0]))])
            _label(canvas, x + 3, y - 8 * i, text, colors.HexColor(_CURVE_COLOURS.get(name, "#ffffff")), 6, bounds)


class _AnnotatedImage(Flowable):
    """The radiograph with landmarks and measure lines, and a confidence legend below it."""

    _LEGEND_H = 14.0

    def __init__(self, png: bytes, analysis: Analysis, max_height: float, min_height: float = 8 * cm) -> None:
        super().__init__()
        self.png = png
        self.analysis = analysis
        self.max_height = max_height
        self.min_height = min_height
        self.image_h, self.image_w = analysis.prediction.image_shape
        self.draw_w = self.draw_h = 0.0
        self.hAlign = "CENTER"

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        aspect = self.image_h / self.image_w
        w = avail_width
        h = w * aspect
        cap = min(avail_height - self._LEGEND_H, self.max_height)
        if h > cap:
            if cap < self.min_height:  # too little room here: ask for the next page
                cap = self.max_height
            h = min(h, cap)
            w = h / aspect
        self.draw_w, self.draw_h = w, h
        return max(w, 160.0), h + self._LEGEND_H

    def draw(self) -> None:
        c = self.canv
        w, h, bottom = self.draw_w, self.draw_h, self._LEGEND_H
        to_pdf = _Mapping(scale=w / self.image_w, height=h, bottom=bottom)
        bounds = (w, bottom + h)
        c.saveState()
        c.drawImage(ImageReader(io.BytesIO(self.png)), 0, bottom, w, h)
        clip = c.beginPath()
        clip.rect(0, bottom, w, h)
        c.clipPath(clip, stroke=0, fill=0)
        if self.analysis.kind == "ceph":
            _draw_ceph_lines(c, self.analysis, to_pdf, bounds)
        else:
            _draw_spine_lines(c, self.analysis, to_pdf, bounds)
        _draw_landmarks(c, self.analysis, to_pdf, bounds)
        c.restoreState()
        c.saveState()
        c.setStrokeColor(_GRID)
        c.setLineWidth(0.5)
        c.rect(0, bottom, w, h, stroke=1, fill=0)
        x = 0.0
        c.setFont("Helvetica", 7)
        lo, hi = LOW_CONFIDENCE, HIGH_CONFIDENCE
        for colour, text in (
            (_GREEN, f"confidence {hi:g}–1"),
            (_AMBER, f"{lo:g}–{hi:g}"),
            (_RED, f"below {lo:g}"),
        ):
            c.setFillColor(colour)
            c.setStrokeColor(colors.black)
            c.circle(x + 3, 4.5, 2.6, stroke=1, fill=1)
            c.setFillColor(colors.black)
            c.drawString(x + 8, 2, text)
            x += 12 + c.stringWidth(text, "Helvetica", 7)
        c.restoreState()


# --------------------------------------------------------------------------- single report


def _spacing_text(a: Analysis) -> str:
    sp = a.prediction.spacing
    if sp is None:
        return _NO_SPACING
    source = _SPACING_SOURCES.get(a.spacing_source or "", a.spacing_source or "an unknown source")
    return f"{sp.row_mm:g} mm × {sp.col_mm:g} mm (row × column); from {source}"


def _metadata(a: Analysis) -> list[tuple[str, str]]:
    p = a.prediction
    h, w = p.image_shape
    rows = [
        ("Source file", a.image),
        ("Pseudonym", a.pseudonym or "—"),
        ("Image size", f"{w} × {h} px (width × height)"),
        ("Pixel spacing", _spacing_text(a)),
        ("Model", f"{p.model} version {p.model_version}"),
        ("cephspine version", a.software_version or "unknown"),
        ("Analysis date", a.created or "unknown"),
        ("Report date", _now()),
        (
            "Landmarks",
            f"{len(p)}; mean confidence {float(np.mean(p.confidence)):.2f}, "
            f"{len(a.low_confidence)} below {LOW_CONFIDENCE:g}",
        ),
    ]
    if p.meta.get("mirrored"):
        rows.append(("Orientation", "left-facing; measured as its mirror image"))
    return rows


def _ceph_lines_legend(st: _Styles) -> Paragraph:
    parts = [
        f'<font color="{seg.colour}"><b>—</b></font> <b>{_esc(seg.label)}</b> {_esc(seg.description)}'
        for seg in CEPH_LINES
    ]
    return Paragraph("Lines: " + "; ".join(parts) + ".", st.small)


def _spine_lines_legend(a: Analysis, st: _Styles) -> Paragraph:
    what = (
        "the superior endplate of the upper and the inferior endplate of the lower end vertebra"
        if a.cobb is not None and a.cobb.method == "endplates"
        else "the axes (left-side to right-side midpoint) of the two end vertebrae"
    )
    parts = [f'<font color="{colour}"><b>—</b></font> <b>{name.upper()}</b>' for name, colour in _CURVE_COLOURS.items()]
    return Paragraph(
        f"Lines: for each Cobb curve, {what}; " + ", ".join(parts) + ". White outlines: the 17 vertebrae (T1–L5).",
        st.small,
    )


def _ceph_measures(a: Analysis, st: _Styles) -> list[Flowable]:
    if a.classification is None:
        return [Paragraph("Measures not computed; see the warnings below.", st.body)]
    head = ["Measure", "Description", "Value", "Normal range", "Type", "Classification", "Flag"]
    rows: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", st.cell) for h in head]]
    flagged: list[int] = []
    for m in CEPH_MEASURES:
        norm = CEPH_NORMS[m]
        e = a.classification.entries.get(m)
        if e is None:
            reason = "needs the pixel spacing" if m == "MW" and a.prediction.spacing is None else "see warnings"
            value, kind, label, flag = "not computed", "—", reason, ""
        else:
            value, kind, label = _format_value(e.value, e.unit), str(e.type), e.label
            flag = ""
            if e.value > e.normal_high:
                flag = "above normal"
            elif e.value < e.normal_low:
                flag = "below normal"
            if flag:
                flagged.append(len(rows))
        rows.append(
            [
                Paragraph(f"<b>{_esc(m)}</b>", st.cell),
                Paragraph(_esc(norm.name), st.cell),
                Paragraph(_esc(value), st.cell),
                Paragraph(_esc(norm.normal_range), st.cell),
                Paragraph(_esc(kind), st.cell),
                Paragraph(_esc(label), st.cell),
                Paragraph(f"<b>{_esc(flag)}</b>" if flag else "", st.cell),
            ]
        )
    widths = [1.6 * cm, 4.5 * cm, 1.9 * cm, 2.2 * cm, 1.0 * cm, 3.3 * cm]
    widths.append(_FRAME_WIDTH - sum(widths))
    t = _table(rows, widths)
    t.setStyle(TableStyle([("BACKGROUND", (0, r), (-1, r), _FLAG_BG) for r in flagged]))
    note = Paragraph(
        "Definitions and type numbers follow the ISBI 2015 challenge (type 1 = normal range). "
        "Rows outside the normal range are shaded and flagged.",
        st.small,
    )
    return [t, Spacer(1, 3), note]


def _spine_measures(a: Analysis, st: _Styles) -> list[Flowable]:
    if a.cobb is None:
        return [Paragraph("Cobb angles not computed; see the warnings below.", st.body)]
    head = ["Curve", "Angle", "End vertebrae", "Severity"]
    rows: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", st.cell) for h in head]]
    flagged = []
    for c in a.cobb.curves:
        if c.severity != "normal":
            flagged.append(len(rows))
        rows.append(
            [
                Paragraph(f"<b>{c.name.upper()}</b>", st.cell),
                Paragraph(_esc(f"{c.angle_deg:.1f}°"), st.cell),
                Paragraph(_esc(f"{c.upper_name}–{c.lower_name}"), st.cell),
                Paragraph(_esc(c.severity), st.cell),
            ]
        )
    t = _table(rows, [2.0 * cm, 2.6 * cm, 3.4 * cm, 3.0 * cm])
    t.setStyle(TableStyle([("BACKGROUND", (0, r), (-1, r), _FLAG_BG) for r in flagged]))
    bands = ", ".join(f"{b.label} {b.text}" for b in COBB_SEVERITY_BANDS)
    method = (
        "the AASCE dataset's reference algorithm (angles between vertebra axes; PT is the largest)"
        if a.cobb.method == "reference"
        else "endplate lines"
    )
    notes = [f"Measured with {method}.", f"Severity bands (display only): {bands}."]
    if a.cobb.s_curve is not None:
        notes.append(f"S curve: {'yes' if a.cobb.s_curve else 'no'}.")
    if a.cobb.invalid_vertebrae:
        notes.append(f"Vertebrae with corners out of order: {', '.join(a.cobb.invalid_vertebrae)}.")
    return [t, Spacer(1, 3), Paragraph(_esc(" ".join(notes)), st.small)]


def _low_confidence_items(a: Analysis) -> list[str]:
    p = a.prediction
    out = []
    for name, conf in zip(p.names, p.confidence):
        if conf < LOW_CONFIDENCE:
            abbr = _abbreviation(name)
            shown = f"{name} ({abbr})" if abbr != name else name
            out.append(f"{shown}: confidence {float(conf):.2f}")
    return out


def _single_story(a: Analysis, png: bytes, st: _Styles) -> list[Flowable]:
    story: list[Flowable] = [
        Paragraph(f"cephspine report: {_esc(_KIND_TITLES.get(a.kind, a.kind))}", st.title),
        Paragraph(_esc(a.image), st.subtitle),
        Paragraph(_esc(RESEARCH_NOTICE), st.notice),
        _key_values(_metadata(a), st),
        Spacer(1, 8),
        KeepTogether(
            [
                _AnnotatedImage(png, a, max_height=17 * cm if a.kind == "ceph" else 17.5 * cm),
                Spacer(1, 3),
                _ceph_lines_legend(st) if a.kind == "ceph" else _spine_lines_legend(a, st),
            ]
        ),
    ]
    if a.kind == "ceph":
        story += [Paragraph("Cephalometric measures", st.heading), *_ceph_measures(a, st)]
    else:
        story += [Paragraph("Cobb angles", st.heading), *_spine_measures(a, st)]
    story += [
        Paragraph(f"Low-confidence landmarks (confidence below {LOW_CONFIDENCE:g})", st.heading),
        *_bullets(_low_confidence_items(a), st, f"None: every landmark has confidence {LOW_CONFIDENCE:g} or more."),
        Paragraph("Warnings", st.heading),
        *_bullets(list(a.warnings), st, "None."),
    ]
    if a.identifiers:
        story += [
            KeepTogether(
                [
                    Paragraph("DICOM identifiers", st.heading),
                    _key_values(sorted(a.identifiers.items()), st),
                ]
            )
        ]
    return story


def write_report(analysis: Analysis, path: str | os.PathLike[str], *, image: ImageSource) -> Path:
    """Write a one-image PDF report (A4) of an analysis.

    The report holds the radiograph (downscaled to at most :data:`MAX_IMAGE_SIDE_PX`
    pixels) with the landmarks coloured by confidence (green ≥ 0.7, amber ≥ 0.3, red
    below) and the lines that define the measures (ceph: S–N, N–A, N–B, Frankfort
    Po–Or, palatal plane, A–B, mandibular plane Go–Me, Go–Gn, N–Pog, face heights,
    incisor tips; spine: the end vertebrae of each Cobb curve, labelled PT/MT/TL with
    the angle); the measures table (ceph: value, normal range, type and label, values
    outside the normal range flagged; spine: angle, end vertebrae, severity); the
    low-confidence landmarks and every warning; the source file, pseudonym, image size,
    pixel spacing and its source, model and versions, dates; the research-use notice;
    and the DICOM identifiers only when ``analysis.identifiers`` is non-empty.

    Args:
        analysis: the result of :func:`~cephspine.analyze`.
        path: the PDF file to write. Written atomically: an existing file is replaced
            only when the new report is complete, and a failure leaves no file behind.
        image: the radiograph the analysis was made on: a path, an ``(H, W)`` array or
            a :class:`~cephspine.Radiograph` (read with :func:`~cephspine.load_image`).

    Returns:
        The path written.

    Raises:
        ImageReadError: the image cannot be read, or its size differs from the one the
            analysis was made on.
        ValueError: the analysis has an unknown kind.
        OSError: the PDF cannot be written (the message names ``path``).

    Example::

        a = cephspine.analyze("scan.dcm")
        write_report(a, "scan.pdf", image="scan.dcm")
    """
    check_kind(analysis.kind)
    _check_target(path)
    rg = image if isinstance(image, Radiograph) else load_image(image)
    if rg.shape != tuple(analysis.prediction.image_shape):
        h, w = analysis.prediction.image_shape
        raise ImageReadError(
            rg.source if rg.source is not None else "<array>",
            f"is {rg.width} × {rg.height} px but the analysis of {analysis.image} was made on an image of "
            f"{w} × {h} px; pass the radiograph the analysis was made on",
        )
    png = _display_png(rg)
    st = _styles()
    story = _single_story(analysis, png, st)
    footer = f"cephspine {analysis.software_version or ''} · {analysis.image}".replace("  ", " ")

    def render(fh: BinaryIO) -> None:
        _build_pdf(fh, story, title=f"cephspine report: {analysis.image}", footer=footer)

    return _write_atomic(path, render)


def report(
    image: ImageSource,
    path: str | os.PathLike[str],
    *,
    kind: str = "ceph",
    detector: Detector | None = None,
    spacing: SpacingLike = None,
    include_identifiers: bool = False,
    device: str = "auto",
) -> Analysis:
    """Analyse one radiograph and write its PDF report: :func:`~cephspine.analyze`, then
    :func:`write_report`.

    Args:
        image: path (JPEG/PNG/TIFF/DICOM), ``(H, W)`` array or :class:`~cephspine.Radiograph`.
        path: the PDF file to write (atomically; see :func:`write_report`).
        kind: ``"ceph"`` or ``"spine"``.
        detector: a loaded :class:`~cephspine.Detector` to reuse (default: the shipped
            model of ``kind``).
        spacing: pixel spacing in mm overriding the file's (number or ``(row, col)``).
        include_identifiers: print the DICOM patient identifiers in the report.
        device: device for the default detector (``"auto"``, ``"cpu"``, ``"cuda"``).

    Returns:
        The :class:`~cephspine.analysis.Analysis` the report shows.

    Raises:
        ImageReadError, UnsupportedImageError, SpacingError: the image cannot be used.
        UnknownModelError: no shipped model for ``kind``.
        OSError: the PDF cannot be written (checked before the image is analysed).
    """
    check_kind(kind)
    _check_target(path)
    rg = load_image(image, spacing=spacing)
    analysis = analyze(rg, kind, detector=detector, include_identifiers=include_identifiers, device=device)
    write_report(analysis, path, image=rg)
    return analysis


# --------------------------------------------------------------------------- cohort report


def _numeric(table: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    """The finite values of a column (non-numeric entries dropped)."""
    import pandas as pd

    if column not in table.columns:
        return np.empty(0)
    v = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    return np.asarray(v[np.isfinite(v)], dtype=np.float64)


def _histogram(
    values: npt.NDArray[np.float64],
    title: str,
    *,
    band: tuple[float, float] | None = None,
    marks: Sequence[float] = (),
    width: float = 8.4 * cm,
    height: float = 5.2 * cm,
) -> Drawing:
    """A histogram drawing (reportlab graphics), the normal ``band`` shaded, ``marks`` dashed."""
    d = Drawing(width, height)
    d.add(String(4, height - 10, _pdf_safe(title), fontName="Helvetica-Bold", fontSize=8))
    if values.size == 0:
        d.add(String(4, height / 2, "no values", fontName="Helvetica", fontSize=8))
        return d
    n_bins = int(min(20, max(5, math.ceil(math.sqrt(values.size)))))
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9 * max(1.0, abs(lo)):  # one value: a narrow range around it
        half = max(abs(lo) * 0.05, 1e-3)
        lo, hi = lo - half, hi + half
    counts, edges = np.histogram(values, bins=n_bins, range=(lo, hi))
    chart = VerticalBarChart()
    chart.x, chart.y = 28, 22
    chart.width, chart.height = width - 38, height - 40
    chart.data = [[int(c) for c in counts]]
    chart.categoryAxis.categoryNames = [""] * len(counts)
    chart.categoryAxis.labels.visible = False
    top = max(1, int(counts.max()))
    step = max(1, math.ceil(top / 5))
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = step * math.ceil(top / step)
    chart.valueAxis.valueStep = step
    chart.valueAxis.labels.fontSize = 6
    chart.valueAxis.labels.fontName = "Helvetica"
    chart.groupSpacing = 1
    chart.bars[0].fillColor = colors.HexColor("#4c72b0")
    chart.bars[0].strokeColor = colors.HexColor("#2b3f66")
    chart.bars[0].strokeWidth = 0.3
    lo_edge, hi_edge = float(edges[0]), float(edges[-1])

    def x_of(v: float) -> float:
        return float(chart.x + (v - lo_edge) / (hi_edge - lo_edge) * chart.width)

    if band is not None:
        a, b = max(band[0], lo_edge), min(band[1], hi_edge)
        if b > a:
            d.add(
                Rect(
                    x_of(a),
                    chart.y,
                    x_of(b) - x_of(a),
                    chart.height,
                    fillColor=colors.HexColor("#d8f0d8"),
                    strokeColor=None,
                )
            )
    d.add(chart)
    for m in marks:
        if lo_edge < m < hi_edge:
            d.add(
                Line(
                    x_of(m),
                    chart.y,
                    x_of(m),
                    chart.y + chart.height,
                    strokeColor=colors.HexColor("#c03030"),
                    strokeDashArray=[2, 2],
                    strokeWidth=0.7,
                )
            )
    ticks = edges[:: max(1, len(edges) // 5)]
    decimals = max(0, 1 - math.floor(math.log10(float(ticks[1] - ticks[0])))) if len(ticks) > 1 else 2
    for t in ticks:
        label = f"{float(t):.{decimals}f}"
        d.add(String(x_of(float(t)), 12, label, fontName="Helvetica", fontSize=6, textAnchor="middle"))
    return d


def _grid(drawings: list[Drawing]) -> Table:
    rows = [drawings[i : i + 2] for i in range(0, len(drawings), 2)]
    if rows and len(rows[-1]) == 1:
        rows[-1].append("")
    t = Table(rows, colWidths=[_FRAME_WIDTH / 2] * 2)
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    t.hAlign = "LEFT"
    return t


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


def _cell_rows(rows: list[list[str]], st: _Styles) -> list[list[Any]]:
    return [[Paragraph(_esc(c) if i else f"<b>{_esc(c)}</b>", st.cell) for c in row] for i, row in enumerate(rows)]


def _ceph_cohort(ok: pd.DataFrame, st: _Styles) -> list[Flowable]:
    story: list[Flowable] = [Paragraph("Measures", st.heading)]
    stats = [["Measure", "n", "Mean", "SD", "Median", "Min", "Max", "Normal range", "Outside normal"]]
    drawings = []
    for m in CEPH_MEASURES:
        unit = MEASURE_UNITS[m]
        v = _numeric(ok, f"{m.lower()}_{unit}")
        norm = CEPH_NORMS[m]
        outside = int(np.count_nonzero((v < norm.normal_low) | (v > norm.normal_high)))
        row = _stats_row(m, v, partial(_format_value, unit=unit))
        row += [norm.normal_range, f"{outside} ({100 * outside / v.size:.0f} %)" if v.size else "—"]
        stats.append(row)
        suffix = {"deg": " (°)", "mm": " (mm)", "ratio": " (ratio)"}[unit]
        drawings.append(_histogram(v, f"{m}{suffix}, n = {v.size}", band=(norm.normal_low, norm.normal_high)))
    widths = [1.4 * cm, 0.9 * cm, 1.7 * cm, 1.5 * cm, 1.7 * cm, 1.7 * cm, 1.7 * cm, 2.2 * cm]
    widths.append(_FRAME_WIDTH - sum(widths))
    story += [
        _table(_cell_rows(stats, st), widths),
        Spacer(1, 3),
        Paragraph("Histograms of the successful analyses; the normal range (type 1) is shaded green.", st.small),
        Spacer(1, 4),
        _grid(drawings),
        Paragraph("Anatomical types", st.heading),
    ]
    classes = [["Measure", "Type", "Classification", "Images", "Share"]]
    for m in CEPH_MEASURES:
        col = f"{m.lower()}_class"
        if col not in ok.columns:
            continue
        labels = ok[col].fillna("").astype(str)
        labels = labels[labels != ""]
        counts = labels.value_counts()
        known = CEPH_NORMS[m].labels
        order = [(str(t), lab) for t, lab in sorted(known.items())]
        order += [("?", lab) for lab in counts.index if lab not in known.values()]
        for t, lab in order:
            n = int(counts.get(lab, 0))
            share = f"{100 * n / len(labels):.0f} %" if len(labels) else "—"
            classes.append([m, t, lab, str(n), share])
    if len(classes) == 1:
        story.append(Paragraph("No classification columns (<i>measure</i>_class) in the table.", st.body))
    else:
        story.append(_table(_cell_rows(classes, st), [2.0 * cm, 1.2 * cm, 5.5 * cm, 2.0 * cm, 2.0 * cm]))
    return story


def _spine_cohort(ok: pd.DataFrame, st: _Styles) -> list[Flowable]:
    story: list[Flowable] = [Paragraph("Cobb angles", st.heading)]
    stats = [["Angle", "n", "Mean", "SD", "Median", "Min", "Max"]]
    for col, label in (("max_cobb_deg", "max Cobb"), ("pt_deg", "PT"), ("mt_deg", "MT"), ("tl_deg", "TL")):
        stats.append(_stats_row(label, _numeric(ok, col), lambda x: f"{x:.1f}°"))
    story.append(_table(_cell_rows(stats, st), [2.4 * cm, 1.0 * cm] + [2.0 * cm] * 5))
    marks = [b.low_deg for b in COBB_SEVERITY_BANDS if b.low_deg > 0]
    v = _numeric(ok, "max_cobb_deg")
    story += [
        Spacer(1, 6),
        _histogram(v, f"Largest Cobb angle per image (°), n = {v.size}", marks=marks, width=12 * cm, height=6 * cm),
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
    story.append(_table(_cell_rows(rows, st), [3.0 * cm, 3.0 * cm, 2.0 * cm, 2.0 * cm]))
    return story


def _cohort_story(table: pd.DataFrame, kind: str, st: _Styles) -> list[Flowable]:
    import pandas as pd

    from cephspine import __version__

    status = table["status"].fillna("ok").astype(str) if "status" in table.columns else None
    is_error = (status == "error") if status is not None else pd.Series(False, index=table.index)
    errors, ok = table[is_error], table[~is_error]
    counts = [
        ("Images", str(len(table))),
        ("Analysed (ok)", str(len(ok))),
        ("Errors", str(len(errors))),
    ]
    if "n_low_confidence" in ok.columns:
        n_low = int((pd.to_numeric(ok["n_low_confidence"], errors="coerce").fillna(0) > 0).sum())
        counts.append(("With low-confidence landmarks", str(n_low)))
    if "n_warnings" in ok.columns:
        n_warn = int((pd.to_numeric(ok["n_warnings"], errors="coerce").fillna(0) > 0).sum())
        counts.append(("With warnings", str(n_warn)))
    if {"model", "model_version"} <= set(ok.columns) and len(ok):
        models = sorted({f"{m} version {v}" for m, v in zip(ok["model"].astype(str), ok["model_version"].astype(str))})
        counts.append(("Models", ", ".join(models)))
    if "spacing_source" in ok.columns and len(ok):
        src = ok["spacing_source"].fillna("").astype(str).replace("", "unknown").value_counts()
        counts.append(("Pixel spacing from", ", ".join(f"{k}: {int(n)}" for k, n in src.items())))
    counts += [("cephspine version", __version__), ("Report date", _now())]
    story: list[Flowable] = [
        Paragraph(f"cephspine cohort report: {_esc(_KIND_TITLES[kind])}", st.title),
        Paragraph(_esc(RESEARCH_NOTICE), st.notice),
        _key_values(counts, st),
    ]
    if len(ok) == 0:
        story.append(Paragraph("No successful analyses in the table.", st.body))
    else:
        story += _ceph_cohort(ok, st) if kind == "ceph" else _spine_cohort(ok, st)
    story.append(Paragraph(f"Errors ({len(errors)})", st.heading))
    if len(errors) == 0:
        story.append(Paragraph("None.", st.body))
    else:
        images = errors["image"].fillna("").astype(str)
        messages = errors["error"].fillna("").astype(str) if "error" in errors.columns else images.map(lambda _: "")
        rows = [[Paragraph("<b>Image</b>", st.cell), Paragraph("<b>Message</b>", st.cell)]]
        rows += [[Paragraph(_esc(i), st.cell), Paragraph(_esc(m), st.cell)] for i, m in zip(images, messages)]
        story.append(_table(rows, [5.0 * cm, _FRAME_WIDTH - 5.0 * cm]))
    return story


def write_cohort_report(table: pd.DataFrame, path: str | os.PathLike[str], *, kind: str) -> Path:
    """Write a summary PDF (A4) of a cohort table.

    Args:
        table: one row per image: :meth:`Analysis.to_row() <cephspine.analysis.Analysis.to_row>`
            rows plus error rows (``status == "error"`` with an ``error`` message), as a
            cohort run produces.
        path: the PDF file to write (atomically, as :func:`write_report`).
        kind: ``"ceph"``: counts, statistics and a histogram per measure (normal range
            shaded) and the counts of each anatomical type (``<measure>_class``);
            ``"spine"``: the distribution of the largest Cobb angle and the counts per
            severity band (``severity``). Both end with the table of error rows.

    Returns:
        The path written.

    Raises:
        ValueError: unknown ``kind``, no ``image`` column, or rows of another kind.
        OSError: the PDF cannot be written (the message names ``path``).
    """
    check_kind(kind)
    if "image" not in table.columns:
        raise ValueError(
            "a cohort table needs an 'image' column (rows of Analysis.to_row() and error rows); "
            f"got columns {list(table.columns)[:12]}"
        )
    if "kind" in table.columns:
        status = table["status"].astype(str) if "status" in table.columns else None
        rows = table if status is None else table[status != "error"]
        other = sorted(set(rows["kind"].dropna().astype(str)) - {"", kind})
        if other:
            raise ValueError(f"the table holds {', '.join(other)} analyses; write_cohort_report got kind={kind!r}")
    _check_target(path)
    st = _styles()
    story = _cohort_story(table, kind, st)

    def render(fh: BinaryIO) -> None:
        _build_pdf(fh, story, title=f"cephspine cohort report ({kind})", footer=f"cephspine cohort report ({kind})")

    return _write_atomic(path, render)
