"""Label placement on the annotated radiograph.

:class:`LabelPlacer` puts each label, greedily and in the order asked, at the best of a
list of candidate positions: touching its point (or beside its line), then on rings
further out, joined to the point by a leader line. A position is taken only when the
label's box stays inside the image and overlaps no label placed before, no landmark dot
and no leader line, and its own leader crosses no other label; among those, near
positions that cover no drawn line come first, then the shortest leader that keeps clear
of other dots and leaders (:meth:`LabelPlacer._choose`). Every placed label is recorded
(:attr:`LabelPlacer.labels`) so that the drawing, and tests, can use the boxes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from reportlab.pdfbase.pdfmetrics import stringWidth

FONT = "Helvetica-Bold"
"""The font of every label."""

PAD_X = 1.0
"""Horizontal padding between a label's text and its box, points."""

PAD_Y = 0.7
"""Vertical padding between a label's text (descender to ascender) and its box, points."""

_ASCENT = 0.72  # Helvetica-Bold ascender and descender, in units of the font size
_DESCENT = 0.21

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in PDF points."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def around(cls, x: float, y: float, radius: float) -> Box:
        return cls(x - radius, y - radius, x + radius, y + radius)

    def intersects(self, other: Box, gap: float = 0.0) -> bool:
        """Whether the boxes overlap or come closer than ``gap``."""
        return (
            self.x0 < other.x1 + gap
            and other.x0 < self.x1 + gap
            and self.y0 < other.y1 + gap
            and other.y0 < self.y1 + gap
        )

    def contains(self, other: Box) -> bool:
        return self.x0 <= other.x0 and self.y0 <= other.y0 and other.x1 <= self.x1 and other.y1 <= self.y1

    def contains_point(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def nearest(self, x: float, y: float) -> Point:
        """The point of the box closest to ``(x, y)``."""
        return min(max(x, self.x0), self.x1), min(max(y, self.y0), self.y1)

    def grown(self, d: float) -> Box:
        return Box(self.x0 - d, self.y0 - d, self.x1 + d, self.y1 + d)

    def crosses(self, p: Point, q: Point) -> bool:
        """Whether the segment ``p``–``q`` passes through the box (Liang–Barsky clipping)."""
        t0, t1 = 0.0, 1.0
        dx, dy = q[0] - p[0], q[1] - p[1]
        for den, num in ((-dx, p[0] - self.x0), (dx, self.x1 - p[0]), (-dy, p[1] - self.y0), (dy, self.y1 - p[1])):
            if den == 0:
                if num < 0:
                    return False
                continue
            t = num / den
            if den < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 > t1:
                return False
        return True


def text_box(x: float, y: float, text: str, size: float) -> Box:
    """The background box of a label whose text starts at ``(x, y)`` (its baseline)."""
    w = stringWidth(text, FONT, size)
    return Box(x - PAD_X, y - _DESCENT * size - PAD_Y, x + w + PAD_X, y + _ASCENT * size + PAD_Y)


def _label_size(text: str, size: float) -> Point:
    return stringWidth(text, FONT, size) + 2 * PAD_X, (_ASCENT + _DESCENT) * size + 2 * PAD_Y


@dataclass(frozen=True)
class Label:
    """A placed label: its text, box, colour, the point it names and its leader line (if any)."""

    text: str
    box: Box
    size: float
    colour: Any
    anchor: Point
    leader: tuple[Point, Point] | None

    @property
    def origin(self) -> Point:
        """Where the text starts (its baseline); :func:`text_box` of it is :attr:`box`."""
        return self.box.x0 + PAD_X, self.box.y0 + PAD_Y + _DESCENT * self.size


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    def orient(p: Point, q: Point, r: Point) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    d1, d2 = orient(c, d, a), orient(c, d, b)
    d3, d4 = orient(a, b, c), orient(a, b, d)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


_FOREIGN_DOT_GAP = 3.5  # a dot's label keeps this far from the other dots, points
_NEAR = 3.0  # rings up to this far count as near: tried first for a place that covers no line
_SOFT_COST = 25.0  # a broken soft rule weighs as much as this much more leader, points
# Distances (points) of the rings of candidates around a point, beyond the touching one.
_RINGS = (3.0, 6.0, 10.0, 15.0, 21.0, 28.0, 36.0, 45.0, 56.0, 70.0, 86.0, 105.0, 128.0, 155.0, 190.0, 230.0)


def _angles(count: int, prefer: float | None) -> list[float]:
    """``count`` directions around the circle, ordered by closeness to ``prefer`` (radians)."""
    base = [2 * math.pi * k / count for k in range(count)]
    if prefer is None:
        prefer = 0.0

    def distance(a: float) -> float:
        d = abs(a - prefer) % (2 * math.pi)
        return min(d, 2 * math.pi - d)

    return sorted(base, key=lambda a: (round(distance(a), 6), a))


class LabelPlacer:
    """Greedy placement of labels that overlap neither each other nor the landmark dots.

    Args:
        bounds: the area labels must stay inside (the drawn image), points.
        gap: the least distance between two labels, points.
    """

    def __init__(self, bounds: Box, *, gap: float = 1.0) -> None:
        self.bounds = bounds
        self.gap = gap
        self.labels: list[Label] = []
        self.dots: list[Box] = []
        self.lines: list[tuple[Point, Point]] = []

    def add_dot(self, x: float, y: float, radius: float) -> None:
        """A landmark dot no label may cover."""
        self.dots.append(Box.around(x, y, radius))

    def add_line(self, p: Point, q: Point) -> None:
        """A drawn line labels avoid covering where a nearby position allows."""
        self.lines.append((p, q))

    # ----------------------------------------------------------------- candidates

    def _hard(self, label: Label, nearest_own: bool, stop: int = 1_000) -> int:
        """How many hard rules the candidate breaks (counting stops at ``stop``): outside
        the image, over a label, dot or leader, its leader through a label, or (for a dot's
        label without a leader) nearer another dot than its own."""
        box, leader, anchor = label.box, label.leader, label.anchor
        if not self.bounds.contains(box):
            return stop
        n = 0
        grown = box.grown(0.6)
        for lab in self.labels:
            if box.intersects(lab.box, self.gap) or lab.leader is not None and grown.crosses(*lab.leader):
                n += 1
            if leader is not None and lab.box.grown(0.6).crosses(*leader):
                n += 1
            if n >= stop:
                return n
        own = math.dist(box.nearest(*anchor), anchor)
        for dot in self.dots:
            if box.intersects(dot, 0.6):
                n += 1
            elif nearest_own and leader is None and not dot.contains_point(*anchor):
                centre = ((dot.x0 + dot.x1) / 2, (dot.y0 + dot.y1) / 2)
                if math.dist(box.nearest(*centre), centre) < own + 1.0:
                    n += 1  # without a leader it would seem to name that other dot
            if n >= stop:
                return n
        return n

    def _overlaps(self, label: Label) -> int:
        """How many labels, dots and leaders the candidate's box overlaps (out of the image: 1000)."""
        box = label.box
        if not self.bounds.contains(box):
            return 1_000
        grown = box.grown(0.6)
        n = sum(
            1
            for lab in self.labels
            if box.intersects(lab.box, self.gap) or (lab.leader is not None and grown.crosses(*lab.leader))
        )
        return n + sum(1 for dot in self.dots if box.intersects(dot, 0.6))

    def _soft(self, label: Label, nearest_own: bool) -> int:
        """How many soft rules the candidate breaks: its leader over another dot or across
        another leader; a dot's label close to another dot."""
        box, leader, anchor = label.box, label.leader, label.anchor
        n = 0
        if leader is not None:
            n += sum(1 for lab in self.labels if lab.leader is not None and _segments_cross(*leader, *lab.leader))
        for dot in self.dots:
            if dot.contains_point(*anchor):
                continue
            if leader is not None and dot.crosses(*leader):
                n += 1
            if nearest_own and box.intersects(dot, _FOREIGN_DOT_GAP):
                n += 1
        return n

    def _covers_lines(self, box: Box, own: tuple[Point, Point] | None) -> bool:
        return any(line != own and box.crosses(*line) for line in self.lines)

    @staticmethod
    def _label(text: str, size: float, colour: Any, box: Box, anchor: Point, clearance: float) -> Label:
        """The label in ``box`` for ``anchor``, with a leader when the box is not beside it."""
        near = box.nearest(*anchor)
        dist = math.dist(near, anchor)
        leader = None
        if dist > clearance + 2.5:
            ux, uy = (near[0] - anchor[0]) / dist, (near[1] - anchor[1]) / dist
            leader = ((anchor[0] + ux * clearance, anchor[1] + uy * clearance), near)
        return Label(text, box, size, colour, anchor, leader)

    def _choose(
        self,
        text: str,
        size: float,
        colour: Any,
        candidates: Callable[[], Iterator[tuple[Box, Point, float, float]]],
        own: tuple[Point, Point] | None = None,
        nearest_own: bool = False,
    ) -> Label:
        """Place a label at the best of the candidates ``(box, anchor, clearance, distance)``,
        given in order of distance from the anchor.

        Hard rules (:meth:`_hard`) must hold; soft rules (:meth:`_soft`) should. Taken in
        order: the first near candidate that breaks no rule and covers no drawn line
        (other than the label's ``own``); else the candidate, among those that break no
        hard rule, with the least distance plus :data:`_SOFT_COST` per soft rule broken;
        else (no room left) the one whose box overlaps the fewest labels, dots and leaders.
        """
        for box, anchor, clearance, dist in candidates():
            if dist > _NEAR:
                break
            label = self._label(text, size, colour, box, anchor, clearance)
            if (
                not self._covers_lines(box, own)
                and self._hard(label, nearest_own, stop=1) == 0
                and self._soft(label, nearest_own) == 0
            ):
                self.labels.append(label)
                return label
        best: tuple[float, Label] | None = None
        for box, anchor, clearance, dist in candidates():
            if best is not None and dist >= best[0]:
                break
            label = self._label(text, size, colour, box, anchor, clearance)
            if self._hard(label, nearest_own, stop=1):
                continue
            cost = dist + _SOFT_COST * self._soft(label, nearest_own)
            if best is None or cost < best[0]:
                best = (cost, label)
        if best is not None:
            chosen = best[1]
        else:  # no room: overlap no label or dot if a leader may cross labels
            scored = (
                (self._overlaps(lab), self._hard(lab, nearest_own), i, lab)
                for i, lab in enumerate(self._label(text, size, colour, b, a, c) for b, a, c, _ in candidates())
            )
            chosen = min(scored)[3]
        self.labels.append(chosen)
        return chosen

    @staticmethod
    def _toward(x: float, y: float, ux: float, uy: float, gap: float, w: float, h: float) -> Box:
        """The box ``w`` × ``h`` in direction ``(ux, uy)`` from ``(x, y)``, ``gap`` away."""
        s = gap + abs(ux) * w / 2 + abs(uy) * h / 2
        cx, cy = x + ux * s, y + uy * s
        return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    def _ring_distances(self) -> list[float]:
        reach = math.hypot(self.bounds.x1 - self.bounds.x0, self.bounds.y1 - self.bounds.y0)
        rings = [r for r in _RINGS if r < reach]
        r = rings[-1] if rings else 0.0
        while r * 1.2 < reach:  # beyond the listed rings on a large image
            r *= 1.2
            rings.append(r)
        return rings

    # ----------------------------------------------------------------- public

    def place_at_point(
        self,
        text: str,
        x: float,
        y: float,
        *,
        size: float,
        colour: Any,
        clearance: float = 2.0,
        prefer: float | None = None,
        is_dot: bool = True,
    ) -> Label:
        """Label the point ``(x, y)``: touching it if there is room, else further out with a leader.

        Args:
            clearance: the radius around the point the label keeps clear of (its dot).
            prefer: the preferred direction, radians (0: to the right, π/2: up).
            is_dot: the point is a landmark dot: without a leader, the label must be
                nearer to it than to any other dot, so that it cannot seem to name another.
        """
        w, h = _label_size(text, size)

        def candidates() -> Iterator[tuple[Box, Point, float, float]]:
            for a in _angles(8, prefer):
                yield self._toward(x, y, math.cos(a), math.sin(a), clearance + 0.8, w, h), (x, y), clearance, 0.0
            for dist in self._ring_distances():
                for a in _angles(16 if dist < 40 else 32, prefer):
                    box = self._toward(x, y, math.cos(a), math.sin(a), clearance + dist, w, h)
                    yield box, (x, y), clearance, dist

        return self._choose(text, size, colour, candidates, nearest_own=is_dot)

    def place_on_segment(
        self, text: str, p: Point, q: Point, *, size: float, colour: Any, positions: Sequence[float] | None = None
    ) -> Label:
        """Label the line ``p``–``q``: beside it at one of ``positions`` (fractions of its
        length, default middle first), else further out from one of them, with a leader."""
        w, h = _label_size(text, size)
        dx, dy = q[0] - p[0], q[1] - p[1]
        length = math.hypot(dx, dy)
        nx, ny = (-dy / length, dx / length) if length > 0 else (0.0, 1.0)
        ts = positions if positions is not None else (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82)
        up = math.atan2(ny, nx) if ny >= 0 else math.atan2(-ny, -nx)
        anchors = [(p[0] + t * dx, p[1] + t * dy) for t in (ts if length > 0 else (0.5,))]

        def candidates() -> Iterator[tuple[Box, Point, float, float]]:
            if length > 0:
                for m in anchors:
                    for sgn in (1.0, -1.0):
                        yield self._toward(m[0], m[1], sgn * nx, sgn * ny, 1.2, w, h), m, 1.2, 0.0
            for dist in self._ring_distances():
                if dist <= _NEAR:
                    continue  # beside the line is as near
                for m in anchors[::2]:
                    for a in _angles(16, up):
                        yield self._toward(m[0], m[1], math.cos(a), math.sin(a), 1.2 + dist, w, h), m, 1.2, dist

        return self._choose(text, size, colour, candidates, own=(p, q))


def draw_leaders(canvas: Any, labels: Sequence[Label]) -> None:
    """The leader lines (drawn before the dots, which then cover their ends)."""
    canvas.saveState()
    canvas.setLineWidth(0.55)
    for lab in labels:
        if lab.leader is not None:
            canvas.setStrokeColor(lab.colour)
            canvas.line(*lab.leader[0], *lab.leader[1])
    canvas.restoreState()


def draw_labels(canvas: Any, labels: Sequence[Label]) -> None:
    """Each label on a dark translucent box."""
    from reportlab.lib import colors

    canvas.saveState()
    for lab in labels:
        b = lab.box
        canvas.setFillColor(colors.black)
        canvas.setFillAlpha(0.62)
        canvas.rect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, stroke=0, fill=1)
        canvas.setFillAlpha(1.0)
        canvas.setFillColor(lab.colour)
        canvas.setFont(FONT, lab.size)
        canvas.drawString(*lab.origin, lab.text)
    canvas.restoreState()
