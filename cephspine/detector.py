"""``Detector``: load a shipped (or user-trained) model and predict landmarks on radiographs."""

from __future__ import annotations

import logging
import os
import time
import zipfile
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cephspine._warn import warn_caller
from cephspine.confidence import Calibrator
from cephspine.errors import (
    AnatomyWarning,
    CephspineError,
    DeviceError,
    ExperimentalModelWarning,
    ImageReadError,
    InvalidArgumentError,
    LevelWarning,
    LowConfidenceWarning,
    ModelLoadError,
    RegistrationWarning,
    SpacingError,
    SpacingWarning,
    WrongAnatomyWarning,
    is_out_of_memory,
)
from cephspine.pipeline import (
    StageConfig,
    StageOutput,
    coarse_stage,
    coarse_to_fine,
    fine_grid_hw,
    fine_to_coarse,
    for_inference,
    mirrored,
    prepare,
    refine_stage,
    unmirror_x,
)
from cephspine.plausibility import check_anatomy
from cephspine.prediction import Prediction
from cephspine.preprocess import normalize_intensity
from cephspine.radiograph import Radiograph, Spacing
from cephspine.registration import Template, register, warp_to_template
from cephspine.registry import (
    MAX_WEIGHTS_BYTES,
    TEMPLATE_FILE,
    WEIGHTS_FILE,
    experimental_status,
    read_card,
    resolve,
)
from cephspine.vertebrae import LevelRules, chain_doubt

log = logging.getLogger(__name__)

LOW_CONFIDENCE = 0.3
"""Landmarks whose confidence is below this are listed in a warning."""

REGISTER_MODES = ("auto", "always", "never")


MAX_FINE_SIDE_PX = 16384
"""Largest side of the resampled (fine) image; larger means an implausible spacing."""

MAX_FINE_PIXELS = 16_000_000
"""Largest area of the resampled (fine) image, pixels (a 4000 × 4000 grid: 80 cm square at
a cephalometric model's 0.2 mm); checked before resampling, as the grid and the networks'
activations grow with it."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else must name an available device.

    Raises:
        DeviceError: an unknown device, or CUDA requested without a CUDA GPU.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' requested but no CUDA GPU is available")
    return dev


_END_PRIOR_KEYS = ("end_prior", "end_prior_weight")


def _check_header(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """Compare the tensor names and shapes in a safetensors file's header with those the
    card's networks need (``shapes``, from networks built on the meta device), before any
    tensor is read or any network allocated.

    Raises:
        ModelLoadError: unreadable header, a tensor without a stage prefix, a missing or
            unexpected tensor, or another shape.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from None
    stray = sorted(k for k in found if not k.startswith(("coarse.", "refine.")))
    if stray:
        raise ModelLoadError(
            f"{path}: tensor(s) without a stage prefix (coarse. or refine.): {stray[:3]}{'…' if len(stray) > 3 else ''}"
        )
    _compare_shapes(path, shapes, found)


def _compare_shapes(path: Path, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    """Raise :class:`ModelLoadError` unless ``found`` has exactly the tensor names of
    ``expected``, each of the expected shape."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"{path}: weights do not match the architecture in the card "
            f"(missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''})"
        )
    for k, shape in expected.items():
        if found[k] != shape:
            raise ModelLoadError(f"{path}: tensor {k} has shape {found[k]}, expected {shape}")


def _load_state(path: Path, prefix: str, net: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = net.state_dict()
    sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    _compare_shapes(
        path,
        {prefix + k: tuple(v.shape) for k, v in expected.items()},
        {prefix + k: tuple(v.shape) for k, v in sub.items()},
    )
    for k, v in sub.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ModelLoadError(f"{path}: tensor {prefix}{k} holds NaN or infinite values")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in sub.items()})


class Detector:
    """A landmark detector (coarse appearance-context net + full-resolution refinement).

    Create it with :meth:`from_pretrained`; call :meth:`predict` on a path, a DICOM file,
    a numpy array or a :class:`~cephspine.Radiograph`.

    Example:
        >>> det = Detector.from_pretrained("ceph")            # doctest: +SKIP
        >>> pred = det.predict("ceph.jpg")                     # doctest: +SKIP
        >>> pred.xy_mm[0]                                      # sella, mm  # doctest: +SKIP
    """

    def __init__(
        self,
        card: dict[str, Any],
        coarse: torch.nn.Module,
        refine: torch.nn.Module,
        device: torch.device,
        directory: Path | None = None,
        template: Template | None = None,
        register: str = "auto",
    ) -> None:
        if register not in REGISTER_MODES:
            raise InvalidArgumentError(f"register must be one of {REGISTER_MODES}, got {register!r}")
        self.card = card
        self.config = StageConfig.from_dict(card["config"])
        self.names: tuple[str, ...] = tuple(card["landmarks"])
        self.calibrator = Calibrator.from_dict(card["confidence"]) if "confidence" in card else None
        if self.calibrator is not None and len(self.calibrator.coef) != 4:
            raise ModelLoadError("confidence.coef must have 4 values")
        offsets = None if self.calibrator is None else self.calibrator.landmark_offsets
        if offsets is not None and len(offsets) != len(self.names):
            raise ModelLoadError(f"confidence.landmark_offsets must have {len(self.names)} values, one per landmark")
        self.device = device
        self.directory = directory
        self.coarse = for_inference(coarse, device)
        self.refine = for_inference(refine, device)
        self.training_spacing_mm = float(card.get("training_spacing_mm", 0.1))
        self.detect_facing = bool(card.get("detect_facing", True))
        self.facing_clear_peak = float(card.get("facing", {}).get("skip_mirror_at_mean_coarse_peak", np.inf))
        """A first coarse pass whose mean heatmap peak reaches this is taken as facing the
        training direction and the mirror image is not run (``inf``: always run both)."""
        self.template = template
        self.register = register if template is not None else "never"
        self.load_options: dict[str, Any] = {"register": register}
        """Keyword options of :meth:`from_pretrained` that rebuild this detector from
        :attr:`directory` (how distributed cohort workers load it)."""
        self._status = experimental_status(card)
        self.experimental = self._status is not None
        """The card marks this model experimental (below its accuracy targets); every
        prediction says so in its warnings."""
        reg = card.get("registration", {})
        self.register_below_peak = float(reg.get("auto_below_mean_coarse_peak", 0.0))
        self.level_rules = LevelRules.from_dict(card["levels"]) if "levels" in card else None
        """Vertebra models: when the chain's ends are not found or ambiguous (card ``levels``)."""

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike[str] = "ceph",
        *,
        device: str | torch.device = "auto",
        register: str = "auto",
        end_prior: bool = True,
        refine_flip: bool = True,
    ) -> Detector:
        """Load a model by name (``"ceph"``) or from a directory with ``model.safetensors``
        and ``card.json``. Weights are read with safetensors only (never pickle).

        Args:
            name_or_dir: a known model name or a model directory.
            device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ...
            register: template registration before the coarse stage: ``"auto"`` (only when
                the unregistered coarse heatmaps are weak, i.e. an unusual pose or scanner),
                ``"always"``, or ``"never"``. Needs a template in the model directory.
            end_prior: spine models with an end prior in their card (``config.end_prior``)
                choose the first and last vertebra by peak strength and by where T1 and L5
                lie in the training images; ``False`` decodes by peak strength alone (for
                images whose field of view differs from the training images', e.g. a
                full-length radiograph with the skull or the pelvis in view).
            refine_flip: spine models with ``config.refine_flip`` in their card refine each
                vertebra on its patch and on the patch's mirror image and average the two;
                ``False`` uses the patch alone (about half the refinement time, slightly
                less accurate).

        Raises:
            UnknownModelError: unknown name (the message lists the known ones).
            ModelLoadError: missing files, or tensors that do not match the card.
            DeviceError: ``device`` is unknown or not available.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if register not in REGISTER_MODES:
            raise InvalidArgumentError(f"register must be one of {REGISTER_MODES}, got {register!r}")
        for flag, value in (("end_prior", end_prior), ("refine_flip", refine_flip)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, not {value!r}")
        dev = resolve_device(device)
        directory = resolve(name_or_dir)
        card = read_card(directory)
        wpath = directory / WEIGHTS_FILE
        if not wpath.is_file():
            raise ModelLoadError(f"{wpath}: weights file missing")
        if wpath.stat().st_size > MAX_WEIGHTS_BYTES:
            raise ModelLoadError(
                f"{wpath}: {wpath.stat().st_size / 2**20:.0f} MiB, more than the limit of "
                f"{MAX_WEIGHTS_BYTES // 2**20} MiB for a weights file"
            )
        if not end_prior and isinstance(card.get("config"), dict) and "end_prior" in card["config"]:
            card = card | {"config": {k: v for k, v in card["config"].items() if k not in _END_PRIOR_KEYS}}
        if not refine_flip and isinstance(card.get("config"), dict) and card["config"].get("refine_flip"):
            card = card | {"config": card["config"] | {"refine_flip": False}}
        try:
            cfg = StageConfig.from_dict(card["config"])
            if len(card["landmarks"]) != cfg.n_landmarks:
                n_names = len(card["landmarks"])
                raise ModelLoadError(
                    f"{directory / 'card.json'}: {n_names} landmark names for {cfg.n_landmarks} outputs"
                )
            with torch.device("meta"):  # shapes only: nothing allocated before they match the weights
                shapes = {
                    f"{stage}.{k}": tuple(v.shape)
                    for stage, net in (("coarse", cfg.build_coarse()), ("refine", cfg.build_refine()))
                    for k, v in net.state_dict().items()
                }
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"{directory / 'card.json'}: invalid config ({exc})") from None
        _check_header(wpath, shapes)
        try:
            tensors = load_file(str(wpath))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{wpath}: not a readable safetensors file ({exc})") from None
        coarse, refine = cfg.build_coarse(), cfg.build_refine()
        _load_state(wpath, "coarse.", coarse, tensors)
        _load_state(wpath, "refine.", refine, tensors)
        template = None
        tpath = directory / TEMPLATE_FILE
        if tpath.is_file():
            try:
                with np.load(tpath, allow_pickle=False) as z:
                    template = Template(z["image"].astype(np.float32), z["mask"].astype(bool))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise ModelLoadError(f"{tpath}: unreadable registration template ({exc})") from None
        try:
            det = cls(card, coarse, refine, dev, directory, template, register)
            det.load_options = {"register": register, "end_prior": end_prior, "refine_flip": refine_flip}
        except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
            raise ModelLoadError(
                f"{directory / 'card.json'}: invalid confidence or registration entry ({exc})"
            ) from None
        if det.experimental:
            warn_caller(det.experimental_note, ExperimentalModelWarning)
        return det

    @property
    def experimental_note(self) -> str:
        """One line on the model's experimental status ("" for a regular model)."""
        if self._status is None:
            return ""
        return f"model {self.name} {self.version} is experimental: {self._status}"

    def __repr__(self) -> str:
        return f"Detector({self.name} {self.version}, {len(self.names)} landmarks, device={self.device})"

    def _radiograph(self, image: Any, spacing: Any) -> Radiograph:
        from cephspine.io import load_image

        return load_image(image, spacing=spacing)

    def predict(self, image: Any, *, spacing: Any = None) -> Prediction:
        """Predict the landmarks of one radiograph.

        Args:
            image: path (JPEG/PNG/TIFF/DICOM), ``(H, W)`` array, or :class:`~cephspine.Radiograph`.
            spacing: optional pixel spacing in mm (number or ``(row_mm, col_mm)``),
                overriding the file's.

        Returns:
            A :class:`~cephspine.Prediction` in original-image pixels (and mm when the
            spacing is known). Without spacing the image is assumed to have the training
            data's pixel size for resampling, and a :class:`SpacingWarning` is issued.
            Landmarks that do not look like the model's anatomy (many of low confidence,
            far from its training shapes: :mod:`cephspine.plausibility`) give a
            :class:`WrongAnatomyWarning`. Every warning is also in its ``warnings``.
        """
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        rg = self._radiograph(image, spacing)
        timings["load_s"] = time.perf_counter() - t0
        return self._predict_radiograph(rg, timings)

    def _predict_radiograph(self, rg: Radiograph, timings: dict[str, float]) -> Prediction:
        try:
            return self._predict_unguarded(rg, timings)
        except RuntimeError as exc:
            if is_out_of_memory(exc):  # torch's CPU allocator failure: say what it is, and for which film
                raise MemoryError(f"{rg.name}: out of memory while predicting ({exc})") from exc
            raise

    def _check_grid(self, rg: Radiograph, sp: Spacing) -> None:
        """Refuse, before resampling, an image whose fine grid would exceed
        :data:`MAX_FINE_SIDE_PX` or :data:`MAX_FINE_PIXELS` (an implausible spacing, or for
        a fixed-height model an extreme aspect ratio)."""
        nh, nw = fine_grid_hw((rg.height, rg.width), (sp.row_mm, sp.col_mm), self.config)
        if max(nh, nw) <= MAX_FINE_SIDE_PX and nh * nw <= MAX_FINE_PIXELS:
            return
        limits = f"the limits are {MAX_FINE_SIDE_PX} px a side and {MAX_FINE_PIXELS / 1e6:.0f} million px"
        if self.config.fine_height_px:
            raise ImageReadError(
                rg.source or rg.name,
                f"a {rg.height}x{rg.width} px image resampled to {nh} px high would be {nw} px wide ({limits}); "
                "is it a radiograph?",
            )
        how = "assumed" if rg.spacing is None else "given"
        raise SpacingError(
            f"{rg.name}: pixel spacing {sp.row_mm:g} x {sp.col_mm:g} mm ({how}) makes the {rg.height}x{rg.width} px "
            f"image {rg.height * sp.row_mm / 1000:.2f} x {rg.width * sp.col_mm / 1000:.2f} m, a fine grid of {nh}x{nw} "
            f"px at this model's {self.config.fine_mm:g} mm ({limits}); check the spacing (mm per pixel), or crop the "
            "film"
        )

    def _predict_unguarded(self, rg: Radiograph, timings: dict[str, float]) -> Prediction:
        cfg = self.config
        # said once when the model is loaded, and kept with every prediction
        msgs: list[str] = [f"{rg.name}: {self.experimental_note}"] if self.experimental else []
        t = time.perf_counter()
        if cfg.fine_height_px:  # a spacing-free model (spine): resampled to a fixed height
            sp = rg.spacing or Spacing(1.0, 1.0)
        elif rg.spacing is None:
            sp = Spacing(self.training_spacing_mm, self.training_spacing_mm)
            msgs.append(
                f"{rg.name}: pixel spacing unknown; assumed {self.training_spacing_mm:g} mm for "
                "resampling, millimetre outputs unavailable"
            )
            warn_caller(msgs[-1], SpacingWarning)
        else:
            sp = rg.spacing
        self._check_grid(rg, sp)
        fine, coarse_img = prepare(normalize_intensity(rg.pixels), (sp.row_mm, sp.col_mm), cfg)
        timings["preprocess_s"] = time.perf_counter() - t
        t = time.perf_counter()
        mirror = False
        ends: list[dict[str, float]] = []
        c_all, p_all = coarse_stage(self.coarse, coarse_img, cfg, self.device, fine.size_hw, info=ends)
        c_xy, c_peak = c_all[0], p_all[0]
        facing: dict[str, Any] = {"peak": float(c_peak.mean()), "mirror_peak": None}
        # the mirror image runs only when the film is not clearly facing the training direction
        if self.detect_facing and facing["peak"] < self.facing_clear_peak:
            fine_m, coarse_m = mirrored(fine, cfg)
            m_xy, m_peak = coarse_stage(self.coarse, coarse_m, cfg, self.device, fine.size_hw)
            facing["mirror_peak"] = float(m_peak.mean())
            mirror = facing["mirror_peak"] > facing["peak"]
            if mirror:
                c_xy, c_peak = m_xy[0], m_peak[0]
                fine, coarse_img = fine_m, coarse_m
        timings["coarse_s"] = time.perf_counter() - t
        registration: dict[str, Any] = {"used": False}
        if self.register == "always" or (self.register == "auto" and float(c_peak.mean()) < self.register_below_peak):
            t = time.perf_counter()
            c_xy, c_peak, registration = self._registered_coarse(coarse_img, c_xy, c_peak)
            timings["registration_s"] = time.perf_counter() - t
            if registration.get("reason"):
                msgs.append(f"{rg.name}: registration failed ({registration['reason']}); unregistered path used")
                warn_caller(msgs[-1], RegistrationWarning)
        t = time.perf_counter()
        r_xy, r_peak = refine_stage(self.refine, fine, c_xy, cfg, self.device)
        timings["refine_s"] = time.perf_counter() - t
        if mirror:
            c_xy, r_xy = unmirror_x(c_xy, fine.size_hw[1]), unmirror_x(r_xy, fine.size_hw[1])
        # positions stay on the image (a padded border can attract a weak heatmap)
        xy = np.clip(fine.to_original(r_xy), 0.0, np.array([rg.width - 1, rg.height - 1], dtype=np.float64))
        stages = StageOutput(xy, fine.to_original(c_xy), c_peak, r_peak)
        # the coarse-to-refined shift is measured in mm, or in fine pixels for spacing-free models
        feats = stages.features(fine.factor_xy if cfg.fine_height_px else sp.xy_mm)
        conf = self.calibrator(feats) if self.calibrator is not None else np.clip(r_peak, 0.0, 1.0)
        if self.card.get("anatomy") == "spine":
            conf = self._spine_sanity(xy, conf, rg.name, msgs)
        # the wrong-anatomy score was fitted on confidences before any level doubt scaled them
        check = check_anatomy(self.card.get("anatomy"), self.names, xy, conf, self.card.get("wrong_anatomy_threshold"))
        if self.card.get("anatomy") == "spine" and self.level_rules is not None and ends and not mirror:
            conf = self._spine_levels(c_peak, ends[0], conf, rg.name, msgs)
        low = [n for n, c in zip(self.names, conf) if c < LOW_CONFIDENCE]
        if low:
            msgs.append(f"{rg.name}: low confidence for {', '.join(low)}")
            warn_caller(msgs[-1], LowConfidenceWarning)
        if check is not None and check.wrong_anatomy:
            msgs.append(check.message(rg.name))
            warn_caller(msgs[-1], WrongAnatomyWarning)
        return Prediction(
            names=self.names,
            xy_px=xy,
            confidence=conf,
            image_shape=rg.shape,
            spacing=rg.spacing,
            model=self.name,
            model_version=self.version,
            source=rg.name if rg.source is not None else None,
            warnings=tuple(msgs),
            meta={
                "mirrored": mirror,
                "wrong_anatomy": bool(check is not None and check.wrong_anatomy),
                "facing": facing,
                "registration": registration,
                "spacing_source": rg.spacing_source,
                "timings": timings,
                "decoding": {
                    "end_prior": cfg.end_prior is not None,
                    "refine_flip": cfg.refine_flip,
                    **({"beyond_ends": ends[0]} if ends and not mirror else {}),
                },
                "features": {
                    "refine_peak": r_peak.tolist(),
                    "coarse_peak": c_peak.tolist(),
                    "shift_mm": feats[:, 2].tolist(),
                },
            },
        )

    def _spine_sanity(self, xy: np.ndarray, conf: np.ndarray, name: str, msgs: list[str]) -> np.ndarray:
        """Vertebrae must come out top to bottom as proper quadrilaterals (corners in
        TL, TR, BL, BR order); the corners of any vertebra that does not get a confidence of
        at most half the low-confidence threshold, and an :class:`AnatomyWarning`."""
        from cephspine.geometry.cobb import vertebra_validity

        quads = xy.reshape(17, 4, 2)
        bad = ~vertebra_validity(xy)
        centre_y = quads[..., 1].mean(axis=1)
        out_of_order = np.zeros(17, dtype=bool)
        out_of_order[1:] |= np.diff(centre_y) <= 0
        out_of_order[:-1] |= np.diff(centre_y) <= 0
        flagged = bad | out_of_order
        if not flagged.any():
            return conf
        conf = conf.copy().reshape(17, 4)
        conf[flagged] = np.minimum(conf[flagged], LOW_CONFIDENCE / 2)
        from cephspine.anatomy import VERTEBRAE

        names = [v for v, f in zip(VERTEBRAE, flagged) if f]
        msgs.append(f"{name}: implausible vertebra shape or order for {', '.join(names)}")
        warn_caller(msgs[-1], AnatomyWarning)
        return conf.ravel()

    def _spine_levels(
        self, c_peak: np.ndarray, ends: dict[str, float], conf: np.ndarray, name: str, msgs: list[str]
    ) -> np.ndarray:
        """Say when the chain cannot be trusted (:func:`cephspine.vertebrae.chain_doubt`):
        vertebrae not found get a confidence of at most half the low-confidence threshold,
        and every confidence of a doubtful chain is scaled by the rules' factor (the names
        come from counting, so they may all be shifted); a :class:`LevelWarning` says why."""
        from cephspine.anatomy import VERTEBRAE

        assert self.level_rules is not None
        n = len(VERTEBRAE)
        prob = np.asarray(c_peak, dtype=np.float64).reshape(n, 4)[:, 0]
        doubt = chain_doubt(prob, ends["above"], ends["below"], self.level_rules)
        if not doubt.any:
            return conf
        conf = conf.copy().reshape(n, 4) * self.level_rules.doubt_confidence
        parts = []
        if doubt.missing:
            conf[list(doubt.missing)] = np.minimum(conf[list(doubt.missing)], LOW_CONFIDENCE / 2)
            names = ", ".join(VERTEBRAE[i] for i in doubt.missing)
            parts.append(f"{names} not found in the film (cut off, covered or missed; their corners are placeholders)")
        ends_ = [w for w, f in (("above T1", doubt.ambiguous_top), ("below L5", doubt.ambiguous_bottom)) if f]
        if ends_:
            parts.append(f"a vertebra-like peak {' and '.join(ends_)} is almost as strong as the chain's end")
        msgs.append(f"{name}: vertebra levels uncertain: {'; '.join(parts)}; every vertebra name may be shifted")
        warn_caller(msgs[-1], LevelWarning)
        return conf.ravel()

    def _registered_coarse(
        self, coarse_img: torch.Tensor, c_xy: np.ndarray, c_peak: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Register the coarse image to the template and run the coarse stage there.

        Returns the coarse positions (fine pixels) and peaks to use, and a summary. The
        registered result replaces the unregistered one when registration passed its checks
        and (in ``"auto"`` mode) its heatmaps are stronger.
        """
        assert self.template is not None
        cfg = self.config
        moving = coarse_img[0, 0].numpy()
        res = register(moving, self.template)
        info: dict[str, Any] = {
            "used": False,
            "ok": res.ok,
            "metric": res.metric,
            "seconds": res.seconds,
            "matrix": res.matrix.tolist(),
        }
        if not res.ok:
            info["reason"] = res.reason
            return c_xy, c_peak, info
        warped = warp_to_template(moving, res, self.template.image.shape)
        h, w = warped.shape
        ph, pw = (-h) % (cfg.pad_multiple // cfg.coarse_pool), (-w) % (cfg.pad_multiple // cfg.coarse_pool)
        x = torch.nn.functional.pad(torch.from_numpy(warped)[None, None], (0, pw, 0, ph))
        r_xy, r_peak = coarse_stage(self.coarse, x, cfg, self.device, (h * cfg.coarse_pool, w * cfg.coarse_pool))
        r_coarse_img = res.to_image(fine_to_coarse(r_xy[0], cfg.coarse_pool))
        if self.register == "always" or r_peak[0].mean() > c_peak.mean():
            info["used"] = True
            return coarse_to_fine(r_coarse_img, cfg.coarse_pool), r_peak[0], info
        return c_xy, c_peak, info

    def predict_batch(self, images: Iterable[Any], *, spacing: Any = None, prefetch: int = 2) -> list[Prediction]:
        """Predict several images (see :meth:`predict`); the model is loaded once.

        ``spacing`` (optional) applies to every image, overriding the files' spacings.
        Images are decoded in a background thread while the network runs on the previous
        one (at most ``prefetch`` decoded images wait in memory). The first bad image
        raises; use :meth:`predict_iter` with ``errors="return"`` (or
        :func:`cephspine.cohort`) to keep going past bad images.
        """
        out = list(self.predict_iter(images, spacing=spacing, prefetch=prefetch))
        return [p for p in out if isinstance(p, Prediction)]

    def predict_iter(
        self, images: Iterable[Any], *, spacing: Any = None, prefetch: int = 2, errors: str = "raise"
    ) -> Iterator[Prediction | CephspineError]:
        """Stream predictions in input order, decoding ahead in a background thread.

        Memory stays bounded: at most ``prefetch`` decoded images wait while one is
        being predicted, whatever the number of images.

        Args:
            images: paths, arrays or radiographs (any iterable, consumed lazily).
            spacing: optional pixel spacing for every image.
            prefetch: images decoded ahead (0: decode in the calling thread).
            errors: ``"raise"`` (stop at the first bad image) or ``"return"`` (yield the
                :class:`CephspineError` in the bad image's place and go on).
        """
        if errors not in ("raise", "return"):
            raise InvalidArgumentError(f"errors must be 'raise' or 'return', got {errors!r}")

        def load(item: Any) -> Radiograph | CephspineError:
            try:
                return self._radiograph(item, spacing)
            except CephspineError as exc:
                return exc

        if prefetch <= 0:
            loaded: Generator[Radiograph | CephspineError, None, None] = (load(i) for i in images)
        else:
            loaded = _prefetched(load, images, prefetch)
        try:
            for item in loaded:
                if isinstance(item, CephspineError):
                    if errors == "raise":
                        raise item
                    yield item
                    continue
                try:
                    yield self._predict_radiograph(item, {})
                except CephspineError as exc:
                    if errors == "raise":
                        raise
                    yield exc
        finally:  # stop the decoding thread here and now, not whenever the garbage collector runs
            loaded.close()


def _prefetched(fn: Any, items: Iterable[Any], depth: int) -> Generator[Any, None, None]:
    """``fn(item)`` for each item, computed up to ``depth`` items ahead in one worker thread.

    Closing the generator early cancels the queued items without waiting for the worker
    (which ends after its current item), so that closing never blocks: not even when the
    garbage collector closes it in whatever thread it runs in.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cephspine-load")
    try:
        pending: deque[Any] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
