"""Affine registration to a template (SimpleITK, Mattes mutual information).

Used as a pose/scale normaliser in front of the coarse stage: the image (on the coarse
grid) is registered to a template image from the training set, resampled into the
template's frame, and the coarse positions are mapped back through the transform.
Registration can fail; :func:`register` checks the metric and the transform and says so.

Coordinates are ``(x, y)`` pixels of the coarse grid, origin at the top-left pixel centre.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cephspine.errors import InvalidArgumentError

_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "before": 0}


@dataclass(frozen=True)
class Template:
    """A fixed image on the coarse grid and the mask of the region used by the metric.

    Attributes:
        image: ``(H, W)`` float32 in [0, 1].
        mask: ``(H, W)`` bool region (landmarks plus a margin) the metric is computed on.
    """

    image: npt.NDArray[np.float32]
    mask: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome of :func:`register`.

    Attributes:
        matrix: ``(2, 3)`` affine mapping template pixels to image pixels:
            ``[x_img, y_img] = matrix @ [x_tpl, y_tpl, 1]``.
        metric: final Mattes mutual-information value (more negative is better).
        ok: whether the registration passed the checks.
        reason: why it was rejected (empty when ``ok``).
        seconds: wall time.
    """

    matrix: npt.NDArray[np.float64]
    metric: float
    ok: bool
    reason: str
    seconds: float

    def to_image(self, xy_tpl: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Template-frame ``(..., 2)`` points → image pixels."""
        xy = np.asarray(xy_tpl, dtype=np.float64)
        return xy @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_template(self, xy_img: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Image-pixel ``(..., 2)`` points → template frame."""
        xy = np.asarray(xy_img, dtype=np.float64)
        inv = np.linalg.inv(self.matrix[:, :2])
        return (xy - self.matrix[:, 2]) @ inv.T


def check_transform(
    matrix: npt.NDArray[np.float64],
    metric: float,
    max_metric: float,
    scale_range: tuple[float, float] = (0.7, 1.45),
    max_rotation_deg: float = 20.0,
    max_anisotropy: float = 1.25,
) -> str:
    """Reason a transform is implausible for a lateral cephalogram, or ``""`` if it is fine."""
    a = matrix[:, :2]
    if not np.all(np.isfinite(matrix)):
        return "non-finite transform"
    if metric > max_metric:
        return f"mutual information too low (metric {metric:.3f} > {max_metric:.3f})"
    sv = np.linalg.svd(a, compute_uv=False)
    if np.linalg.det(a) <= 0:
        return "transform flips the image"
    if not (scale_range[0] <= sv.min() and sv.max() <= scale_range[1]):
        return f"implausible scale ({sv.min():.2f}-{sv.max():.2f})"
    if sv.max() / sv.min() > max_anisotropy:
        return f"implausible shear/anisotropy ({sv.max() / sv.min():.2f})"
    rot = np.degrees(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))
    if abs(rot) > max_rotation_deg:
        return f"implausible rotation ({rot:.1f} deg)"
    return ""


def register(
    image: npt.NDArray[np.float32],
    template: Template,
    *,
    iterations: int = 100,
    sampling: float = 0.25,
    max_metric: float = -0.25,
    seed: int = 1,
) -> RegistrationResult:
    """Register ``image`` (moving) to ``template`` (fixed) with an affine transform.

    Moments initialisation, then a similarity and an affine stage, both Mattes MI with
    32 bins on a random ``sampling`` fraction of the template mask, two resolution levels.
    The result is deterministic: the sampling uses the fixed ``seed`` and ITK runs on one
    thread (several threads sum the metric in a varying order, and the optimiser follows;
    see :func:`_one_itk_thread`).

    Args:
        image: ``(H, W)`` float32 image on the same pixel grid (mm per pixel) as the template.
        template: the fixed image and its mask.
        iterations: optimiser iterations per stage and level.
        max_metric: results with a final metric above this are rejected.
        seed: seed of the metric's random sampling; non-zero (SimpleITK reads ``0`` as
            "seed from the wall clock", which makes every call differ).
    """
    import SimpleITK as sitk

    if seed == 0:
        raise InvalidArgumentError("seed must be non-zero (SimpleITK reads 0 as a wall-clock seed)")

    t0 = time.perf_counter()
    if not float(np.std(image)) > 1e-6:
        return RegistrationResult(np.eye(2, 3), float("nan"), False, "blank image", time.perf_counter() - t0)
    fixed = sitk.GetImageFromArray(np.ascontiguousarray(template.image, dtype=np.float32))
    moving = sitk.GetImageFromArray(np.ascontiguousarray(image, dtype=np.float32))
    mask = sitk.GetImageFromArray(template.mask.astype(np.uint8))

    def method() -> sitk.ImageRegistrationMethod:
        r = sitk.ImageRegistrationMethod()
        r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(sampling, seed)
        r.SetMetricFixedMask(mask)
        r.SetInterpolator(sitk.sitkLinear)
        r.SetShrinkFactorsPerLevel([2, 1])
        r.SetSmoothingSigmasPerLevel([1.0, 0.0])
        r.SetOptimizerScalesFromPhysicalShift()
        return r

    try:
        with _one_itk_thread(sitk):
            init = sitk.CenteredTransformInitializer(
                fixed, moving, sitk.Similarity2DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
            )
            reg = method()
            reg.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-3, iterations, relaxationFactor=0.6)
            reg.SetInitialTransform(init, inPlace=True)
            reg.Execute(fixed, moving)
            affine = sitk.AffineTransform(2)
            affine.SetMatrix(init.GetMatrix())
            affine.SetTranslation(init.GetTranslation())
            affine.SetCenter(init.GetCenter())
            reg2 = method()
            reg2.SetOptimizerAsRegularStepGradientDescent(0.5, 1e-4, iterations, relaxationFactor=0.6)
            reg2.SetInitialTransform(affine, inPlace=True)
            reg2.Execute(fixed, moving)
            metric = float(reg2.GetMetricValue())
    except RuntimeError as exc:
        return RegistrationResult(
            np.eye(2, 3), float("nan"), False, f"registration error: {exc}", time.perf_counter() - t0
        )
    a = np.array(affine.GetMatrix(), dtype=np.float64).reshape(2, 2)
    c = np.array(affine.GetCenter(), dtype=np.float64)
    t = np.array(affine.GetTranslation(), dtype=np.float64)
    # ITK: x_moving = A (x_fixed - c) + c + t  (physical = pixel index here, spacing 1)
    matrix = np.concatenate([a, (c + t - a @ c)[:, None]], axis=1)
    reason = check_transform(matrix, metric, max_metric)
    return RegistrationResult(matrix, metric, not reason, reason, time.perf_counter() - t0)


@contextmanager
def _one_itk_thread(sitk: Any) -> Iterator[None]:
    """SimpleITK's default number of threads set to one while inside (the previous value is
    restored when the last of any concurrent callers leaves). Setting it on the registration
    method alone is not enough: the metric and the pyramid filters it builds read the default."""
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["before"] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        _THREADS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(_THREADS_STATE["before"])


def warp_to_template(
    image: npt.NDArray[np.float32], result: RegistrationResult, shape_hw: tuple[int, int]
) -> npt.NDArray[np.float32]:
    """Resample ``image`` into the template frame (bilinear, zero outside)."""
    from scipy.ndimage import affine_transform

    # scipy works in (row, col): out[r, c] = in[M @ (r, c) + o]
    m = result.matrix
    a_rc = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])
    o_rc = np.array([m[1, 2], m[0, 2]])
    return affine_transform(np.asarray(image, dtype=np.float32), a_rc, o_rc, output_shape=shape_hw, order=1, cval=0.0)
