"""Shared parts of the PDF reports: page geometry, styles, text and table helpers, the
footer, argument checks and the atomic writer."""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Table, TableStyle

from cephspine import _atomic
from cephspine.analysis import KINDS
from cephspine.errors import InvalidArgumentError

RESEARCH_NOTICE = "Research use only. Not a medical device; not for diagnosis or treatment decisions."
"""The notice printed on every page of every report."""

GREEN = colors.HexColor("#2ca02c")
AMBER = colors.HexColor("#ffb000")
RED = colors.HexColor("#e0202f")
FLAG_BG = colors.HexColor("#fde2e2")
ALARM_BG = colors.HexColor("#c62828")
"""Background of the banner of a result that is not one (:func:`alarm_banner`)."""
HEADER_BG = colors.HexColor("#e6e9ef")
GRID = colors.HexColor("#9aa3b0")

MARGIN = 1.5 * cm
_FRAME_PADDING = 6.0  # reportlab's default padding inside a page's frame
FRAME_WIDTH = A4[0] - 2 * MARGIN - 2 * _FRAME_PADDING
"""The width a flowable may take on a page, points."""
FRAME_HEIGHT = A4[1] - 2 * MARGIN - 2 * _FRAME_PADDING
"""The height a flowable may take on a page, points."""

KIND_TITLES = {"ceph": "lateral cephalogram", "spine": "spine AP radiograph"}
_UNIT_SUFFIX = {"deg": "°", "mm": " mm", "ratio": ""}

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


# --------------------------------------------------------------------------- arguments


def check_kind(kind: object) -> str:
    """``kind`` if it names an anatomy (``"ceph"``/``"spine"``), else :class:`InvalidArgumentError`."""
    if kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return str(kind)


# --------------------------------------------------------------------------- text helpers


def pdf_safe(text: object) -> str:
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


def esc(text: object) -> str:
    """``text`` made safe for a reportlab :class:`Paragraph` (encoding and XML markup)."""
    return escape(pdf_safe(text))


def format_value(value: float, unit: str) -> str:
    """A measure's value as printed: degrees and millimetres with 2 decimals, ratios with 3."""
    if not math.isfinite(value):
        return "n/a"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:.2f}{_UNIT_SUFFIX.get(unit, ' ' + unit)}"


def plural(n: int, word: str) -> str:
    """``"1 image"``, ``"5 images"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- styles and tables


@dataclass(frozen=True)
class Styles:
    title: ParagraphStyle
    subtitle: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    cell: ParagraphStyle
    cell_bold: ParagraphStyle
    notice: ParagraphStyle


def styles() -> Styles:
    base = getSampleStyleSheet()
    body = ParagraphStyle("cs-body", parent=base["BodyText"], fontName="Helvetica", fontSize=9, leading=11.5)
    return Styles(
        title=ParagraphStyle("cs-title", parent=base["Title"], fontSize=16, leading=19, spaceBefore=0, spaceAfter=2),
        subtitle=ParagraphStyle("cs-subtitle", parent=body, alignment=1, fontSize=9.5, spaceBefore=0, spaceAfter=2),
        heading=ParagraphStyle(
            "cs-heading",
            parent=base["Heading2"],
            fontSize=11,
            leading=13.5,
            spaceBefore=6,
            spaceAfter=3,
            keepWithNext=1,
        ),
        body=body,
        small=ParagraphStyle("cs-small", parent=body, fontSize=7.5, leading=9.3, spaceBefore=0, spaceAfter=0),
        cell=ParagraphStyle("cs-cell", parent=body, fontSize=8, leading=9.8, spaceBefore=0, spaceAfter=0),
        cell_bold=ParagraphStyle(
            "cs-cell-bold", parent=body, fontName="Helvetica-Bold", fontSize=8, leading=9.8, spaceBefore=0
        ),
        notice=ParagraphStyle(
            "cs-notice",
            parent=body,
            fontName="Helvetica-Bold",
            fontSize=8.5,
            leading=10.5,
            textColor=colors.HexColor("#7a1010"),
            borderColor=colors.HexColor("#7a1010"),
            borderWidth=0.6,
            borderPadding=4,
            spaceBefore=6,
            spaceAfter=10,
        ),
    )


def table(rows: list[list[Any]], widths: Sequence[float] | None, *, header: bool = True) -> Table:
    """A grid table with an optional shaded header row."""
    t = Table(rows, colWidths=list(widths) if widths is not None else None, repeatRows=1 if header else 0)
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), HEADER_BG), ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    t.setStyle(TableStyle(style))
    t.hAlign = "LEFT"
    return t


def alarm_banner(text: str, st: Styles, width: float = FRAME_WIDTH) -> Table:
    """``text`` in bold white on red, ``width`` wide: the first thing on the page of a
    result that is not one (the image does not look like the anatomy of its kind)."""
    style = ParagraphStyle("cs-alarm", parent=st.body, fontName="Helvetica-Bold", textColor=colors.white)
    t = Table([[Paragraph(esc(text), style)]], colWidths=[width])
    t.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), ALARM_BG),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
                ("LEFTPADDING", (0, 0), (-1, -1), 6),
                ("RIGHTPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    t.hAlign = "LEFT"
    t.spaceAfter = 4
    return t


def key_values(
    pairs: Sequence[tuple[str, str]], st: Styles, width: float = FRAME_WIDTH, key_width: float = 0.0
) -> Table:
    """Two-column table of bold keys and values, ``width`` wide."""
    kw = key_width or min(4.2 * cm, 0.36 * width)
    rows = [[Paragraph(esc(k), st.cell_bold), Paragraph(esc(v), st.cell)] for k, v in pairs]
    return table(rows, [kw, width - kw], header=False)


def bullets(items: Sequence[str], st: Styles, empty: str) -> list[Flowable]:
    if not items:
        return [Paragraph(esc(empty), st.body)]
    return [Paragraph(esc(item), st.body, bulletText="•") for item in items]


def keeps_with_next(f: Flowable) -> bool:
    """Whether ``f`` is a heading that must stay with what follows it."""
    style: Any = getattr(f, "style", None)
    return bool(getattr(style, "keepWithNext", 0))


def height_of(flowables: Sequence[Flowable], width: float) -> float:
    """The height ``flowables`` take stacked in a frame ``width`` wide, spacing included."""
    total = 0.0
    for i, f in enumerate(flowables):
        _, h = f.wrap(width, FRAME_HEIGHT * 4)
        total += h + (f.getSpaceBefore() if i else 0.0) + f.getSpaceAfter()
    return total


# --------------------------------------------------------------------------- page and output


def _footer(label: str) -> Callable[[Any, Any], None]:
    text = pdf_safe(f"{label} · {RESEARCH_NOTICE}")

    def draw(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#444444"))
        canvas.drawString(MARGIN, 0.9 * cm, text)
        canvas.drawRightString(A4[0] - MARGIN, 0.9 * cm, f"page {doc.page}")
        canvas.restoreState()

    return draw


def check_target(path: str | os.PathLike[str]) -> Path:
    """The report path, refused early (:class:`OutputError`) when it is a folder or its
    folder does not exist (:func:`cephspine._atomic.check_target`)."""
    return _atomic.check_target(path, "report")


def write_atomic(path: str | os.PathLike[str], render: Callable[[BinaryIO], None]) -> Path:
    """Render a report into a temporary file beside ``path``, then move it into place
    (:func:`cephspine._atomic.write_atomic`: nothing partial is left on failure)."""
    return _atomic.write_atomic(path, render, "report")


def build_pdf(fh: BinaryIO, story: list[Flowable], *, title: str, footer: str) -> None:
    from cephspine import __version__

    doc = SimpleDocTemplate(
        fh,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=pdf_safe(title),
        author="cephspine",
        subject=RESEARCH_NOTICE,
        creator=f"cephspine {__version__}",
    )
    page = _footer(footer)
    doc.build(story, onFirstPage=page, onLaterPages=page)


def layout_style(
    valign: str = "TOP", *, left: float = 0, right: float | None = 0, top: float = 0, bottom: float = 0
) -> TableStyle:
    """Style of a table used for layout only (no lines): alignment and cell paddings
    (``right=None`` keeps reportlab's default right padding)."""
    cmds: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), valign),
        ("LEFTPADDING", (0, 0), (-1, -1), left),
        ("TOPPADDING", (0, 0), (-1, -1), top),
        ("BOTTOMPADDING", (0, 0), (-1, -1), bottom),
    ]
    if right is not None:
        cmds.append(("RIGHTPADDING", (0, 0), (-1, -1), right))
    return TableStyle(cmds)
