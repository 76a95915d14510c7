"""Evaluate a detector on a folder in the ISBI 2015 layout (images/, senior/, junior/)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm


@dataclass(frozen=True)
class CephEvaluation:
    """Per-landmark radial errors and the features behind each confidence.

    Attributes:
        ids: image identifiers, ``(M,)``.
        names: landmark names ``(N,)``.
        errors_mm: ``(M, N)`` radial errors against the chosen ground truth.
        confidence: ``(M, N)`` predicted confidences.
        features: ``(M, N, 3)`` confidence features (refine peak, coarse peak, shift mm).
        pred_px, true_px: ``(M, N, 2)`` positions in original pixels.
        seconds: ``(M,)`` end-to-end prediction time per image.
        warnings: what makes these errors differ from a held-out accuracy (images the
            model was trained on, :func:`trained_on`); empty when nothing does.
    """

    ids: list[str]
    names: tuple[str, ...]
    errors_mm: npt.NDArray[np.float64]
    confidence: npt.NDArray[np.float64]
    features: npt.NDArray[np.float64]
    pred_px: npt.NDArray[np.float64]
    true_px: npt.NDArray[np.float64]
    seconds: npt.NDArray[np.float64]
    warnings: tuple[str, ...] = ()

    def table(self, radii: Sequence[float] = (2.0, 2.5, 3.0, 4.0)) -> Any:
        """The paper's Table I format: MRE, SD, SDR per radius; overall row first."""
        from cephspine.metrics import landmark_table

        return landmark_table(self.errors_mm, self.names, radii=radii)

    def per_image(self) -> Any:
        """Tidy table: one row per image and landmark."""
        import pandas as pd

        m, n = self.errors_mm.shape
        return pd.DataFrame(
            {
                "image": np.repeat(self.ids, n),
                "landmark": np.tile(self.names, m),
                "x_px": self.pred_px[..., 0].ravel(),
                "y_px": self.pred_px[..., 1].ravel(),
                "true_x_px": self.true_px[..., 0].ravel(),
                "true_y_px": self.true_px[..., 1].ravel(),
                "error_mm": self.errors_mm.ravel(),
                "confidence": self.confidence.ravel(),
            }
        )


def _check_ids(data: Path, known: set[str], ids: Sequence[str]) -> None:
    """Raise :class:`~cephspine.errors.DatasetError` naming the first ``ids`` not in ``known``."""
    from cephspine.errors import DatasetError

    missing = [i for i in ids if i not in known]
    if missing:
        raise DatasetError(f"{data}: no annotated images with ids {missing[:5]}{'…' if len(missing) > 5 else ''}")


def _timed_predict(detector: Any, radiograph: Any) -> tuple[Any, float]:
    """``detector.predict(radiograph)`` and the seconds it took."""
    t = time.perf_counter()
    pred = detector.predict(radiograph)
    return pred, time.perf_counter() - t


def _features(pred: Any) -> npt.NDArray[np.float64]:
    """The ``(N, 3)`` confidence features of a prediction: refine peak, coarse peak, shift mm."""
    f = pred.meta["features"]
    return np.stack([f["refine_peak"], f["coarse_peak"], f["shift_mm"]], axis=1)


def evaluate_items(
    detector: Any,
    items: Iterable[tuple[str, Any, npt.NDArray[np.float64], Any]],
    names: Sequence[str],
    index: Sequence[int] | None = None,
    progress: bool = True,
    total: int | None = None,
) -> CephEvaluation:
    """Predict each ``(id, radiograph, true points, spacing)`` of ``items`` with ``detector``
    and collect radial errors (mm under ``spacing``), confidences, confidence features,
    predictions and times. ``index``: the model's landmarks to compare (in the order of
    ``names`` and the true points; default all)."""
    from cephspine.metrics import radial_errors

    sel = slice(None) if index is None else list(index)
    errs, conf, feats, preds, trues, secs, out_ids = [], [], [], [], [], [], []
    bar = tqdm(items, desc="evaluate", total=total, disable=None if progress else True)
    for item_id, radiograph, true, spacing in bar:
        pred, seconds = _timed_predict(detector, radiograph)
        xy = pred.xy_px[sel]
        errs.append(radial_errors(xy, true, spacing=spacing))
        conf.append(pred.confidence[sel])
        feats.append(_features(pred)[sel])
        preds.append(xy)
        trues.append(true)
        secs.append(seconds)
        out_ids.append(item_id)
    return CephEvaluation(
        out_ids,
        tuple(names),
        np.array(errs),
        np.array(conf),
        np.array(feats),
        np.array(preds),
        np.array(trues),
        np.array(secs),
    )


def trained_on(card: dict[str, Any], ids: Sequence[str]) -> list[str]:
    """The ``ids`` that trained the model of ``card``: those its ``trained_ids`` entry names
    (ISBI 2015 ids as :func:`~cephspine.io.datasets.parse_ids` reads them, e.g.
    ``"001-150"``; the shipped ``ceph`` model and ``cephspine train ceph`` models have one)
    or its ``trained_images`` list (image names: the shipped ``spine`` model and models of
    ``cephspine train landmarks``). Empty for a card without either."""
    from cephspine.io.datasets import parse_ids

    trained: set[str] = set()
    spec = card.get("trained_ids")
    if isinstance(spec, str):
        trained |= set(parse_ids(spec))
    names = card.get("trained_images")
    if isinstance(names, list):
        trained |= {str(n) for n in names}
    return [i for i in ids if i in trained]


def with_training_warning(detector: Any, ev: Any) -> Any:
    """``ev`` (an evaluation with ``ids`` and ``warnings``), with a
    :class:`~cephspine.errors.TrainingImagesWarning` issued and added to its warnings when
    some of its images trained ``detector``'s model (:func:`trained_on`)."""
    card = getattr(detector, "card", None)
    overlap = trained_on(card, ev.ids) if isinstance(card, dict) else []
    if not overlap:
        return ev
    from cephspine._warn import warn_caller
    from cephspine.errors import TrainingImagesWarning

    message = _trained_on_message(card, ev.ids, overlap)  # type: ignore[arg-type]
    warn_caller(message, TrainingImagesWarning)
    return dataclasses.replace(ev, warnings=(*ev.warnings, message))


def _compact(ids: Sequence[str]) -> str:
    """``["121", "122", "123", "130"]`` as ``"121-123, 130"`` (runs of consecutive numbers)."""
    parts: list[list[str]] = []
    for i in ids:
        last = parts[-1][-1] if parts else None
        if last is not None and i.isdigit() and last.isdigit() and len(i) == len(last) and int(i) == int(last) + 1:
            parts[-1].append(i)
        else:
            parts.append([i])
    return ", ".join(p[0] if len(p) == 1 else f"{p[0]}-{p[-1]}" for p in parts)


def _trained_on_message(card: dict[str, Any], ids: Sequence[str], overlap: Sequence[str]) -> str:
    model = f"{card.get('name', 'the model')} {card.get('version', '')}".strip()
    return (
        f"{model} was trained on {len(overlap)} of the {len(ids)} evaluated image(s) ({_compact(overlap)}): "
        "its errors on its own training images are lower than on images it never saw; evaluate it on other "
        "images for its accuracy (its card gives the accuracy measured on held-out images)"
    )


def evaluate_ceph(
    detector: Any, data: Path, ids: Sequence[str] | None = None, truth: str = "mean", progress: bool = True
) -> CephEvaluation:
    """Run ``detector`` on every image of an ISBI-layout folder and measure radial errors.

    Args:
        detector: a ceph :class:`~cephspine.Detector`.
        data: folder with ``images/``, ``senior/`` and ``junior/``.
        ids: image ids to use (default: every image with annotations).
        truth: ``"mean"`` of both doctors (default) or ``"senior"``.

    Warns:
        TrainingImagesWarning: some of the images trained the model (:func:`trained_on`,
            e.g. any ISBI 2015 training image for the shipped ``ceph`` model); the text is
            also in the result's ``warnings``.
    """
    from cephspine.errors import DatasetError
    from cephspine.io.datasets import IsbiDataset

    ds = IsbiDataset(data)
    if ids is None:
        records = list(ds)
    else:
        _check_ids(data, {r.id for r in ds}, ids)
        records = [ds[i] for i in ids]
    if not records:
        raise DatasetError(f"{data}: no annotated images to evaluate")
    ev = evaluate_items(
        detector,
        (
            (rec.id, rec.radiograph, rec.landmarks if truth == "mean" else rec.senior, rec.radiograph.spacing)
            for rec in records
        ),
        detector.names,
        progress=progress,
        total=len(records),
    )
    return with_training_warning(detector, ev)


@dataclass(frozen=True)
class SpineEvaluation:
    """Spine errors: pixels, millimetres under the L4–L5 = 35 mm convention, Cobb angles.

    Attributes:
        ids: image identifiers ``(M,)``.
        errors_px: ``(M, 68)`` radial errors in original pixels.
        errors_mm: ``(M, 68)`` the same scaled per image by 35 mm / |L4 − L5| (true centres).
        features: ``(M, 68, 3)`` confidence features; confidence ``(M, 68)``.
        pred_angles_deg, true_angles_deg: ``(M, 3)`` reference-algorithm Cobb angles of the
            predicted corners, and the dataset's reference angles.
        seconds: ``(M,)`` prediction time per image.
        warnings: what the evaluation itself warns of (e.g. images the model was trained
            on, :func:`trained_on`); empty when nothing does.
    """

    ids: list[str]
    errors_px: npt.NDArray[np.float64]
    errors_mm: npt.NDArray[np.float64]
    features: npt.NDArray[np.float64]
    confidence: npt.NDArray[np.float64]
    pred_angles_deg: npt.NDArray[np.float64]
    true_angles_deg: npt.NDArray[np.float64]
    seconds: npt.NDArray[np.float64]
    warnings: tuple[str, ...] = ()

    def summary(self, radii: Sequence[float] = (2.0, 3.0, 4.0, 6.0)) -> dict[str, float]:
        """MRE (px and mm), SDR at ``radii`` mm (L4–L5 scale), and the Cobb SMAPE (%)."""
        from cephspine.metrics import smape

        e = self.errors_mm
        out = {
            "n_images": float(len(self.ids)),
            "mre_px": float(self.errors_px.mean()),
            "mre_mm": float(e.mean()),
            "sd_mm": float(e.std()),
        }
        out |= {f"sdr_{r:g}mm_pct": float(100 * (e <= r).mean()) for r in radii}
        out["cobb_smape_pct"] = float(smape(self.pred_angles_deg, self.true_angles_deg))
        return out


def evaluate_spine(
    detector: Any, data: Path, ids: Sequence[str] | None = None, progress: bool = True
) -> SpineEvaluation:
    """Run a spine detector on an AASCE-layout folder (``images/``, ``landmarks.csv``,
    ``angles.csv``): corner errors and Cobb-angle SMAPE against the reference angles."""
    from cephspine.errors import DatasetError
    from cephspine.geometry.cobb import cobb_angles
    from cephspine.io.datasets import AasceDataset
    from cephspine.metrics import radial_errors, spine_mm_scale

    ds = AasceDataset(data)
    known = {r.id for r in ds}
    use = list(known) if ids is None else list(ids)
    _check_ids(data, known, use)
    if not use:
        raise DatasetError(f"{data}: no annotated images to evaluate")
    recs = [ds[i] for i in sorted(use)]
    epx, emm, feats, conf, pa, ta, secs = [], [], [], [], [], [], []
    for rec in tqdm(recs, desc="evaluate", disable=None if progress else True):
        pred, seconds = _timed_predict(detector, rec.radiograph)
        secs.append(seconds)
        e = radial_errors(pred.xy_px, rec.landmarks)
        epx.append(e)
        emm.append(e * spine_mm_scale(rec.landmarks))
        feats.append(_features(pred))
        conf.append(pred.confidence)
        pa.append(cobb_angles(pred.xy_px, image_height=rec.radiograph.height).angles_deg)
        ta.append(rec.angles_deg)
    ev = SpineEvaluation(
        [r.id for r in recs], np.array(epx), np.array(emm), np.array(feats), np.array(conf),
        np.array(pa), np.array(ta), np.array(secs),
    )  # fmt: skip
    return with_training_warning(detector, ev)
