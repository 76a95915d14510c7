"""Per-landmark confidence: a logistic model on heatmap features (optionally with one offset
per landmark), calibrated on images the networks did not train on (out-of-fold predictions
for ``ceph``, held-out images for ``spine``) to the probability that a landmark lies within
a radius (2 mm for ``ceph``) of the truth. Pure numpy/scipy; coefficients travel in the
model card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FEATURES = ("refine_peak", "coarse_peak", "shift_mm")


def _design(features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f = np.asarray(features, dtype=np.float64)
    return np.column_stack([np.ones(len(f)), f[:, 0], f[:, 1], np.log1p(np.maximum(f[:, 2], 0.0))])


@dataclass(frozen=True)
class Calibrator:
    """Logistic map from ``(refine_peak, coarse_peak, shift_mm)`` to P(error ≤ radius_mm).

    ``landmark_offsets``: optional one value per landmark added to the logit, so that a
    landmark that is harder than its heatmaps suggest (e.g. gonion, which annotators
    place differently) gets a lower confidence. Rows of ``features`` are then taken as
    landmarks in model order, image after image (``N``, or ``M × N`` rows).
    """

    coef: tuple[float, ...]
    radius_mm: float
    landmark_offsets: tuple[float, ...] | None = None

    def __call__(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        z = _design(features) @ np.asarray(self.coef)
        if self.landmark_offsets is not None:
            n = len(self.landmark_offsets)
            if len(z) % n:
                from cephspine.errors import InvalidArgumentError

                raise InvalidArgumentError(f"{len(z)} feature rows are not whole images of {n} landmarks")
            z = z + np.tile(np.asarray(self.landmark_offsets), len(z) // n)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def to_dict(self) -> dict[str, Any]:
        d = {"features": list(FEATURES), "coef": list(self.coef), "radius_mm": self.radius_mm, "kind": "logistic"}
        if self.landmark_offsets is not None:
            d["landmark_offsets"] = list(self.landmark_offsets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        offsets = d.get("landmark_offsets")
        return cls(
            tuple(float(c) for c in d["coef"]),
            float(d["radius_mm"]),
            None if offsets is None else tuple(float(v) for v in offsets),
        )


def fit_calibrator(
    features: npt.NDArray[np.float64],
    errors_mm: npt.NDArray[np.float64],
    radius_mm: float = 2.0,
    l2: float = 1e-3,
    n_landmarks: int | None = None,
) -> Calibrator:
    """Fit the logistic model by penalised maximum likelihood.

    Args:
        features: ``(M, 3)`` per-landmark features (see :data:`FEATURES`).
        errors_mm: ``(M,)`` radial errors of the same landmarks.
        radius_mm: the radius whose hit probability the confidence estimates.
        l2: ridge penalty on the non-intercept coefficients (per sample: the loss is the
            mean log-loss, so larger values shrink the probabilities towards the hit rate).
        n_landmarks: also fit one logit offset per landmark (the first landmark's is 0);
            rows are then landmarks in model order, image after image.

    Raises:
        ValueError: no samples, ``features`` not ``(M, 3)``, or ``errors_mm`` not ``(M,)``.
    """
    from scipy.optimize import minimize

    f = np.asarray(features, dtype=np.float64)
    e = np.asarray(errors_mm, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != len(FEATURES) or e.shape != (len(f),):
        raise ValueError(f"features must be (M, {len(FEATURES)}) and errors_mm (M,), got {f.shape} and {e.shape}")
    if len(f) == 0:
        raise ValueError("cannot fit a calibrator on zero samples")
    x = _design(f)
    if n_landmarks is not None:
        if n_landmarks < 2 or len(f) % n_landmarks:
            raise ValueError(f"{len(f)} feature rows are not whole images of {n_landmarks} landmarks")
        idx = np.tile(np.arange(n_landmarks), len(f) // n_landmarks)
        x = np.column_stack([x, (idx[:, None] == np.arange(1, n_landmarks)[None]).astype(np.float64)])
    y = (e <= radius_mm).astype(np.float64)

    def loss(w: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        z = x @ w
        p = 1.0 / (1.0 + np.exp(-z))
        ll = np.sum(np.logaddexp(0, z) - y * z) / len(y) + l2 * np.sum(w[1:] ** 2)
        g = x.T @ (p - y) / len(y)
        g[1:] += 2 * l2 * w[1:]
        return float(ll), g

    res = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    coef = tuple(float(v) for v in res.x[: len(FEATURES) + 1])
    if n_landmarks is None:
        return Calibrator(coef, radius_mm)
    return Calibrator(coef, radius_mm, (0.0, *(float(v) for v in res.x[len(FEATURES) + 1 :])))


def calibration_table(
    prob: npt.NDArray[np.float64], hit: npt.NDArray[np.bool_], bins: int = 5
) -> list[dict[str, float]]:
    """Reliability table: per probability bin, the mean predicted probability and the observed rate."""
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (prob >= lo) & ((prob < hi) | (hi == 1.0))
        if m.any():
            rows.append(
                {
                    "bin_lo": float(lo),
                    "bin_hi": float(hi),
                    "n": int(m.sum()),
                    "mean_confidence": float(prob[m].mean()),
                    "observed_rate": float(hit[m].mean()),
                }
            )
    return rows
