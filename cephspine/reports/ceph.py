"""The cephalogram parts of a one-image report: the measure lines and landmark labels on
the image, their legend, and the measures table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from reportlab.lib import colors
from reportlab.lib.units import cm
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from cephspine.analysis import Analysis
from cephspine.anatomy import CEPH_ABBREVIATIONS, CEPH_LANDMARKS
from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS, clinical_note
from cephspine.reports._image import Mapping, dot_radius
from cephspine.reports._labels import LabelPlacer
from cephspine.reports._pdf import FLAG_BG, FRAME_WIDTH, Styles, esc, format_value, layout_style, pdf_safe, table

LANDMARK_LABEL_SIZE = 5.5
"""Font size of the landmark abbreviations on the image, points."""

LINE_LABEL_SIZE = 5.0
"""Font size of the line names on the image, points."""


@dataclass(frozen=True)
class Segment:
    label: str
    a: str
    b: str
    colour: str
    description: str


# The lines that define the ceph measures (domain.md §2), by landmark abbreviation.
CEPH_LINES: tuple[Segment, ...] = (
    Segment("S–N", "S", "N", "#00c8ff", "sella–nasion (SNA, SNB, ANB, FMA)"),
    Segment("N–A", "N", "A", "#ffe14d", "nasion–A point (SNA, ANB)"),
    Segment("N–B", "N", "B", "#ffa64d", "nasion–B point (SNB, ANB)"),
    Segment("FH", "Po", "Or", "#ff4dd2", "Frankfort horizontal, porion–orbitale (ODI, APDI)"),
    Segment("PP", "PNS", "ANS", "#b07cff", "palatal plane, PNS–ANS (ODI, APDI)"),
    Segment("A–B", "A", "B", "#4dffb8", "A point–B point (ODI, APDI)"),
    Segment("MP", "Go", "Me", "#7cff4d", "mandibular plane, gonion–menton (ODI)"),
    Segment("Go–Gn", "Go", "Gn", "#4d94ff", "gonion–gnathion (the ISBI FMA, from S–N)"),
    Segment("N–Pog", "N", "Pog", "#ff7070", "facial plane, nasion–pogonion (APDI)"),
    Segment("S–Go", "S", "Go", "#c8c8c8", "posterior face height (FHI)"),
    Segment("N–Me", "N", "Me", "#e8e8a0", "anterior face height (FHI)"),
    Segment("MW", "UIT", "LIT", "#ff3030", "upper–lower incisor tips (MW)"),
)
"""Line label, end points (abbreviations), colour and description of each measure line drawn on a cephalogram."""


def abbreviation(name: str) -> str:
    return CEPH_ABBREVIATIONS[CEPH_LANDMARKS.index(name)] if name in CEPH_LANDMARKS else name


def _points(a: Analysis) -> dict[str, npt.NDArray[np.float64]]:
    """Abbreviation → pixel position of the finite landmarks of a ceph prediction."""
    p = a.prediction
    return {abbreviation(n): xy for n, xy in zip(p.names, p.xy_px) if np.all(np.isfinite(xy))}


class CephOverlay:
    """The measure lines, and the labels of the landmarks and lines, on a cephalogram."""

    def draw_lines(self, canvas: Any, a: Analysis, to_pdf: Mapping) -> None:
        pts = _points(a)
        canvas.saveState()
        canvas.setLineWidth(0.9)
        for seg in CEPH_LINES:
            if seg.a in pts and seg.b in pts:
                canvas.setStrokeColor(colors.HexColor(seg.colour))
                canvas.line(*to_pdf(*pts[seg.a]), *to_pdf(*pts[seg.b]))
        canvas.restoreState()

    def place_labels(self, a: Analysis, to_pdf: Mapping, placer: LabelPlacer) -> None:
        """Landmark labels first, most crowded first, each pushed away from its neighbours;
        then the line labels, shortest line first."""
        pts = {k: to_pdf(*xy) for k, xy in _points(a).items()}
        segments = [s for s in CEPH_LINES if s.a in pts and s.b in pts]
        for seg in segments:
            placer.add_line(pts[seg.a], pts[seg.b])
        clearance = dot_radius(a) + 0.4
        crowd: dict[str, tuple[int, float | None]] = {}
        for name, (x, y) in pts.items():
            near = [(u, v) for other, (u, v) in pts.items() if other != name and math.hypot(u - x, v - y) < 40.0]
            away = None
            if near:
                cx, cy = sum(u for u, _ in near) / len(near), sum(v for _, v in near) / len(near)
                if math.hypot(x - cx, y - cy) > 1e-6:
                    away = math.atan2(y - cy, x - cx)
            crowd[name] = (len(near), away)
        for name in sorted(pts, key=lambda n: -crowd[n][0]):
            x, y = pts[name]
            placer.place_at_point(
                pdf_safe(name),
                x,
                y,
                size=LANDMARK_LABEL_SIZE,
                colour=colors.white,
                clearance=clearance,
                prefer=crowd[name][1],
            )
        segments.sort(key=lambda s: math.dist(pts[s.a], pts[s.b]))
        for seg in segments:
            placer.place_on_segment(
                pdf_safe(seg.label), pts[seg.a], pts[seg.b], size=LINE_LABEL_SIZE, colour=colors.HexColor(seg.colour)
            )


def lines_legend(st: Styles) -> list[Flowable]:
    """One line per measure line: its colour, name and what it is."""
    out: list[Flowable] = [Paragraph("<b>Lines on the image</b>", st.small)]
    out += [
        Paragraph(
            f'<font color="{seg.colour}" size="10"><b>—</b></font> <b>{esc(seg.label)}</b> {esc(seg.description)}',
            st.small,
        )
        for seg in CEPH_LINES
    ]
    return out


def measures(a: Analysis, st: Styles) -> list[Flowable]:
    """The measures table (value, normal range, type, classification, flag) and its note.

    Where the ISBI rule differs from clinical usage at a value (ANB, MW, FMA, FHI;
    :func:`~cephspine.geometry.norms.clinical_note`) the description says so in italics.
    An analysis of the wrong anatomy (:attr:`~cephspine.Analysis.wrong_anatomy`) shows the
    values without types, classifications or flags."""
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
        elif a.wrong_anatomy:
            value, kind, label, flag = format_value(e.value, e.unit), "—", "not a result (wrong anatomy)", ""
        else:
            value, kind, label = format_value(e.value, e.unit), str(e.type), e.label
            flag = ""
            if e.value > e.normal_high:
                flag = "above normal"
            elif e.value < e.normal_low:
                flag = "below normal"
            if flag:
                flagged.append(len(rows))
        note = clinical_note(m, e.value) if e is not None and not a.wrong_anatomy else ""
        rows.append(
            [
                Paragraph(f"<b>{esc(m)}</b>", st.cell),
                [Paragraph(esc(norm.name), st.cell), *([Paragraph(f"<i>{esc(note)}</i>", st.small)] if note else [])],
                Paragraph(esc(value), st.cell),
                Paragraph(esc(norm.normal_range), st.cell),
                Paragraph(esc(kind), st.cell),
                Paragraph(esc(label), st.cell),
                Paragraph(f"<b>{esc(flag)}</b>" if flag else "", st.cell),
            ]
        )
    widths = [1.55 * cm, 5.3 * cm, 1.8 * cm, 2.1 * cm, 0.9 * cm, 3.4 * cm]
    widths.append(FRAME_WIDTH - sum(widths))
    t = table(rows, widths)
    t.setStyle(TableStyle([("BACKGROUND", (0, r), (-1, r), FLAG_BG) for r in flagged]))
    note = Paragraph(
        "Definitions and type numbers follow the ISBI 2015 challenge (type 1 = normal range); in italics, "
        "where its rule differs from clinical usage. Rows outside the normal range are shaded and flagged.",
        st.small,
    )
    return [t, Spacer(1, 2), note]


ANALYSES_NOTE = (
    "The named analyses as far as the 19 ISBI 2015 landmarks allow them (in millimetres and degrees); a "
    "measure several analyses use is listed under each. Flag: the value against the norm's range, or its "
    "mean ± 1 SD when it gives no range; rows outside are shaded. Norm —: none shipped (cephspine ships "
    "only norms it checked against a named source; pass your own with norms=). Flag —: the norm has no "
    "range. Norms depend on age, sex and population: see their sources below."
)

_PAIRS: tuple[tuple[str, str], ...] = (
    ("Steiner", "Downs"),
    ("Tweed", "Björk–Jarabak"),
    ("McNamara", "Holdaway"),
    ("Burstone–Legan", "Ricketts"),
)
"""The analyses side by side on the analyses page, row by row."""

_GUTTER = 0.35 * cm


def _analysis_block(
    shown: str, rows: list[dict[str, Any]], needs: dict[str, str | None], st: Styles, width: float
) -> list[Flowable]:
    """One analysis: its heading, the table of its measures, and what it cannot have."""
    from cephspine.geometry.analyses import format_measure, format_norm

    mine = [r for r in rows if shown == r["analysis"] or shown in (r["also_in"] or "").split("; ")]
    ok = [r for r in mine if r["status"] == "ok"]
    out: list[Flowable] = [Paragraph(esc(shown), st.heading)]
    if ok:
        cells: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", st.cell) for h in ("Measure", "Value", "Norm", "Flag")]]
        flagged = []
        for r in ok:
            if r["flag"] in ("below", "above"):
                flagged.append(len(cells))
            flag = r["flag"] or ("—" if r["norm_source"] else "")
            cells.append(
                [
                    Paragraph(esc(r["measure"]), st.cell),
                    Paragraph(esc(format_measure(r["value"], r["unit"])), st.cell),
                    Paragraph(esc(format_norm(r)), st.cell),
                    Paragraph(f"<b>{esc(flag)}</b>" if r["flag"] in ("below", "above") else esc(flag), st.cell),
                ]
            )
        fixed = [1.55 * cm, 2.15 * cm, 1.05 * cm]
        t = table(cells, [width - sum(fixed), *fixed])
        t.setStyle(TableStyle([("BACKGROUND", (0, i), (-1, i), FLAG_BG) for i in flagged]))
        out.append(t)
    lacking = [f"{r['measure']} (needs {needs[r['key']]})" for r in mine if r["status"] == "not available"]
    undefined = [f"{r['measure']} ({r['note']})" for r in mine if r["status"] == "not computed"]
    if undefined:
        out.append(Paragraph(esc("Not computed: " + "; ".join(undefined) + "."), st.small))
    unscaled = [r["measure"] for r in mine if r["status"] == "no spacing"]
    if unscaled:
        out.append(Paragraph(esc("Needs the pixel spacing: " + "; ".join(unscaled) + "."), st.small))
    if lacking:
        out.append(Paragraph(esc("Not available from the ISBI landmarks: " + "; ".join(lacking) + "."), st.small))
    return out


def analyses(a: Analysis, st: Styles, norms: Any = None) -> list[Flowable]:
    """The named cephalometric analyses (:func:`~cephspine.geometry.ceph_analyses`), two
    side by side: per analysis a table of its measures (value, norm, flag) and the
    measures it cannot have from the ISBI landmarks; then the sources of the norms."""
    import pandas as pd

    from cephspine.geometry.analyses import ANALYSIS_MEASURES, ceph_analyses

    out: list[Flowable] = [Paragraph(f"Cephalometric analyses: {esc(a.image)}", st.heading)]
    if a.wrong_anatomy:
        return [*out, Paragraph("Not computed: the image does not look like a lateral cephalogram.", st.body)]
    if a.prediction.spacing is None:
        out.append(
            Paragraph(
                "No pixel spacing: the distances (mm) need it; the angles and ratios do not, but the model "
                "resampled the film at an assumed spacing (its training spacing: 0.1 mm per pixel for the shipped "
                "ceph model), so the landmarks, and so every angle, depend on that assumption.",
                st.body,
            )
        )
    table_ = ceph_analyses(a.prediction, norms=norms)
    rows: list[dict[str, Any]] = [
        {str(k): None if pd.isna(v) else v for k, v in r.items()} for r in table_.to_dict("records")
    ]
    needs = {m.key: m.needs for m in ANALYSIS_MEASURES}
    out.append(Paragraph(esc(ANALYSES_NOTE), st.small))
    half = (FRAME_WIDTH - _GUTTER) / 2
    grid = [[_analysis_block(name, rows, needs, st, half) for name in pair] for pair in _PAIRS]
    layout = Table(grid, colWidths=[half + _GUTTER, half], hAlign="LEFT")
    layout.setStyle(layout_style(right=None))
    out.append(layout)
    sources: dict[str, str] = {}
    for r in rows:
        if r["status"] == "ok" and r["norm_source"]:
            sources[r["norm_source"]] = r["norm_population"] or ""
    if sources:
        out.append(Paragraph("Sources of the norms", st.heading))
        out += [Paragraph(esc(f"{src}. Population: {pop}" if pop else src), st.small) for src, pop in sources.items()]
    return out
