"""The comparison report of two cephalograms of one patient: :func:`write_compare_report`.

The page shows both tracings superimposed on S–N registered at S (the frame of
:mod:`cephspine.comparison`: sella at the origin, S → N to the right, menton below), the
first film in blue with round dots and solid lines, the second in red with square dots and
dashed lines, each landmark's two positions joined by a thin grey line; a legend names the
films. Beside the provenance of both films follow the change of every measure (before,
after, change) and the displacement of every landmark (along S → N, perpendicular, and the
distance, mm).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from reportlab.lib import colors
from reportlab.lib.units import cm
from reportlab.platypus import Flowable, Paragraph, Spacer

from cephspine.anatomy import CEPH_ABBREVIATIONS
from cephspine.reports._labels import Box, LabelPlacer, draw_labels, draw_leaders
from cephspine.reports._pdf import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    GRID,
    RESEARCH_NOTICE,
    build_pdf,
    check_target,
    esc,
    format_value,
    height_of,
    key_values,
    now,
    pdf_safe,
    styles,
    table,
    write_atomic,
)
from cephspine.reports.ceph import CEPH_LINES, LANDMARK_LABEL_SIZE

if TYPE_CHECKING:
    from cephspine.analysis import Analysis
    from cephspine.comparison import Comparison
    from cephspine.reports._pdf import Styles

BEFORE_COLOUR = colors.HexColor("#1f5fbf")
"""Colour of the first film's tracing."""
AFTER_COLOUR = colors.HexColor("#d62728")
"""Colour of the second film's tracing."""

MIN_DRAWING_HEIGHT = 12 * cm
"""The superimposed tracings take the rest of the first page, and at least this height, points."""
_SLACK = 4.0  # points kept free on the page against rounding in the layout
_LEGEND_HEIGHT = 26.0  # the two legend lines under the drawing, points
_MARGIN_MM = 6.0  # room around the landmarks in the drawing, mm
_DOT = 2.0  # dot radius, points
_SCALE_BAR_MM = 10.0
_IDX = {a: i for i, a in enumerate(CEPH_ABBREVIATIONS)}


class Superimposition(Flowable):
    """Both films' landmarks and measure lines in the S–N frame, ``width`` × ``height``
    points, and a legend naming the films below."""

    def __init__(self, comparison: Comparison, width: float, height: float) -> None:
        super().__init__()
        self.cmp = comparison
        self.draw_w, self.draw_h = width, height
        self.placer: LabelPlacer | None = None
        self.hAlign = "LEFT"

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.draw_w, self.draw_h + _LEGEND_HEIGHT

    def _mapping(self) -> tuple[float, Any]:
        both = np.concatenate([self.cmp.before_sn_mm, self.cmp.after_sn_mm])
        both = both[np.isfinite(both).all(axis=1)]
        lo, hi = both.min(axis=0) - _MARGIN_MM, both.max(axis=0) + _MARGIN_MM
        span = hi - lo
        scale = min(self.draw_w / span[0], self.draw_h / span[1])  # points per mm
        ox = (self.draw_w - span[0] * scale) / 2
        top = _LEGEND_HEIGHT + self.draw_h - (self.draw_h - span[1] * scale) / 2

        def to_pdf(x: float, y: float) -> tuple[float, float]:  # y (toward menton) is down on the page
            return ox + (x - lo[0]) * scale, top - (y - lo[1]) * scale

        return scale, to_pdf

    def draw(self) -> None:
        c = self.canv
        scale, to_pdf = self._mapping()
        bottom = _LEGEND_HEIGHT
        c.saveState()
        c.setStrokeColor(GRID)
        c.setLineWidth(0.5)
        c.rect(0, bottom, self.draw_w, self.draw_h, stroke=1, fill=0)
        clip = c.beginPath()
        clip.rect(0, bottom, self.draw_w, self.draw_h)
        c.clipPath(clip, stroke=0, fill=0)
        # the S–N line (x axis) through the whole drawing, and the perpendicular at S
        sx, sy = to_pdf(0.0, 0.0)
        c.setDash(1, 2)
        c.line(0, sy, self.draw_w, sy)
        c.line(sx, bottom, sx, bottom + self.draw_h)
        c.setDash()
        films = ((self.cmp.before_sn_mm, BEFORE_COLOUR, None), (self.cmp.after_sn_mm, AFTER_COLOUR, (3, 2)))
        pts = [{a: to_pdf(*xy) for a, xy in zip(CEPH_ABBREVIATIONS, f) if np.isfinite(xy).all()} for f, _, _ in films]
        c.setStrokeColor(colors.HexColor("#9a9a9a"))
        c.setLineWidth(0.5)
        for a in CEPH_ABBREVIATIONS:  # each landmark's two positions joined
            if a in pts[0] and a in pts[1]:
                c.line(*pts[0][a], *pts[1][a])
        for (_, colour, dash), p in zip(films, pts):
            c.setStrokeColor(colour)
            c.setLineWidth(0.9)
            c.setDash(*(dash or ()))
            for seg in CEPH_LINES:
                if seg.a in p and seg.b in p:
                    c.line(*p[seg.a], *p[seg.b])
            c.setDash()
        placer = LabelPlacer(Box(0.0, bottom, self.draw_w, bottom + self.draw_h))
        for p in pts:
            for x, y in p.values():
                placer.add_dot(x, y, _DOT + 0.3)
        centre = np.mean(list(pts[0].values()), axis=0) if pts[0] else np.zeros(2)
        for a, (x, y) in pts[0].items():
            away = math.atan2(y - centre[1], x - centre[0])
            placer.place_at_point(
                pdf_safe(a), x, y, size=LANDMARK_LABEL_SIZE, colour=colors.white, clearance=_DOT + 0.6, prefer=away
            )
        draw_leaders(c, placer.labels)
        c.setLineWidth(0.4)
        c.setStrokeColor(colors.black)
        for (x, y), colour, square in (
            *((xy, BEFORE_COLOUR, False) for xy in pts[0].values()),
            *((xy, AFTER_COLOUR, True) for xy in pts[1].values()),
        ):
            c.setFillColor(colour)
            if square:
                c.rect(x - _DOT, y - _DOT, 2 * _DOT, 2 * _DOT, stroke=1, fill=1)
            else:
                c.circle(x, y, _DOT, stroke=1, fill=1)
        draw_labels(c, placer.labels)
        # scale bar, bottom right
        bar = _SCALE_BAR_MM * scale
        x1, y0 = self.draw_w - 8, bottom + 8
        c.setStrokeColor(colors.black)
        c.setLineWidth(1.2)
        c.line(x1 - bar, y0, x1, y0)
        c.setFont("Helvetica", 7)
        c.setFillColor(colors.black)
        c.drawCentredString(x1 - bar / 2, y0 + 3, f"{_SCALE_BAR_MM:g} mm")
        c.restoreState()
        self.placer = placer
        self._legend()

    def _legend(self) -> None:
        c = self.canv
        c.saveState()
        c.setFont("Helvetica", 7.5)
        for row, (a, colour, dash, square, word) in enumerate(
            (
                (self.cmp.before, BEFORE_COLOUR, None, False, "before"),
                (self.cmp.after, AFTER_COLOUR, (3, 2), True, "after"),
            )
        ):
            y = _LEGEND_HEIGHT - 9 - 11 * row
            c.setStrokeColor(colour)
            c.setLineWidth(0.9)
            c.setDash(*(dash or ()))
            c.line(0, y + 2.5, 22, y + 2.5)
            c.setDash()
            c.setStrokeColor(colors.black)
            c.setLineWidth(0.4)
            c.setFillColor(colour)
            if square:
                c.rect(11 - _DOT, y + 2.5 - _DOT, 2 * _DOT, 2 * _DOT, stroke=1, fill=1)
            else:
                c.circle(11, y + 2.5, _DOT, stroke=1, fill=1)
            c.setFillColor(colors.black)
            c.drawString(28, y, pdf_safe(f"{word}: {a.image} ({_date(a)})"))
        c.restoreState()


def _date(a: Analysis) -> str:
    return f"analysed {a.created[:10]}" if a.created else "analysis date unknown"


def _spacing(a: Analysis) -> str:
    sp = a.prediction.spacing
    return "unknown" if sp is None else f"{sp.row_mm:g} mm × {sp.col_mm:g} mm"


def _metadata(cmp: Comparison) -> list[tuple[str, str]]:
    b, a = cmp.before, cmp.after
    return [
        ("Before", f"{b.image} (pseudonym {b.pseudonym or '—'}), {_date(b)}"),
        ("After", f"{a.image} (pseudonym {a.pseudonym or '—'}), {_date(a)}"),
        ("Landmarks", f"before: {b.prediction.provenance}; after: {a.prediction.provenance}"),
        ("Pixel spacing (row × column)", f"before: {_spacing(b)}; after: {_spacing(a)}"),
        (
            "Superimposition",
            "on S–N registered at S: sella at the origin, S→N to the right, the perpendicular positive "
            "toward menton (down); each film moved rigidly (rotation and translation; mirrored when "
            "it faces left) in millimetres, no scaling",
        ),
        ("cephspine version", a.software_version or b.software_version or "unknown"),
        ("Report date", now()),
    ]


def _signed(value: float, unit: str) -> str:
    text = format_value(value, unit)
    return text if text == "n/a" or text.startswith("-") else f"+{text}"


def _measures_table(cmp: Comparison, st: Styles) -> list[Flowable]:
    head = ["Measure", "Analysis", "Before", "After", "Change"]
    rows: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", st.cell) for h in head]]
    for m in cmp.measures:
        rows.append(
            [
                Paragraph(esc(m.measure), st.cell),
                Paragraph(esc(m.analysis), st.cell),
                Paragraph(esc(format_value(m.before, m.unit)), st.cell),
                Paragraph(esc(format_value(m.after, m.unit)), st.cell),
                Paragraph(f"<b>{esc(_signed(m.change, m.unit))}</b>", st.cell),
            ]
        )
    widths = [7.4 * cm, 2.6 * cm, 2.3 * cm, 2.3 * cm]
    widths.append(FRAME_WIDTH - sum(widths))
    note = Paragraph(
        "Every measure is computed on each film's superimposed landmarks; change = after − before. "
        "ISBI 2015: the challenge's eight measures; the others are those of the named analyses that the "
        "19 ISBI landmarks allow.",
        st.small,
    )
    return [table(rows, widths), Spacer(1, 2), note]


def _landmarks_table(cmp: Comparison, st: Styles) -> list[Flowable]:
    df = cmp.landmarks_dataframe()
    head = ["Landmark", "Along S→N (dx)", "Perpendicular (dy)", "Distance"]
    rows: list[list[Any]] = [[Paragraph(f"<b>{esc(h)}</b>", st.cell) for h in head]]
    for r in df.to_dict("records"):
        rows.append(
            [
                Paragraph(esc(f"{r['landmark']} ({r['abbreviation']})"), st.cell),
                Paragraph(esc(_signed(r["dx_mm"], "mm")), st.cell),
                Paragraph(esc(_signed(r["dy_mm"], "mm")), st.cell),
                Paragraph(esc(format_value(r["distance_mm"], "mm")), st.cell),
            ]
        )
    widths = [6.0 * cm, 3.4 * cm, 3.4 * cm]
    widths.append(FRAME_WIDTH - sum(widths))
    note = Paragraph(
        "Displacement after − before in the S–N frame: dx along S→N (positive: forward), dy perpendicular "
        "to S–N (positive: toward menton), distance = the length of (dx, dy).",
        st.small,
    )
    return [table(rows, widths), Spacer(1, 2), note]


def _story(cmp: Comparison) -> list[Flowable]:
    st = styles()
    head: list[Flowable] = [
        Paragraph("cephspine comparison: two lateral cephalograms", st.title),
        Paragraph(esc(f"{cmp.before.image} → {cmp.after.image}"), st.subtitle),
        Paragraph(esc(RESEARCH_NOTICE), st.notice),
        key_values(_metadata(cmp), st, FRAME_WIDTH),
        Spacer(1, 6),
    ]
    # the drawing takes the rest of the first page (the tables start on the second)
    room = FRAME_HEIGHT - height_of(head, FRAME_WIDTH) - _LEGEND_HEIGHT - _SLACK
    return [
        *head,
        Superimposition(cmp, FRAME_WIDTH, max(MIN_DRAWING_HEIGHT, room)),
        Paragraph("Measures", st.heading),
        *_measures_table(cmp, st),
        Paragraph("Landmark displacements (S–N frame, mm)", st.heading),
        *_landmarks_table(cmp, st),
    ]


def write_compare_report(comparison: Comparison, path: str | os.PathLike[str]) -> Path:
    """Write the PDF report of a comparison of two cephalograms.

    The report holds both tracings (landmarks and the lines that define the measures)
    superimposed on S–N registered at S, the first film in blue (round dots, solid lines),
    the second in red (square dots, dashed lines), with a legend naming them and a 10 mm
    scale bar; the provenance of both films (file, pseudonym, analysis date, where the
    landmarks came from, pixel spacing); the table of every measure before, after and its
    change; and the displacement of every landmark. Every page carries the research-use
    notice. It takes two A4 pages: the tracings, then the tables.

    Args:
        comparison: the result of :func:`~cephspine.compare`.
        path: the PDF file to write, atomically (an existing file is replaced only when
            the new report is complete).

    Returns:
        The path written.

    Raises:
        InvalidArgumentError: ``comparison`` is not a :class:`~cephspine.comparison.Comparison`.
        OutputError: the PDF cannot be written (the message names ``path`` and the cause).
    """
    from cephspine.comparison import Comparison
    from cephspine.errors import InvalidArgumentError

    if not isinstance(comparison, Comparison):
        raise InvalidArgumentError(
            f"write_compare_report() takes a Comparison (cephspine.compare), not a {type(comparison).__name__}"
        )
    check_target(path)
    story = _story(comparison)
    name = f"{comparison.before.image} vs {comparison.after.image}"
    footer = f"cephspine {comparison.after.software_version or ''} · {name}".replace("  ", " ")

    def render(fh: BinaryIO) -> None:
        build_pdf(fh, story, title=f"cephspine comparison: {name}", footer=footer)

    return write_atomic(path, render)


__all__ = ["AFTER_COLOUR", "BEFORE_COLOUR", "MIN_DRAWING_HEIGHT", "Superimposition", "write_compare_report"]
