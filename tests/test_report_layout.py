"""Layout of the PDF reports: labels that overlap nothing, one page, the spine page, Cobb
curves that stay visible, cohort histograms and where the error table goes."""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader
from reportlab.graphics.shapes import Line, Rect
from reportlab.pdfgen.canvas import Canvas

import cephspine
from cephspine.analysis import Analysis, _clinical
from cephspine.anatomy import CEPH_ABBREVIATIONS, SPINE_LANDMARKS
from cephspine.prediction import Prediction
from cephspine.reports import cohort, single, spine, write_cohort_report, write_report
from cephspine.reports._image import AnnotatedImage, display_png
from cephspine.reports._labels import Box, LabelPlacer, text_box
from cephspine.reports._pdf import FRAME_HEIGHT, FRAME_WIDTH, styles
from cephspine.reports.ceph import CEPH_LINES
from tests.test_report import TRUTH, ceph_analysis, error_row, ladder, spine_analysis

LABEL_NAMES = set(CEPH_ABBREVIATIONS) | {seg.label for seg in CEPH_LINES}


def label_boxes(pdf: Path, page: int = 0) -> list[tuple[str, Box]]:
    """The image labels drawn on a page of a report (bold text below 6.5 pt), with their boxes."""
    found: list[tuple[str, Box]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: dict | None, size: float) -> None:
        name = (font or {}).get("/BaseFont")
        if text.strip() and name == "/Helvetica-Bold" and size <= 6.5:
            x, y = cm[4] + tm[4], cm[5] + tm[5]
            found.append((text.strip(), text_box(x, y, text.strip(), size)))

    PdfReader(pdf).pages[page].extract_text(visitor_text=visit)
    return found


def assert_disjoint(boxes: list[tuple[str, Box]]) -> None:
    for (a, p), (b, q) in itertools.combinations(boxes, 2):
        assert not p.intersects(q), f"labels {a!r} and {b!r} overlap: {p} {q}"


def n_pages(pdf: Path) -> int:
    return len(PdfReader(pdf).pages)


def drawn(a: Analysis, image: object) -> AnnotatedImage:
    """The annotated image of ``a`` as laid out in its report, drawn on a scratch canvas."""
    rg = image if isinstance(image, cephspine.Radiograph) else cephspine.Radiograph(np.asarray(image))
    story = single._layout(a, display_png(rg), styles())
    img = next(f._cellvalues[0][0] for f in story if hasattr(f, "_cellvalues"))
    assert isinstance(img, AnnotatedImage)
    canvas = Canvas(io.BytesIO())
    canvas.drawImage = lambda *args, **kwargs: None  # the pixels do not matter here; encoding them is slow
    img.canv = canvas
    img.draw()
    return img


def check_placement(placer: LabelPlacer, expected: int, *, clean_leaders: bool = True) -> None:
    """Every label inside the image and clear of every other label and every dot; with
    ``clean_leaders``, no leader line crosses a label either."""
    labels = placer.labels
    assert len(labels) == expected
    assert_disjoint([(lab.text, lab.box) for lab in labels])
    for lab in labels:
        assert placer.bounds.contains(lab.box), lab.text
        for dot in placer.dots:
            assert not lab.box.intersects(dot), (lab.text, dot)
        if lab.leader is not None:  # a leader joins the label to its own point
            assert lab.box.grown(1e-6).contains_point(*lab.leader[1])
            assert math.dist(lab.leader[0], lab.anchor) < 3.0
        for other in labels:
            if clean_leaders and other is not lab and other.leader is not None:
                assert not lab.box.crosses(*other.leader), (lab.text, other.text)


@pytest.fixture(scope="module")
def ceph_image() -> cephspine.Radiograph:
    return cephspine.load_image(cephspine.example_path("ceph"), spacing=0.1)


def crowded_ceph(scale: float) -> Analysis:
    """The example's landmarks squeezed ``scale`` times around the incisors."""
    truth = np.loadtxt(TRUTH, delimiter=",", skiprows=2)
    centre = truth[CEPH_ABBREVIATIONS.index("UIT")]
    return ceph_analysis(centre + (truth - centre) * scale)


# --------------------------------------------------------------------------- ceph labels


def test_ceph_labels_overlap_nothing_in_the_pdf(tmp_path: Path, ceph_image: cephspine.Radiograph) -> None:
    out = write_report(ceph_analysis(), tmp_path / "r.pdf", image=ceph_image)
    boxes = label_boxes(out)
    assert sorted(t for t, _ in boxes) == sorted(LABEL_NAMES)  # every landmark and line, once
    assert_disjoint(boxes)


@pytest.mark.parametrize("scale", [1.0, 0.25, 0.06, 0.0], ids=["example", "crowded", "very-crowded", "one-spot"])
def test_ceph_labels_clear_of_labels_dots_and_leaders(scale: float, ceph_image: cephspine.Radiograph) -> None:
    img = drawn(crowded_ceph(scale), ceph_image)
    assert img.placer is not None
    # Squeezed into a few points, leaders may have to cross labels to get out; labels never overlap.
    check_placement(img.placer, len(LABEL_NAMES), clean_leaders=scale == 1.0)
    by_text = {lab.text: lab for lab in img.placer.labels}
    dots = img.placer.dots
    for name in CEPH_ABBREVIATIONS:
        lab = by_text[name]
        if lab.leader is None and scale >= 0.25:  # beside its dot: nearer to it than to any other dot
            own = math.dist(lab.box.nearest(*lab.anchor), lab.anchor)
            for dot in dots:
                c = ((dot.x0 + dot.x1) / 2, (dot.y0 + dot.y1) / 2)
                if math.dist(c, lab.anchor) > 1e-6:
                    assert math.dist(lab.box.nearest(*c), c) > own, (name, c)


def test_crowded_ceph_report_pdf_has_no_overlapping_labels(tmp_path: Path, ceph_image: cephspine.Radiograph) -> None:
    out = write_report(crowded_ceph(0.06), tmp_path / "crowded.pdf", image=ceph_image)
    boxes = label_boxes(out)
    assert {t for t, _ in boxes} == LABEL_NAMES
    assert_disjoint(boxes)


def test_label_placer_on_a_crowded_synthetic_layout() -> None:
    rng = np.random.default_rng(3)
    placer = LabelPlacer(Box(0, 0, 320, 300))
    points = [(150 + float(dx), 140 + float(dy)) for dx, dy in rng.uniform(-15, 15, (40, 2))]
    for x, y in points:
        placer.add_dot(x, y, 2.4)
    for i in range(0, 10, 2):  # a few lines through the cluster
        placer.add_line(points[i], points[i + 1])
        placer.place_on_segment(f"L{i}", points[i], points[i + 1], size=5.0, colour="red")
    for k, (x, y) in enumerate(points):
        placer.place_at_point(f"P{k}", x, y, size=5.5, colour="white", clearance=2.6)
    check_placement(placer, 45, clean_leaders=False)
    assert sum(lab.leader is not None for lab in placer.labels) > 10  # crowded: leaders were needed


# --------------------------------------------------------------------------- one page


def test_ceph_report_is_one_page_then_the_analyses_page(tmp_path: Path, ceph_image: cephspine.Radiograph) -> None:
    """Everything of the one-page report stays on the first page; the named analyses take
    a page of their own."""
    a = ceph_analysis()
    with_ids = dataclasses.replace(a, identifiers={"PatientName": "DOE^JANE", "PatientID": "PID-0042"})
    for analysis, name in ((a, "r.pdf"), (with_ids, "ids.pdf")):
        out = write_report(analysis, tmp_path / name, image=ceph_image)
        assert n_pages(out) == 2
        first, second = (" ".join(p.extract_text().split()) for p in PdfReader(out).pages)
        assert "Warnings" in first and "Cephalometric analyses" not in first
        assert second.split("page 2 ")[-1].startswith("Cephalometric analyses")


def test_many_warnings_move_on_to_a_second_page_without_loss(tmp_path: Path, ceph_image: cephspine.Radiograph) -> None:
    a = ceph_analysis()
    warnings = tuple(f"warning number {i}: " + "a long explanation " * 8 for i in range(40))
    out = write_report(dataclasses.replace(a, warnings=warnings), tmp_path / "r.pdf", image=ceph_image)
    assert n_pages(out) >= 2
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(out).pages)
    assert all(f"warning number {i}:" in text for i in range(40))


def spine_of(shape: tuple[int, int]) -> tuple[Analysis, np.ndarray]:
    """An S-shaped spine (the test ladder) scaled into an image of ``shape``."""
    xy = ladder()
    xy = (xy - [300, 70]) * [shape[1] / 600, shape[0] / 1100] + [shape[1] / 2, shape[0] * 0.04]
    conf = np.full(68, 0.95)
    pred = Prediction(SPINE_LANDMARKS, xy, conf, shape, None, "spine", "4.5.6", "tall.png")
    m, c, cobb, msgs = _clinical("spine", pred)
    a = Analysis("spine", "tall.png", "0123456789abcdef", pred, m, c, cobb, None, tuple(msgs), "2026-02-03", "0.1.0")
    return a, np.random.default_rng(1).normal(100, 20, shape).astype(np.float32)


def test_spine_report_puts_the_tall_image_beside_the_table(tmp_path: Path) -> None:
    a, pixels = spine_of((2400, 800))
    img = drawn(a, pixels)
    assert img.draw_h >= 0.8 * FRAME_HEIGHT  # the image takes the page's height
    out = write_report(a, tmp_path / "spine.pdf", image=pixels)
    assert n_pages(out) == 1
    positions: dict[str, tuple[float, float]] = {}

    def visit(text: str, cm: list[float], tm: list[float], font: dict | None, size: float) -> None:
        positions.setdefault(text.strip(), (cm[4] + tm[4], cm[5] + tm[5]))

    PdfReader(out).pages[0].extract_text(visitor_text=visit)
    image_right = min(x for t, (x, _) in positions.items() if t in {"T1", "T2", "T3"}) + img.draw_w  # generous
    for heading in ("Cobb angles", "Source file", "Warnings"):
        x, y = positions[heading]
        assert x > image_right - img.draw_w / 2 and x > FRAME_WIDTH * 0.3, heading  # in the column beside it
    assert positions["Cobb angles"][1] > positions["confidence 0.7–1"][1]  # above the image's bottom


# --------------------------------------------------------------------------- spine curves


def test_curves_sharing_end_vertebrae_stay_visible(tmp_path: Path) -> None:
    a = spine_analysis()
    assert a.cobb is not None and a.cobb.method == "reference"
    ends = [(c.upper_vertebra, c.lower_vertebra) for c in a.cobb.curves]
    shared = {v for pair in ends for v in pair if sum(v in p for p in ends) > 1}
    assert shared, "the fixture must have curves that share an end vertebra"
    img = drawn(a, np.zeros((1200, 600), np.float32))
    to_pdf = cephspine.reports._image.Mapping(scale=img.draw_w / 600, height=img.draw_h, bottom=14.0)
    lines = spine.drawn_lines(spine.curve_lines(a), to_pdf)
    assert sorted(name for name, _ in lines) == ["mt", "mt", "pt", "pt", "tl", "tl"]
    for (n1, s1), (n2, s2) in itertools.combinations(lines, 2):
        if n1 != n2:  # no curve's line lies on another's
            assert max(np.hypot(*(s1[0] - s2[0])), np.hypot(*(s1[1] - s2[1]))) >= spine.SHARED_LINE_OFFSET * 0.99
    styles_ = {(s.colour, s.dash) for s in spine.CURVE_STYLES.values()}
    assert len(styles_) == 3 and len({s.dash for s in spine.CURVE_STYLES.values()}) == 3
    out = write_report(a, tmp_path / "spine.pdf", image=np.zeros((1200, 600), np.float32))
    boxes = label_boxes(out)
    texts = [t for t, _ in boxes]
    for c in a.cobb.curves:  # each curve labelled with its angle and end vertebrae
        assert f"{c.number}: {c.angle_deg:.1f}° {c.upper_name}–{c.lower_name}" in texts
    assert_disjoint(boxes)


# --------------------------------------------------------------------------- cohort


def nice(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))


@pytest.mark.parametrize(
    ("values", "band"),
    [
        ([0.544, 0.562, 0.581, 0.599, 0.636], (0.65, 0.75)),  # FHI below the normal range
        ([35.7, 37.3, 40.6, 42.3, 43.9], (26.8, 31.4)),  # FMA above it
        ([-10.1, -5.6, -2.2], (3.2, 5.7)),  # ANB
        ([76.64, 77.61], None),
        ([5.0], None),
    ],
)
def test_histogram_axis_spans_data_and_normal_range_with_round_ticks(
    values: list[float], band: tuple[float, float] | None
) -> None:
    v = np.array(values)
    ax = cohort.histogram_axis(v, band)
    assert ax.lo <= min(values) and ax.hi >= max(values)
    assert ax.edges[0] <= min(values) and ax.edges[-1] >= max(values)
    if band is not None:
        assert ax.lo <= band[0] and ax.hi >= band[1]
    assert 2 <= len(ax.ticks) <= 6 and ax.ticks[0] == ax.lo and math.isclose(ax.ticks[-1], ax.hi)
    step = ax.ticks[1] - ax.ticks[0]
    assert nice(step)
    for t, label in zip(ax.ticks, ax.labels()):
        assert math.isclose(t / step, round(t / step), abs_tol=1e-6)
        assert math.isclose(float(label), t, abs_tol=1e-9) and len(label.split(".")[-1]) <= 3


def test_histogram_shades_the_whole_normal_range() -> None:
    v = np.array([0.544, 0.562, 0.581, 0.599, 0.636])
    d = cohort.histogram(v, "FHI", band=(0.65, 0.75))
    ax = cohort.histogram_axis(v, (0.65, 0.75))
    band = [s for s in d.contents if isinstance(s, Rect) and s.fillColor == cohort.BAND_COLOUR]
    axis = next(s for s in d.contents if isinstance(s, Line) and s.y1 == s.y2 and s.x2 - s.x1 > 50)
    assert len(band) == 1
    width = axis.x2 - axis.x1
    assert math.isclose(band[0].width / width, 0.1 / (ax.hi - ax.lo), rel_tol=1e-6)
    assert band[0].x >= axis.x1 and band[0].x + band[0].width <= axis.x2 + 1e-6


def ceph_cohort(n_errors: int) -> pd.DataFrame:
    truth = np.loadtxt(TRUTH, delimiter=",", skiprows=2)
    rng = np.random.default_rng(7)
    rows = [ceph_analysis(truth + rng.normal(0, 25, truth.shape), image=f"img{i}.jpg").to_row() for i in range(6)]
    errors = [
        {**error_row("ceph"), "image": f"bad{i}.jpg", "error": f"bad{i}.jpg: unreadable"} for i in range(n_errors)
    ]
    return pd.DataFrame([*rows, *errors])


def test_cohort_report_text_ticks_and_spacing(tmp_path: Path) -> None:
    table = ceph_cohort(1)
    table.loc[5, "spacing_source"] = ""
    out = write_cohort_report(table, tmp_path / "c.pdf", kind="ceph")
    assert n_pages(out) == 1
    text = " ".join(PdfReader(out).pages[0].extract_text().split())
    assert "Pixel spacing given by the user for 5 images; unknown for 1 image" in text
    assert "user: " not in text


@pytest.mark.parametrize("n_errors", [1, 45])
def test_error_table_does_not_sit_alone_on_a_page(tmp_path: Path, n_errors: int) -> None:
    out = write_cohort_report(ceph_cohort(n_errors), tmp_path / "c.pdf", kind="ceph")
    pages = [" ".join(p.extract_text().split()) for p in PdfReader(out).pages]
    footer = "cephspine cohort report (ceph) · " + cephspine.reports.RESEARCH_NOTICE
    where = next(i for i, t in enumerate(pages) if f"Errors ({n_errors})" in t)
    before = pages[where].replace(footer, "").split(f"Errors ({n_errors})")[0]
    assert "Each cell: the classification" in before  # the section before it is on the same page
    assert all(f"bad{i}.jpg: unreadable" in " ".join(pages) for i in range(n_errors))


def test_spine_report_with_a_few_warnings_stays_on_one_page(tmp_path: Path) -> None:
    a, pixels = spine_of((2125, 755))  # the shape of an AASCE film whose report took two pages
    conf = a.prediction.confidence.copy()
    conf[[7, 9, 10, 11, 12, 13, 16, 51, 52]] = 0.2
    warnings = (
        "tall.png: model spine 0.6.0 is experimental: below its targets on 91 held-out AASCE training images: "
        + "corners SDR 2/3/4/6 mm 34/53/63/74 % (targets 45/62/77/90 %), MRE 8.1 mm; check every prediction " * 5,
        "tall.png: implausible vertebra shape or order for T3",
        "tall.png: low confidence for T1_BR, T2_BL, T3_TL, T3_TR, T3_BL, T3_BR, T4_TL, L1_BL, L2_TL",
    )
    a = dataclasses.replace(a, prediction=dataclasses.replace(a.prediction, confidence=conf), warnings=warnings)
    out = write_report(a, tmp_path / "spine.pdf", image=pixels)
    assert n_pages(out) == 1
    text = " ".join(PdfReader(out).pages[0].extract_text().split())
    assert all(" ".join(w.split())[:60] in text for w in warnings)


def test_overlapping_vertebrae_are_named_on_both_sides() -> None:
    xy = ladder()
    xy[8:12, 1] -= 45  # T3 overlaps T2
    pred = Prediction(SPINE_LANDMARKS, xy, np.full(68, 0.95), (1200, 600), None, "spine", "4.5.6", "s.png")
    m, c, cobb, msgs = _clinical("spine", pred)
    a = Analysis("spine", "s.png", "0123456789abcdef", pred, m, c, cobb, None, tuple(msgs), "2026-02-03", "0.1.0")
    img = drawn(a, np.zeros((1200, 600), np.float32))
    assert img.placer is not None
    names = {lab.text: lab for lab in img.placer.labels if lab.text in ("T2", "T3", "T4")}
    assert len(names) == 3 and all(lab.leader is None for lab in names.values())
    assert names["T3"].anchor[0] > names["T2"].anchor[0] + 20  # T3 named at its right side, T2 at its left
    assert names["T3"].box.x0 > names["T3"].anchor[0] > names["T2"].box.x1
