"""The annotated radiograph of a one-image report: the downscaled image, the kind's lines,
the landmark dots coloured by confidence, the placed labels and a confidence legend."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from reportlab.lib import colors
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Flowable

from cephspine.analysis import LOW_CONFIDENCE, Analysis
from cephspine.radiograph import Radiograph
from cephspine.reports._labels import Box, LabelPlacer, draw_labels, draw_leaders
from cephspine.reports._pdf import AMBER, GREEN, GRID, RED

MAX_IMAGE_SIDE_PX = 1400
"""The radiograph is downscaled to at most this many pixels on its long side in a report."""

HIGH_CONFIDENCE = 0.7
"""Landmarks at or above this confidence are drawn green; between :data:`~cephspine.analysis.LOW_CONFIDENCE`
and this amber; below it red."""

LEGEND_HEIGHT = 14.0
"""Height of the confidence legend under the image, points."""

SUPPLIED = colors.HexColor("#2f7fd8")
"""Colour of landmarks supplied by a person (they have no confidence)."""


def display_png(rg: Radiograph, max_side: int = MAX_IMAGE_SIDE_PX) -> bytes:
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


def confidence_colour(c: float) -> Any:
    if not math.isfinite(c):  # a landmark supplied by a person has no confidence
        return SUPPLIED
    if c >= HIGH_CONFIDENCE:
        return GREEN
    if c >= LOW_CONFIDENCE:
        return AMBER
    return RED


@dataclass(frozen=True)
class Mapping:
    """Image pixels → PDF points inside the drawn image (origin at the top-left pixel's centre)."""

    scale: float
    height: float
    bottom: float

    def __call__(self, x: float, y: float) -> tuple[float, float]:
        return (x + 0.5) * self.scale, self.bottom + self.height - (y + 0.5) * self.scale


class Overlay(Protocol):
    """What a kind draws on its radiograph: lines under the dots, and the labels to place."""

    def draw_lines(self, canvas: Any, a: Analysis, to_pdf: Mapping) -> None: ...

    def place_labels(self, a: Analysis, to_pdf: Mapping, placer: LabelPlacer) -> None: ...


def dot_radius(a: Analysis) -> float:
    return 1.3 if a.kind == "spine" else 2.2


def landmark_dots(a: Analysis, to_pdf: Mapping) -> list[tuple[float, float, Any]]:
    """Position (PDF points) and colour of every finite landmark."""
    p = a.prediction
    out = []
    for xy, conf in zip(p.xy_px, p.confidence):
        if np.all(np.isfinite(xy)):
            x, y = to_pdf(float(xy[0]), float(xy[1]))
            out.append((x, y, confidence_colour(float(conf))))
    return out


def draw_landmarks(canvas: Any, dots: list[tuple[float, float, Any]], radius: float) -> None:
    """Every landmark as a dot coloured by confidence."""
    canvas.saveState()
    canvas.setStrokeColor(colors.black)
    canvas.setLineWidth(0.4)
    for x, y, colour in dots:
        canvas.setFillColor(colour)
        canvas.circle(x, y, radius, stroke=1, fill=1)
    canvas.restoreState()


class AnnotatedImage(Flowable):
    """The radiograph drawn ``width`` × ``height`` points with its overlay, and a confidence
    legend below. After drawing, :attr:`placer` holds the landmark dots and placed labels
    (in the flowable's own coordinates)."""

    def __init__(self, png: bytes, analysis: Analysis, overlay: Overlay, width: float, height: float) -> None:
        super().__init__()
        self.png = png
        self.analysis = analysis
        self.overlay = overlay
        self.draw_w, self.draw_h = width, height
        self.image_h, self.image_w = analysis.prediction.image_shape
        self.placer: LabelPlacer | None = None
        self.hAlign = "LEFT"

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.draw_w, self.draw_h + LEGEND_HEIGHT

    def draw(self) -> None:
        c = self.canv
        w, h, bottom = self.draw_w, self.draw_h, LEGEND_HEIGHT
        to_pdf = Mapping(scale=w / self.image_w, height=h, bottom=bottom)
        placer = LabelPlacer(Box(0.0, bottom, w, bottom + h))
        c.saveState()
        c.drawImage(ImageReader(io.BytesIO(self.png)), 0, bottom, w, h)
        clip = c.beginPath()
        clip.rect(0, bottom, w, h)
        c.clipPath(clip, stroke=0, fill=0)
        self.overlay.draw_lines(c, self.analysis, to_pdf)
        dots, radius = landmark_dots(self.analysis, to_pdf), dot_radius(self.analysis)
        for x, y, _ in dots:  # no label may cover a dot
            placer.add_dot(x, y, radius + 0.2)
        self.overlay.place_labels(self.analysis, to_pdf, placer)
        draw_leaders(c, placer.labels)
        draw_landmarks(c, dots, radius)
        draw_labels(c, placer.labels)
        c.restoreState()
        self.placer = placer
        c.saveState()
        c.setStrokeColor(GRID)
        c.setLineWidth(0.5)
        c.rect(0, bottom, w, h, stroke=1, fill=0)
        x = 0.0
        c.setFont("Helvetica", 7)
        lo, hi = LOW_CONFIDENCE, HIGH_CONFIDENCE
        entries = [(GREEN, f"confidence {hi:g}–1"), (AMBER, f"{lo:g}–{hi:g}"), (RED, f"below {lo:g}")]
        if self.analysis.prediction.supplied:
            entries = [(SUPPLIED, "landmarks supplied by a person (no confidence)")]
        for colour, text in entries:
            c.setFillColor(colour)
            c.setStrokeColor(colors.black)
            c.circle(x + 3, 4.5, 2.6, stroke=1, fill=1)
            c.setFillColor(colors.black)
            c.drawString(x + 8, 2, text)
            x += 12 + c.stringWidth(text, "Helvetica", 7)
        c.restoreState()
