"""Train and evaluate a model on the user's own landmark set.

The data are a folder of images and an annotation file (COCO keypoints or CSV, read by
:func:`cephspine.read_annotations`) naming any number of landmarks. The model is the same
two-stage network as the shipped ``ceph`` model, with one output per landmark; it is
written as a model directory that ``Detector.from_pretrained(path)`` loads, whose card
lists the user's landmark names, says that the model is user-trained, and holds the
accuracy measured on the user's own held-out images (never a shipped model's numbers).

- :func:`load_landmark_set`: annotations + image files + the pixel spacing of every image
  (from the annotation file's spacing columns, else a spacing given for all images, else
  the image file's own, e.g. DICOM ``PixelSpacing``);
- :func:`train_landmarks`: a seeded held-out split, both stages trained (optionally
  starting from another model's weights), calibrated and packaged;
- :func:`evaluate_landmarks`: radial errors of a detector against annotations.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cephspine._csvcells import write_frame
from cephspine.errors import InvalidArgumentError, LandmarkError, SpacingError
from cephspine.io.annotations import Annotations, read_annotations
from cephspine.pipeline import StageConfig
from cephspine.radiograph import Spacing, as_spacing

log = logging.getLogger(__name__)

__all__ = [
    "LandmarkSet",
    "evaluate_landmarks",
    "load_landmark_set",
    "split_images",
    "train_landmarks",
]

USER_TRAINED_NOTE = (
    "User-trained: made with `cephspine train landmarks` on the user's own annotations; not a model shipped with "
    "cephspine. Its accuracy is only what was measured on the held-out images named in this card."
)


@dataclass(frozen=True)
class LandmarkSet:
    """Annotated images ready for training or evaluation.

    Attributes:
        annotations: the annotations read (image name → ``(N, 2)`` pixel positions).
        paths: image name → image file.
        spacing: image name → pixel spacing (every image has one).
    """

    annotations: Annotations
    paths: dict[str, Path]
    spacing: dict[str, Spacing]

    @property
    def names(self) -> tuple[str, ...]:
        """The landmark names, in the annotations' order."""
        return self.annotations.names

    @property
    def images(self) -> list[str]:
        """The annotated image names, sorted."""
        return sorted(self.annotations)

    @property
    def source(self) -> str:
        """The annotation file."""
        return self.annotations.source


def load_landmark_set(
    images: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    *,
    spacing: Any = None,
    min_images: int = 1,
) -> LandmarkSet:
    """Read ``annotations`` and match them by name to the files in the folder ``images``.

    Every image gets a pixel spacing: the annotation file's (``spacing_mm`` or
    ``row_mm, col_mm`` columns, COCO ``pixel_spacing_mm``), else ``spacing`` (one number or
    a ``(row_mm, col_mm)`` pair, for every image without one in the file), else the image
    file's own (DICOM).

    Raises:
        InputNotFoundError: the annotation file or the folder does not exist, or an
            annotated image is not in the folder.
        LandmarkError: inconsistent landmark names between images, or points outside their image.
        InvalidArgumentError: fewer than ``min_images`` annotated images, or an unreadable file.
        SpacingError: an image without any pixel spacing (the message lists them and says
            how to give one).
    """
    from cephspine.io import load_image

    ann = read_annotations(annotations, images=images)
    src = Path(os.fspath(annotations))
    if len(ann) < min_images:
        raise InvalidArgumentError(f"{src}: {len(ann)} annotated image(s); at least {min_images} are needed")
    folder = Path(os.fspath(images))
    given = as_spacing(spacing, what="spacing")
    paths = {name: folder / name for name in ann}
    spacings: dict[str, Spacing] = {}
    lacking = []
    for name in sorted(ann):
        sp = ann.spacing.get(name) or given
        if sp is None:
            sp = load_image(paths[name]).spacing
        if sp is None:
            lacking.append(name)
        else:
            spacings[name] = Spacing(float(sp.row_mm), float(sp.col_mm))
    if lacking:
        shown = ", ".join(lacking[:8]) + (f" and {len(lacking) - 8} more" if len(lacking) > 8 else "")
        raise SpacingError(
            f"{src}: no pixel spacing for {len(lacking)} image(s) ({shown}); errors in mm need one: add a "
            "spacing_mm (or row_mm, col_mm) column to the annotations, give --spacing MM, or use DICOM files "
            "that carry PixelSpacing"
        )
    return LandmarkSet(ann, paths, spacings)


def split_images(images: Sequence[str], holdout: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """A seeded split of ``images`` into (training, held-out): ``holdout`` of them (rounded,
    at least one) held out, at least one left for training.

    Raises:
        InvalidArgumentError: fewer than two images, or ``holdout`` not in (0, 1).
    """
    if not 0 < holdout < 1:
        raise InvalidArgumentError(f"holdout must be between 0 and 1, got {holdout!r}")
    names = sorted(images)
    if len(names) < 2:
        raise InvalidArgumentError(f"{len(names)} image(s): training needs at least 2 (one is held out)")
    k = min(max(1, round(len(names) * holdout)), len(names) - 1)
    perm = np.random.default_rng(seed).permutation(len(names))
    val = sorted(names[i] for i in perm[:k])
    return [n for n in names if n not in val], val


def build_landmark_cache(ls: LandmarkSet, images: Sequence[str], cfg: StageConfig) -> Any:
    """Load, normalise and resample ``images`` of ``ls`` (a :class:`~cephspine.training.ceph.CephCache`);
    coarse images of different sizes are zero-padded to the largest (the padding is masked
    when the coarse stage is scored, as at inference)."""
    import torch.nn.functional as F

    from cephspine.io import load_image
    from cephspine.pipeline import prepare
    from cephspine.preprocess import normalize_intensity
    from cephspine.training.ceph import CephCache

    fine, coarse, xyf, xyo, fac, sizes, sps = [], [], [], [], [], [], []
    for name in images:
        sp = ls.spacing[name]
        rg = load_image(ls.paths[name], spacing=(sp.row_mm, sp.col_mm))
        f, c = prepare(normalize_intensity(rg.pixels), (sp.row_mm, sp.col_mm), cfg)
        xy = ls.annotations[name]
        fine.append(f.image.half())
        coarse.append(c)
        xyo.append(xy)
        xyf.append(f.to_resampled(xy))
        fac.append(f.factor_xy)
        sizes.append(f.size_hw)
        sps.append(sp.xy_mm)
    h = max(c.shape[-2] for c in coarse)
    w = max(c.shape[-1] for c in coarse)
    coarse = [F.pad(c, (0, w - c.shape[-1], 0, h - c.shape[-2])) for c in coarse]
    return CephCache(
        list(images), fine, torch.cat(coarse), np.stack(xyf), np.stack(xyo), np.stack(fac), sizes, np.stack(sps)
    )


def _landmark_axes(cfg: StageConfig) -> dict[str, dict[str, tuple[int, int]]]:
    """For each stage, the tensors whose shape depends on the number of landmarks: their
    landmark axis and how many other channels follow the landmarks' on it (e.g. the image
    channel of the context net's input), found by building the networks for one and for
    two landmarks."""
    one, two = dataclasses.replace(cfg, n_landmarks=1), dataclasses.replace(cfg, n_landmarks=2)
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for stage in ("coarse", "refine"):
        a = getattr(one, f"build_{stage}")().state_dict()
        b = getattr(two, f"build_{stage}")().state_dict()
        out[stage] = {}
        for k in a:
            axes = [ax for ax, (p, q) in enumerate(zip(a[k].shape, b[k].shape)) if p != q]
            if len(axes) == 1 and b[k].shape[axes[0]] == a[k].shape[axes[0]] + 1:
                out[stage][k] = (axes[0], a[k].shape[axes[0]] - 1)
            elif axes:  # not one channel per landmark: never copied
                out[stage][k] = (-1, 0)
    return out


def mapped_init(init_dir: Path, cfg: StageConfig, names: Sequence[str], run: Path) -> dict[str, Path]:
    """State dicts to start each stage from, taken from the model directory ``init_dir``.

    Tensors of the same shape are copied; the per-landmark channels of the output layers
    are copied for the landmarks whose names the model also has (by name, in the new
    order), and all others start fresh. Returns stage → saved state dict file in ``run``.

    Raises:
        ModelLoadError: ``init_dir`` is not a readable model directory.
    """
    from cephspine.registry import read_card
    from cephspine.training.ceph import init_state

    card = read_card(init_dir)
    src_names = [str(n) for n in card["landmarks"]]
    pos = {n: i for i, n in enumerate(src_names)}
    axes = _landmark_axes(cfg)
    files = {}
    for stage in ("coarse", "refine"):
        src = init_state(init_dir, stage)
        target = getattr(cfg, f"build_{stage}")().state_dict()
        state: dict[str, torch.Tensor] = {}
        for k, t in target.items():
            s = src.get(k)
            if s is None or s.ndim != t.ndim:
                continue
            if k not in axes[stage]:
                if s.shape == t.shape:
                    state[k] = s
                continue
            ax, extra = axes[stage][k]
            shared = [i for i, n in enumerate(names) if n in pos]
            same_rest = all(s.shape[d] == t.shape[d] for d in range(t.ndim) if d != ax)
            if ax < 0 or not shared or not same_rest or s.shape[ax] != len(src_names) + extra:
                continue
            # the landmarks' channels come first on the axis, then ``extra`` others
            into = shared + [len(names) + j for j in range(extra)]
            take = [pos[names[i]] for i in shared] + [len(src_names) + j for j in range(extra)]
            merged = t.clone()  # fresh values for the landmarks the model does not have
            picked = s.index_select(ax, torch.as_tensor(take))
            merged.index_copy_(ax, torch.as_tensor(into), picked.to(t.dtype))
            state[k] = merged
        files[stage] = run / f"init_{stage}.pt"
        torch.save(state, files[stage])
        fresh = sorted(set(target) - set(state))
        log.info("%s stage from %s except %s", stage, init_dir, ", ".join(fresh) or "nothing")
    return files


_SHOWN = {
    "annotations": "annotation file",
    "names": "landmark names",
    "train": "training images",
    "held_out": "held-out images",
    "config": "network settings",
    "init": "--init weights",
    "landmarks_sha256": "landmark positions",
    "spacing_mm": "pixel spacings",
}
"""How the error of :meth:`_Setup.check` names each field that differs."""


@dataclass(frozen=True)
class _Setup:
    """What a run folder was made for; a run resumes only for the same setup (the same
    annotation file and positions, pixel spacings, split, network settings, starting
    weights, epochs and steps: the learning-rate schedules depend on the last two)."""

    annotations: str
    names: list[str]
    train: list[str]
    held_out: list[str]
    config: dict[str, Any]
    init: str | None
    landmarks_sha256: str
    spacing_mm: dict[str, list[float]]
    epochs: int
    steps: int

    @classmethod
    def of(
        cls, ls: LandmarkSet, train: list[str], held_out: list[str], cfg: StageConfig, init: Path | None,
        epochs: int, steps: int,
    ) -> _Setup:  # fmt: skip
        """The setup of a run on ``ls``."""
        import hashlib

        h = hashlib.sha256()
        for image in ls.images:
            h.update(image.encode() + b"\0" + np.ascontiguousarray(ls.annotations[image], dtype=np.float64).tobytes())
        return cls(
            str(Path(ls.source).resolve()),
            list(ls.names),
            train,
            held_out,
            cfg.to_dict(),
            str(init.resolve()) if init else None,
            h.hexdigest(),
            {image: [sp.row_mm, sp.col_mm] for image, sp in sorted(ls.spacing.items())},
            epochs,
            steps,
        )

    def check(self, run: Path) -> None:
        f = run / "setup.json"
        mine = dataclasses.asdict(self)
        if f.is_file():
            theirs = json.loads(f.read_text(encoding="utf-8"))
            unrecorded = [k for k in mine if k not in theirs]
            if unrecorded:
                raise InvalidArgumentError(
                    f"{run}: holds a training run made by an earlier version, which did not record "
                    f"{', '.join(_SHOWN.get(k, k) for k in unrecorded)}; choose another --out or remove that folder"
                )
            if theirs != mine:
                diff = [
                    f"{k} ({theirs[k]} there, {mine[k]} now)"
                    if k in ("epochs", "steps") and k in theirs
                    else _SHOWN.get(k, k)
                    for k in mine
                    if theirs.get(k) != mine[k]
                ]
                raise InvalidArgumentError(
                    f"{run}: holds a training run made with other {', '.join(diff)}; choose another --out "
                    "or remove that folder"
                )
        else:
            run.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(mine, indent=1) + "\n", encoding="utf-8")


def train_landmarks(
    images: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    spacing: Any = None,
    init: str | os.PathLike[str] | None = None,
    epochs: int = 40,
    steps: int = 1500,
    holdout: float = 0.2,
    seed: int = 0,
    cfg: StageConfig | None = None,
    name: str = "custom",
    version: str = "0.1.0",
    threads: int | None = None,
) -> Path:
    """Train a model on the user's landmark set and write it to the model directory ``out``.

    Args:
        images: folder of the annotated images (matched by file name).
        annotations: COCO keypoints ``.json`` or ``.csv`` (see :func:`cephspine.read_annotations`).
        out: the model directory to write; training checkpoints go to ``out/training``
            (a run resumes from them when started again with the same data and settings).
        spacing: pixel spacing (mm) for the images that have none in the annotations.
        init: a model name (``"ceph"``) or directory to start both stages from (see
            :func:`mapped_init`); its network settings are used. ``None``: random weights.
        epochs, steps: coarse-stage epochs and refinement steps.
        holdout: the share of images held out (seeded by ``seed``; at least one) for the
            card's accuracy and the confidence calibration.
        cfg: network settings (default: ``init``'s, else :class:`~cephspine.pipeline.StageConfig`'s);
            ``n_landmarks`` is set from the annotations.
        name, version: the model's name and version in its card.
        threads: torch CPU threads.

    Returns:
        ``out``, loadable with ``Detector.from_pretrained(out)``.
    """
    from cephspine.registry import read_card, resolve
    from cephspine.training.ceph import train_coarse, train_refine

    if threads:
        torch.set_num_threads(threads)
    if epochs < 1 or steps < 1:
        raise InvalidArgumentError(f"epochs and steps must be at least 1, got {epochs} and {steps}")
    ls = load_landmark_set(images, annotations, spacing=spacing, min_images=2)
    train_ids, val_ids = split_images(ls.images, holdout, seed)
    init_dir = resolve(init) if init is not None else None
    if cfg is None:
        cfg = StageConfig.from_dict(read_card(init_dir)["config"]) if init_dir is not None else StageConfig()
    cfg = dataclasses.replace(cfg, n_landmarks=len(ls.names))
    out = Path(os.fspath(out))
    run = out / "training"
    _Setup.of(ls, train_ids, val_ids, cfg, init_dir, epochs, steps).check(run)
    (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    init_files = mapped_init(init_dir, cfg, ls.names, run) if init_dir is not None else {}
    train = build_landmark_cache(ls, train_ids, cfg)
    val = build_landmark_cache(ls, val_ids, cfg)
    train_coarse(train, val, cfg, run, epochs=epochs, init=init_files.get("coarse"))
    train_refine(train, cfg, run, steps=steps, init=init_files.get("refine"))
    _finalize(ls, run, out, cfg, train_ids, val_ids, name, version, init, epochs, steps)
    return out


def _finalize(
    ls: LandmarkSet, run: Path, out: Path, cfg: StageConfig, train_ids: list[str], val_ids: list[str],
    name: str, version: str, init: Any, epochs: int, steps: int,
) -> dict[str, Any]:  # fmt: skip
    """Write ``out``, evaluate it on ``val_ids``, calibrate its confidence there and write
    it again with the card's accuracy and calibration."""
    from cephspine.confidence import fit_calibrator
    from cephspine.detector import Detector
    from cephspine.registry import read_card, resolve
    from cephspine.training.export import write_model_dir
    from cephspine.training.finalize import cv_calibration

    coarse = torch.load(run / "coarse_final.pt", weights_only=True)
    refine = torch.load(run / "refine_final.pt", weights_only=True)
    spacings = np.array([[ls.spacing[i].row_mm, ls.spacing[i].col_mm] for i in train_ids])
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "anatomy": "custom",
        "landmarks": list(ls.names),
        "user_trained": True,
        "config": cfg.to_dict(),
        "architecture": (
            "coarse: CBAM U-Net (local appearance) x 7-layer dilated global-context net, "
            f"{cfg.coarse_mm:g} mm/px; refine: CBAM U-Net on {cfg.patch}x{cfg.patch} patches at {cfg.fine_mm:g} mm/px"
        ),
        "training_spacing_mm": float(np.median(spacings)),
        "detect_facing": False,
        "training": {
            "annotations": Path(ls.source).name,
            "train_images": len(train_ids),
            "held_out_images": f"{len(val_ids)} ({', '.join(val_ids)}): never trained on",
            "started_from": str(init) if init is not None else "random weights",
            "coarse_epochs": epochs,
            "refine_steps": steps,
        },
        "trained_images": list(train_ids),
        "notes": [USER_TRAINED_NOTE],
        "citations": [],
        "license_note": "User-trained model: its use is governed by the licence of the images it was trained on.",
    }
    if init is not None:  # the weights it started from were trained on images of their own
        inherited = read_card(resolve(init)).get("trained_ids")
        if isinstance(inherited, str):
            card["trained_ids"] = inherited
    write_model_dir(out, coarse, refine, card)  # uncalibrated first, to evaluate
    det = Detector.from_pretrained(out, device="cpu", register="never")
    with warnings.catch_warnings():  # e.g. low confidence: the card reports the numbers
        warnings.simplefilter("ignore")
        ev = evaluate_landmarks(det, ls, val_ids, progress=False)
    e = ev.errors_mm
    cv = cv_calibration(ev.features, e)
    cal = fit_calibrator(ev.features.reshape(-1, 3), e.ravel(), 2.0)
    card["confidence"] = cal.to_dict() | {
        "meaning": "probability that the landmark is within 2 mm of the annotation",
        "fitted_on": f"the {len(val_ids)} held-out image(s)",
        "cv_brier": cv["brier"],
        "cv_brier_constant_baseline": cv["brier_constant_baseline"],
        "cv_reliability": cv["reliability"],
    }
    card["metrics"] = {
        "data": f"{len(val_ids)} held-out image(s) of {Path(ls.source).name} (seeded split, never trained on)",
        "truth": f"the annotations in {Path(ls.source).name}",
        "n_images": len(val_ids),
        "held_out": list(val_ids),
        "mre_mm": float(e.mean()),
        "sd_mm": float(e.std()),
        **{f"sdr_{r:g}mm_pct": float(100 * (e <= r).mean()) for r in (2, 2.5, 3, 4)},
        "per_landmark_mre_mm": {n: float(v) for n, v in zip(ls.names, e.mean(axis=0))},
        "median_predict_s": float(np.median(ev.seconds)),
        "eval_machine": (
            f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        ),
    }
    write_model_dir(out, coarse, refine, card)
    write_frame(ev.per_image(), run / "held_out_predictions.csv", "held-out predictions")
    log.info("held-out MRE %.3f mm, SDR2 %.1f%% (%d images)", e.mean(), 100 * (e <= 2).mean(), len(val_ids))
    return card


def evaluate_landmarks(
    detector: Any, landmarks: LandmarkSet, images: Sequence[str] | None = None, progress: bool = True
) -> Any:
    """Run ``detector`` on the annotated images and measure radial errors (mm).

    Args:
        detector: a :class:`~cephspine.Detector` whose landmarks include every annotated one.
        landmarks: from :func:`load_landmark_set`.
        images: the image names to use (default: all, sorted).

    Returns:
        A :class:`~cephspine.evaluation.CephEvaluation` over the annotated landmarks
        (``table()``: MRE, SD, SDR at 2/2.5/3/4 mm, overall and per landmark).

    Raises:
        LandmarkError: an annotated landmark the model does not have.
    """
    from cephspine.evaluation import evaluate_items
    from cephspine.io import load_image

    names = landmarks.names
    model_names = list(detector.names)
    unknown = [n for n in names if n not in model_names]
    if unknown:
        raise LandmarkError(
            f"{landmarks.source}: landmark(s) {', '.join(unknown[:8])} are not among the model's "
            f"({', '.join(model_names[:8])}{'…' if len(model_names) > 8 else ''})"
        )
    chosen = landmarks.images if images is None else list(images)

    def items() -> Iterator[tuple[str, Any, np.ndarray, Any]]:
        for name in chosen:
            sp = landmarks.spacing[name]
            rg = load_image(landmarks.paths[name], spacing=(sp.row_mm, sp.col_mm))
            yield name, rg, landmarks.annotations[name], sp

    from cephspine.evaluation import with_training_warning

    ev = evaluate_items(
        detector, items(), names, [model_names.index(n) for n in names], progress=progress, total=len(chosen)
    )
    return with_training_warning(detector, ev)
