"""The one-image report: :func:`write_report` and :func:`report`.

The page is laid out around the radiograph: the title and the research notice on top,
then the annotated image on the left with a column beside it, sized so that the report
fits on one A4 page whenever its text allows:

- ceph: the column holds the provenance table and the legend of the lines; the measures
  table, the low-confidence landmarks and the warnings follow below the image, and the
  image is made as large as the page leaves room for;
- spine: the tall narrow image takes the page's height, and the column holds everything
  else (provenance, Cobb angles, legend, low-confidence landmarks, warnings).

What does not fit in the column continues below the image (and on a further page when a
long list of warnings needs one). A ceph report then starts a new page with the named
cephalometric analyses (:func:`cephspine.reports.ceph.analyses`), so that it is two pages:
the first as before, the second the analyses' tables with norms, flags and sources.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from reportlab.lib.units import cm
from reportlab.platypus import Flowable, PageBreak, Paragraph, Spacer, Table

from cephspine.analysis import LOW_CONFIDENCE, Analysis, analyze
from cephspine.errors import ImageReadError
from cephspine.io.loader import ImageSource, SpacingLike, load_image
from cephspine.plausibility import not_a_result
from cephspine.radiograph import Radiograph
from cephspine.reports import ceph, spine
from cephspine.reports._image import LEGEND_HEIGHT, AnnotatedImage, display_png
from cephspine.reports._pdf import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    KIND_TITLES,
    RESEARCH_NOTICE,
    Styles,
    alarm_banner,
    build_pdf,
    bullets,
    check_kind,
    check_target,
    esc,
    height_of,
    keeps_with_next,
    key_values,
    layout_style,
    now,
    styles,
    write_atomic,
)

if TYPE_CHECKING:
    from cephspine.detector import Detector

_SPACING_SOURCES = {
    "PixelSpacing": "DICOM Pixel Spacing",
    "ImagerPixelSpacing": "DICOM Imager Pixel Spacing",
    "user": "the user",
    "dataset": "the dataset's convention",
}
_NO_SPACING = "unknown — measures in mm unavailable"

_GAP = 0.45 * cm  # between the image and the column beside it
_SIDE_MIN = {"ceph": 6.2 * cm, "spine": 7.2 * cm}  # the narrowest the column may be
_MIN_IMAGE_HEIGHT = 9 * cm  # below this the image keeps this height and text moves on
_SLACK = 4.0  # points kept free on the page against rounding in the layout


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
        ("Landmarks from", p.provenance) if p.supplied else ("Model", f"{p.model} version {p.model_version}"),
        ("cephspine version", a.software_version or "unknown"),
        ("Analysis date", a.created or "unknown"),
        ("Report date", now()),
        (
            "Landmarks",
            f"{len(p)}; no confidence (not detected)"
            if p.supplied
            else f"{len(p)}; mean confidence {float(np.mean(p.confidence)):.2f}, "
            f"{len(a.low_confidence)} below {LOW_CONFIDENCE:g}",
        ),
    ]
    if p.meta.get("mirrored"):
        rows.append(("Orientation", "left-facing; measured as its mirror image"))
    return rows


def _low_confidence_items(a: Analysis) -> list[str]:
    """One item per low-confidence landmark (ceph), per vertebra with such corners (spine:
    ``"T3: TL 0.15, BR 0.12"``)."""
    p = a.prediction
    out = []
    if a.kind == "spine":
        corners: dict[str, list[str]] = {}
        for name, conf in zip(p.names, p.confidence):
            if conf < LOW_CONFIDENCE:
                vertebra, _, corner = name.partition("_")
                corners.setdefault(vertebra, []).append(f"{corner} {float(conf):.2f}")
        return [f"{v}: {', '.join(c)}" for v, c in corners.items()]
    for name, conf in zip(p.names, p.confidence):
        if conf < LOW_CONFIDENCE:
            abbr = ceph.abbreviation(name)
            shown = f"{name} ({abbr})" if abbr != name else name
            out.append(f"{shown}: confidence {float(conf):.2f}")
    return out


def _findings(a: Analysis, st: Styles, width: float) -> list[Flowable]:
    """Low-confidence landmarks, warnings, and the DICOM identifiers when the analysis has them."""
    out: list[Flowable] = []
    if not a.prediction.supplied:  # a person's landmarks have no confidence
        out += [
            Paragraph(f"Low-confidence landmarks (confidence below {LOW_CONFIDENCE:g})", st.heading),
            *bullets(_low_confidence_items(a), st, f"None: every landmark has confidence {LOW_CONFIDENCE:g} or more."),
        ]
    out += [Paragraph("Warnings", st.heading), *bullets(list(a.warnings), st, "None.")]
    if a.identifiers:  # the heading keeps with the table (keepWithNext)
        out += [Paragraph("DICOM identifiers", st.heading), key_values(sorted(a.identifiers.items()), st, width)]
    return out


def _split_column(items: list[Flowable], width: float, height: float) -> tuple[list[Flowable], list[Flowable]]:
    """The leading ``items`` that fit in a column ``width`` × ``height``, and the rest. A
    heading is never left at the bottom of the column without what follows it."""
    fit: list[Flowable] = []
    used = 0.0
    for i, item in enumerate(items):
        h = height_of([item], width) + (item.getSpaceBefore() if fit else 0.0)
        if used + h > height:
            while fit and keeps_with_next(fit[-1]):
                fit.pop()
                i -= 1
            return fit, items[i:]
        fit.append(item)
        used += h
    return fit, []


def _layout(a: Analysis, png: bytes, st: Styles, norms: Any = None) -> list[Flowable]:
    head: list[Flowable] = [
        Paragraph(f"cephspine report: {esc(KIND_TITLES.get(a.kind, a.kind))}", st.title),
        Paragraph(esc(a.image), st.subtitle),
        Paragraph(esc(RESEARCH_NOTICE), st.notice),
    ]
    if a.wrong_anatomy:  # before anything that could be read as a result
        head.insert(2, alarm_banner(not_a_result(a.kind, a.image), st))
    h_px, w_px = a.prediction.image_shape
    aspect = h_px / w_px
    room = FRAME_HEIGHT - height_of(head, FRAME_WIDTH) - LEGEND_HEIGHT - _SLACK
    max_w = FRAME_WIDTH - _SIDE_MIN[a.kind] - _GAP
    below: list[Flowable] = []
    if a.kind == "ceph":
        below = [Paragraph("Cephalometric measures", st.heading), *ceph.measures(a, st)]
        below += _findings(a, st, FRAME_WIDTH)
        room -= height_of(below, FRAME_WIDTH)
    h = min(room, max_w * aspect)
    h = max(h, min(_MIN_IMAGE_HEIGHT, max_w * aspect))
    row, rest = _image_row(a, png, st, h)
    if a.kind == "spine" and rest:
        # what the column cannot hold goes below the image: shrink the image (widening the
        # column) until that fits on the page, rather than leave a second page almost empty
        low = max(min(_MIN_IMAGE_HEIGHT, h), 0.5 * h)
        for step in range(1, 21):
            h_try = h - (h - low) * step / 20
            row_try, rest_try = _image_row(a, png, st, h_try)
            if height_of([row_try, *rest_try], FRAME_WIDTH) <= room + LEGEND_HEIGHT:
                row, rest = row_try, rest_try
                break
    story = [*head, row, *rest, *below]
    if a.kind == "ceph":
        story += [PageBreak(), *ceph.analyses(a, st, norms)]
    return story


def _image_row(a: Analysis, png: bytes, st: Styles, h: float) -> tuple[Table, list[Flowable]]:
    """The annotated image ``h`` high with the column beside it, and what of the column
    does not fit beside the image (to follow below it)."""
    h_px, w_px = a.prediction.image_shape
    w = h / (h_px / w_px)
    side_w = FRAME_WIDTH - w - _GAP
    column: list[Flowable] = [key_values(_metadata(a), st, side_w, key_width=2.25 * cm), Spacer(1, 6)]
    if a.kind == "ceph":
        column += ceph.lines_legend(st)
        overlay: Any = ceph.CephOverlay()
    else:
        column += [Paragraph("Cobb angles", st.heading), *spine.measures(a, st, side_w), Spacer(1, 6)]
        column += spine.lines_legend(a, st, side_w)
        column += _findings(a, st, side_w)
        overlay = spine.SpineOverlay()
    image = AnnotatedImage(png, a, overlay, w, h)
    fit, rest = _split_column(column, side_w, h + LEGEND_HEIGHT)
    row = Table([[image, fit]], colWidths=[w + _GAP, side_w], hAlign="LEFT")
    row.setStyle(layout_style())
    return row, rest


def write_report(analysis: Analysis, path: str | os.PathLike[str], *, image: ImageSource, norms: Any = None) -> Path:
    """Write a one-image PDF report of an analysis: one A4 page (spine), two (ceph).

    The report holds the radiograph (downscaled to at most
    :data:`~cephspine.reports.MAX_IMAGE_SIDE_PX` pixels) with the landmarks coloured by
    confidence (green ≥ 0.7, amber ≥ 0.3, red below) and the lines that define the
    measures (ceph: S–N, N–A, N–B, Frankfort Po–Or, palatal plane, A–B, mandibular plane
    Go–Me, Go–Gn, N–Pog, face heights, incisor tips; spine: the end vertebrae of each Cobb
    curve, labelled PT/MT/TL with the angle and the end vertebrae), labels placed so that
    none overlaps another or a landmark; the measures table (ceph: value, normal range,
    type and label, values outside the normal range flagged; spine: angle, end vertebrae,
    severity); the low-confidence landmarks and every warning; the source file, pseudonym,
    image size, pixel spacing and its source, model and versions, dates; the research-use
    notice; and the DICOM identifiers only when ``analysis.identifiers`` is non-empty. It
    takes one page unless a long list of warnings or identifiers needs a second. A ceph
    report adds a page with the named cephalometric analyses (Steiner, Downs, Tweed,
    Björk–Jarabak, McNamara, Holdaway, Burstone–Legan, Ricketts): each measure's value,
    norm and flag, what the ISBI landmarks cannot give, and the sources of the norms.

    Args:
        analysis: the result of :func:`~cephspine.analyze`.
        path: the PDF file to write. Written atomically: an existing file is replaced
            only when the new report is complete, and a failure leaves no file behind.
        image: the radiograph the analysis was made on: a path, an ``(H, W)`` array or
            a :class:`~cephspine.Radiograph` (read with :func:`~cephspine.load_image`).
        norms: ceph: a norms table (CSV path or DataFrame) replacing the shipped norms of
            the analyses by key (:func:`~cephspine.geometry.read_norms`).

    Returns:
        The path written.

    Raises:
        ImageReadError: the image cannot be read, or its size differs from the one the
            analysis was made on.
        InvalidArgumentError: the analysis has an unknown kind, or ``norms`` is a bad
            norms table.
        InputNotFoundError: the ``norms`` file does not exist.
        OutputError: the PDF cannot be written, e.g. its folder does not exist (the
            message names ``path`` and the cause).

    Example::

        a = cephspine.analyze("scan.dcm")
        write_report(a, "scan.pdf", image="scan.dcm")
    """
    check_kind(analysis.kind)
    check_target(path)
    if norms is not None:
        from cephspine.geometry.analyses import read_norms

        norms = read_norms(norms)  # a bad table fails before the image is read
    rg = image if isinstance(image, Radiograph) else load_image(image)
    if rg.shape != tuple(analysis.prediction.image_shape):
        h, w = analysis.prediction.image_shape
        raise ImageReadError(
            rg.source if rg.source is not None else "<array>",
            f"is {rg.width} × {rg.height} px but the analysis of {analysis.image} was made on an image of "
            f"{w} × {h} px; pass the radiograph the analysis was made on",
        )
    png = display_png(rg)
    story = _layout(analysis, png, styles(), norms)
    footer = f"cephspine {analysis.software_version or ''} · {analysis.image}".replace("  ", " ")

    def render(fh: BinaryIO) -> None:
        build_pdf(fh, story, title=f"cephspine report: {analysis.image}", footer=footer)

    return write_atomic(path, render)


def report(
    image: ImageSource,
    path: str | os.PathLike[str],
    *,
    kind: str = "ceph",
    detector: Detector | None = None,
    spacing: SpacingLike = None,
    include_identifiers: bool = False,
    device: str = "auto",
    norms: Any = None,
    landmarks: Any = None,
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
        norms: ceph: a norms table replacing the shipped norms of the analyses by key.
        landmarks: landmarks a person supplied, used instead of detecting them (see
            :func:`~cephspine.analyze`).

    Returns:
        The :class:`~cephspine.analysis.Analysis` the report shows.

    Raises:
        ImageReadError, UnsupportedImageError, SpacingError: the image cannot be used.
        InvalidArgumentError: ``kind`` is not ``"ceph"`` or ``"spine"``.
        UnknownModelError: no shipped model for ``kind``.
        OutputError: the PDF cannot be written (checked before the image is analysed).
    """
    check_kind(kind)
    check_target(path)
    if norms is not None:
        from cephspine.geometry.analyses import read_norms

        norms = read_norms(norms)  # checked before the image is analysed
    rg = load_image(image, spacing=spacing)
    analysis = analyze(
        rg, kind, detector=detector, include_identifiers=include_identifiers, device=device, landmarks=landmarks
    )
    write_report(analysis, path, image=rg, norms=norms)
    return analysis
