"""The spine parts of a one-image report: the vertebra outlines, the end-vertebra lines of
each Cobb curve and the labels on the image, their legend, and the Cobb angle table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from reportlab.graphics.shapes import Drawing, Line
from reportlab.lib import colors
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from cephspine.analysis import Analysis
from cephspine.anatomy import VERTEBRAE
from cephspine.geometry.cobb import COBB_CURVES
from cephspine.geometry.norms import COBB_SEVERITY_BANDS
from cephspine.reports._image import Mapping
from cephspine.reports._labels import LabelPlacer
from cephspine.reports._pdf import FLAG_BG, Styles, esc, layout_style, pdf_safe, table

CURVE_LABEL_SIZE = 6.0
"""Font size of the curve labels on the image, points."""

VERTEBRA_LABEL_SIZE = 4.8
"""Font size of the vertebra names on the image, points."""

CURVE_LINE_WIDTH = 1.3
"""Width of the end-vertebra lines, points."""

SHARED_LINE_OFFSET = 2.0
"""Distance (points) between the parallel copies of a line that two or three curves share."""


@dataclass(frozen=True)
class CurveStyle:
    colour: str
    dash: tuple[float, ...]


# Each curve keeps its own colour and dash pattern, so that a line two curves share (the
# reference method measures both at the same vertebra axis) shows both.
CURVE_STYLES: dict[str, CurveStyle] = {
    "pt": CurveStyle("#00c8ff", ()),
    "mt": CurveStyle("#ff4dd2", (4.0, 2.0)),
    "tl": CurveStyle("#ffa64d", (1.5, 1.5)),
}

Segment = npt.NDArray[np.float64]  # (2, 2): two points, pixels or PDF points


@dataclass(frozen=True)
class CurveLines:
    """One Cobb curve on the image: its name, label text, the vertebrae and the two lines."""

    name: str
    text: str
    vertebrae: tuple[int, int]
    lines: tuple[Segment, Segment]


def curve_lines(a: Analysis) -> list[CurveLines]:
    """Per Cobb curve, the two lines (each ``(2, 2)`` pixels) of its end vertebrae."""
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
        text = f"{c.number}: {c.angle_deg:.1f}° {c.upper_name}–{c.lower_name}"
        out.append(CurveLines(c.name, text, (c.upper_vertebra, c.lower_vertebra), (lines[0], lines[1])))
    return out


def drawn_lines(curves: Sequence[CurveLines], to_pdf: Mapping) -> list[tuple[str, Segment]]:
    """Every end-vertebra line in PDF points, ``(curve name, segment)``. A line that several
    curves share is drawn as parallel copies :data:`SHARED_LINE_OFFSET` apart, one per curve."""
    items: list[tuple[str, Segment]] = []
    for c in curves:
        for seg in c.lines:
            if np.all(np.isfinite(seg)):
                items.append((c.name, np.array([to_pdf(*seg[0]), to_pdf(*seg[1])], dtype=np.float64)))
    groups: list[list[int]] = []
    for i, (_, seg) in enumerate(items):
        for g in groups:
            if np.allclose(items[g[0]][1], seg, atol=0.5):
                g.append(i)
                break
        else:
            groups.append([i])
    out = list(items)
    for g in groups:
        if len(g) < 2:
            continue
        seg = items[g[0]][1]
        d = seg[1] - seg[0]
        length = float(np.hypot(*d))
        normal = np.array([-d[1], d[0]]) / length if length > 0 else np.array([0.0, 1.0])
        for j, i in enumerate(g):
            shift = (j - (len(g) - 1) / 2) * SHARED_LINE_OFFSET * normal
            out[i] = (items[i][0], items[i][1] + shift)
    return out


class SpineOverlay:
    """Vertebra outlines, Cobb curve lines, vertebra names and curve labels on a spine image."""

    def draw_lines(self, canvas: Any, a: Analysis, to_pdf: Mapping) -> None:
        try:
            v = a.prediction.by_vertebra()
        except ValueError:
            v = None
        canvas.saveState()
        if v is not None:  # vertebra outlines
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
        canvas.saveState()
        canvas.setLineWidth(CURVE_LINE_WIDTH)
        for name, seg in drawn_lines(curve_lines(a), to_pdf):
            style = CURVE_STYLES.get(name, CurveStyle("#ffffff", ()))
            canvas.setStrokeColor(colors.HexColor(style.colour))
            canvas.setDash(list(style.dash) if style.dash else [], 0)
            canvas.line(*seg[0], *seg[1])
        canvas.restoreState()

    def place_labels(self, a: Analysis, to_pdf: Mapping, placer: LabelPlacer) -> None:
        """Curve labels first (beside the right end of the curve's upper line), then the
        vertebra names (left of each vertebra)."""
        curves = curve_lines(a)
        lines = drawn_lines(curves, to_pdf)
        for _, seg in lines:
            placer.add_line((float(seg[0, 0]), float(seg[0, 1])), (float(seg[1, 0]), float(seg[1, 1])))
        for c in curves:
            mine = [seg for name, seg in lines if name == c.name]
            if not mine:
                continue
            seg = mine[0]
            end = seg[int(np.argmax(seg[:, 0]))]
            style = CURVE_STYLES.get(c.name, CurveStyle("#ffffff", ()))
            placer.place_at_point(
                pdf_safe(c.text),
                float(end[0]),
                float(end[1]),
                size=CURVE_LABEL_SIZE,
                colour=colors.HexColor(style.colour),
                clearance=1.0,
                prefer=0.0,
                is_dot=False,
            )
        try:
            v = a.prediction.by_vertebra()
        except ValueError:
            return
        line_h = 1.3 * VERTEBRA_LABEL_SIZE
        last_left: float | None = None  # PDF y of the last name placed on the left
        for k, q in enumerate(v):
            if np.all(np.isfinite(q)):
                x, y = to_pdf(*((q[0] + q[2]) / 2))
                prefer = math.pi
                if last_left is not None and abs(y - last_left) < line_h:
                    # vertebrae this close (one overlapping the next): name it on its right side
                    x, y = to_pdf(*((q[1] + q[3]) / 2))
                    prefer = 0.0
                else:
                    last_left = y
                placer.place_at_point(
                    VERTEBRAE[k],
                    x,
                    y,
                    size=VERTEBRA_LABEL_SIZE,
                    colour=colors.white,
                    clearance=2.0,
                    prefer=prefer,
                    is_dot=False,
                )


def lines_legend(a: Analysis, st: Styles, width: float) -> list[Flowable]:
    """What the lines are, and a sample of each curve's line."""
    what = (
        "the superior endplate of the upper and the inferior endplate of the lower end vertebra"
        if a.cobb is not None and a.cobb.method == "endplates"
        else "the axes (left-side to right-side midpoint) of the two end vertebrae"
    )
    rows = []
    curves = {c.name: c for c in a.cobb.curves} if a.cobb is not None else {}
    for name, style in CURVE_STYLES.items():
        d = Drawing(26, 8)
        d.add(
            Line(
                1,
                4,
                25,
                4,
                strokeColor=colors.HexColor(style.colour),
                strokeWidth=2.0,
                strokeDashArray=list(style.dash) if style.dash else None,
            )
        )
        c = curves.get(name)
        number = COBB_CURVES.index(name) + 1
        ends = f" {c.upper_name}–{c.lower_name} ({c.region})" if c is not None else ""
        rows.append([d, Paragraph(f"<b>Curve {number}</b>{esc(ends)} (dataset column {name.upper()})", st.small)])
    t = Table(rows, colWidths=[30, width - 30], hAlign="LEFT")
    t.setStyle(layout_style("MIDDLE", right=None, top=0.5, bottom=0.5))
    text = (
        f"Lines: for each Cobb curve, {what}, in the curve's colour and dash pattern; a line two curves "
        "share is drawn once for each, side by side. White outlines: the 17 vertebrae (T1–L5)."
    )
    return [Paragraph(esc(text), st.small), Spacer(1, 2), t]


def measures(a: Analysis, st: Styles, width: float) -> list[Flowable]:
    """The Cobb angle table (angle, end vertebrae, severity) ``width`` wide, and its notes."""
    if a.cobb is None:
        return [Paragraph("Cobb angles not computed; see the warnings below.", st.body)]
    head = ["Curve", "Angle", "End vertebrae (region)", "Severity"]
    rows: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", st.cell) for h in head]]
    flagged = []
    for c in a.cobb.curves:
        if c.severity != "normal" and not a.wrong_anatomy:
            flagged.append(len(rows))
        rows.append(
            [
                Paragraph(f"<b>{c.number}</b> ({esc(c.name.upper())})", st.cell),
                Paragraph(esc(f"{c.angle_deg:.1f}°"), st.cell),
                Paragraph(esc(f"{c.upper_name}–{c.lower_name} ({c.region})"), st.cell),
                Paragraph(esc("not a result" if a.wrong_anatomy else c.severity), st.cell),
            ]
        )
    t = table(rows, [width * f for f in (0.18, 0.22, 0.32, 0.28)])
    t.setStyle(TableStyle([("BACKGROUND", (0, r), (-1, r), FLAG_BG) for r in flagged]))
    bands = ", ".join(f"{b.label} {b.text}" for b in COBB_SEVERITY_BANDS)
    method = (
        "the AASCE dataset's reference algorithm (angles between vertebra axes)"
        if a.cobb.method == "reference"
        else "endplate lines"
    )
    notes = [
        f"Measured with {method}.",
        "PT, MT and TL are the dataset's names of its three angle columns, not anatomical regions: curve 1 (PT) "
        "is the largest angle between two vertebrae and curves 2 and 3 are found relative to it; the region is "
        "the part of the spine between the end vertebrae. See Cobb angles in the cephspine documentation "
        "(docs/concepts/cobb.md).",
        f"Severity bands (display only): {bands}.",
    ]
    if a.cobb.s_curve is not None:
        notes.append(f"S curve: {'yes' if a.cobb.s_curve else 'no'}.")
    if a.cobb.invalid_vertebrae:
        notes.append(f"Vertebrae with corners out of order: {', '.join(a.cobb.invalid_vertebrae)}.")
    return [t, Spacer(1, 2), Paragraph(esc(" ".join(notes)), st.small)]
