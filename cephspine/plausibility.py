"""Does a prediction look like the anatomy its model was made for?

A model run on the wrong kind of image (a spine film through the ``ceph`` model, a
cephalogram through ``spine``) still returns landmarks, measures and Cobb angles. Two
signs give it away: many landmarks have a low confidence, and the landmarks do not form
the anatomy's shape. :func:`check_anatomy` combines them into one score,

    score = share of landmarks below confidence 0.3 + shape distance,

where the shape distance is the full Procrustes distance between the predicted landmarks
and the anatomy's mean training shape (:data:`~cephspine.anatomy.MEAN_SHAPES`; both centred
and scaled to unit norm, optimally rotated and possibly mirrored: 0 for the same shape, 1
for unrelated ones). Both terms lie in [0, 1]. The image is reported as the wrong anatomy
when the score reaches the anatomy's threshold (:data:`WRONG_ANATOMY_THRESHOLDS`). The
thresholds and the scores they were chosen from are in ``docs/analysis.md`` (Wrong anatomy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from cephspine.anatomy import ANATOMIES, MEAN_SHAPES
from cephspine.errors import LandmarkError

LOW_CONFIDENCE: Final = 0.3
"""Landmarks below this confidence count as low-confidence (the detectors' threshold)."""

WRONG_ANATOMY_THRESHOLDS: Final[dict[str, float]] = {"ceph": 0.45, "spine": 0.88}
"""Score from which an image is reported as not of the anatomy: about half-way between the
scores the models gave on images of the right kind they did not train on (ceph 0.2.0 out of
fold at most 0.17, spine at most 0.65) and on images of the other kind (at least 0.63 and
1.10)."""

ANATOMY_DESCRIPTIONS: Final[dict[str, str]] = {
    "ceph": "a lateral cephalogram",
    "spine": "a spinal AP radiograph",
}

_RESULTS: Final[dict[str, str]] = {"ceph": "measures", "spine": "Cobb angles"}


def shape_distance(xy: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Full Procrustes distance between two landmark configurations of the same points.

    Both are centred and scaled to unit Frobenius norm; the distance is
    ``sqrt(1 - s**2)`` with ``s`` the sum of the singular values of ``xy.T @ reference``
    (the best rotation, reflections allowed, so a mirrored profile is not penalised).
    0 for the same shape, 1 for unrelated shapes; ``nan`` when a configuration has
    non-finite values or collapses to a point.

    Raises:
        LandmarkError: the two are not ``(N, 2)`` arrays of the same shape.
    """
    a = np.asarray(xy, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
        raise LandmarkError(f"xy and reference must both be (N, 2), got {a.shape} and {b.shape}")
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if not (np.isfinite(na) and np.isfinite(nb)) or na == 0 or nb == 0:
        return float("nan")
    s = np.linalg.svd((a / na).T @ (b / nb), compute_uv=False).sum()
    return float(np.sqrt(max(0.0, 1.0 - min(1.0, s) ** 2)))


@dataclass(frozen=True)
class AnatomyCheck:
    """The evidence :func:`check_anatomy` found.

    Attributes:
        anatomy: ``"ceph"`` or ``"spine"``.
        shape_distance: Procrustes distance to the mean training shape (:func:`shape_distance`).
        low_share: share of landmarks with confidence below :data:`LOW_CONFIDENCE`.
        n_low: number of such landmarks.
        n_landmarks: number of landmarks.
        threshold: the anatomy's :data:`WRONG_ANATOMY_THRESHOLDS` entry.
    """

    anatomy: str
    shape_distance: float
    low_share: float
    n_low: int
    n_landmarks: int
    threshold: float

    @property
    def score(self) -> float:
        """``low_share + shape_distance`` (a shape that cannot be measured counts as 1)."""
        d = self.shape_distance if np.isfinite(self.shape_distance) else 1.0
        return self.low_share + d

    @property
    def wrong_anatomy(self) -> bool:
        """The prediction does not look like the anatomy (``score >= threshold``)."""
        return self.score >= self.threshold

    def message(self, name: str) -> str:
        """One line saying so, naming the image ``name``."""
        what = ANATOMY_DESCRIPTIONS.get(self.anatomy, f"a {self.anatomy} image")
        return (
            f"{name}: the image does not look like {what} (the {self.anatomy} model's landmarks: shape "
            f"distance {self.shape_distance:.2f} from its training shapes, {self.n_low} of {self.n_landmarks} "
            f"below confidence {LOW_CONFIDENCE:g}); do not use its {_RESULTS.get(self.anatomy, 'measures')}: "
            "check the image and the kind (ceph or spine)"
        )


def not_a_result(anatomy: str, name: str) -> str:
    """The banner of a result whose landmarks do not look like ``anatomy`` (the first line
    of the ``analyze``/``predict``/``report`` output, the top of a report's first page),
    naming the image ``name``."""
    what = ANATOMY_DESCRIPTIONS.get(anatomy, f"a {anatomy} image")
    return (
        f"NOT A RESULT: {name} does not look like {what}; do not use its "
        f"{_RESULTS.get(anatomy, 'measures')} (shown only to check the image): check the image and the kind "
        "(ceph or spine)"
    )


def check_anatomy(
    anatomy: str | None,
    names: tuple[str, ...],
    xy_px: npt.ArrayLike,
    confidence: npt.ArrayLike,
    threshold: float | None = None,
) -> AnatomyCheck | None:
    """Score how little a prediction looks like ``anatomy`` (see the module docs).

    ``threshold`` replaces the anatomy's :data:`WRONG_ANATOMY_THRESHOLDS` entry (a model
    card's ``wrong_anatomy_threshold``, for a model whose scores on images of the right
    kind were measured apart). Returns ``None`` when there is nothing to compare with: an
    unknown anatomy, or landmarks other than the anatomy's full set
    (:data:`~cephspine.anatomy.ANATOMIES`).
    """
    if anatomy not in MEAN_SHAPES or tuple(names) != ANATOMIES[anatomy]:
        return None
    conf = np.asarray(confidence, dtype=np.float64)
    n_low = int(np.sum(~(conf >= LOW_CONFIDENCE)))  # NaN counts as low
    return AnatomyCheck(
        anatomy=anatomy,
        shape_distance=shape_distance(xy_px, MEAN_SHAPES[anatomy]),
        low_share=n_low / len(conf),
        n_low=n_low,
        n_landmarks=len(conf),
        threshold=WRONG_ANATOMY_THRESHOLDS[anatomy] if threshold is None else float(threshold),
    )


__all__ = [
    "ANATOMY_DESCRIPTIONS",
    "LOW_CONFIDENCE",
    "WRONG_ANATOMY_THRESHOLDS",
    "AnatomyCheck",
    "check_anatomy",
    "not_a_result",
    "shape_distance",
]
