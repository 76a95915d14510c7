"""Two-stage inference: a coarse appearance-context net on the whole image, then a
full-resolution refinement net on a patch around each coarse estimate.

The stage parameters (pixel sizes, patch size, network widths) travel with the weights in
the model card (``card.json``, key ``"config"``) and are read into :class:`StageConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from cephspine.heatmaps import decode
from cephspine.models import AppearanceContextNet
from cephspine.models.blocks import fold_batch_norm
from cephspine.models.vertebra import VertebraCentreNet
from cephspine.preprocess import Resampled, crop_patches, resample
from cephspine.vertebrae import CORNER_FLIP, END_PRIOR_WEIGHT, decode_vertebrae, vertebra_frames

_VERTEBRA_REFINE_FIELDS = ("refine_target", "refine_max_width_px", "refine_angle_sd_deg")

_INT_RANGES = {
    "n_landmarks": (1, 1024), "coarse_pool": (1, 16), "pad_multiple": (1, 4096), "coarse_base": (1, 128),
    "coarse_depth": (1, 6), "context_width": (1, 1024), "context_stride": (1, 64), "patch": (8, 512),
    "refine_base": (1, 128), "refine_depth": (1, 6), "fine_height_px": (64, 8192), "min_width_px": (1, 8192),
}  # fmt: skip
"""Accepted ranges of the whole-number fields (a card is checked before any network is
built: a hostile ``"coarse_base": 4096`` must not allocate gigabytes)."""

_FLOAT_RANGES = {
    "fine_mm": (0.01, 5.0), "sigma_px": (0.1, 100.0), "coarse_sigma_px": (0.1, 100.0),
    "refine_offset_sd_px": (0.0, 1000.0), "refine_max_width_px": (1.0, 10_000.0),
    "refine_angle_sd_deg": (0.0, 90.0), "end_prior_weight": (0.0, 1e6),
}  # fmt: skip
"""Accepted ranges of the real-valued fields (finite: NaN fails every comparison)."""

_OPTIONAL = ("coarse_sigma_px", "fine_height_px", "min_width_px")


@dataclass(frozen=True)
class StageConfig:
    """Geometry and network sizes of a two-stage landmark model."""

    n_landmarks: int = 19
    fine_mm: float = 0.2
    """Pixel size of the refinement stage's grid, mm."""
    coarse_pool: int = 4
    """The coarse grid is the fine grid average-pooled by this factor."""
    pad_multiple: int = 64
    """The fine image is padded to a multiple of this (coarse_pool × 2**coarse_depth)."""
    sigma_px: float = 5.0
    """Gaussian target σ in each stage's own pixels."""
    coarse_sigma_px: float | None = None
    """When set, the coarse stage's target σ (coarse pixels) instead of ``sigma_px``."""
    coarse_base: int = 16
    coarse_depth: int = 4
    context_width: int = 128
    context_stride: int = 8
    context_kernel: tuple[int, int] = (3, 3)
    patch: int = 64
    refine_base: int = 16
    refine_depth: int = 3
    refine_offset_sd_px: float = 10.0
    """Training: s.d. of the random shift of a patch centre from the true point (for
    vertebra patches: from the mean of the true corners), fine px."""
    fine_height_px: int | None = None
    """When set, images are resampled so that their height is this many fine pixels
    (aspect ratio kept, pixel spacing ignored): for images without a spacing (spine)."""
    min_width_px: int | None = None
    """When set, narrower fine images are padded on the right to this width: the canvas
    the coarse stage was trained on (its global context sees the same frame)."""
    coarse_target: str = "landmarks"
    """What the coarse stage finds: ``"landmarks"`` (one heatmap per landmark) or
    ``"vertebrae"`` (vertebra centres with corner offsets, identity from top-to-bottom
    order; ``n_landmarks`` is then 4 per vertebra)."""
    coarse_levels: bool = False
    """Vertebra models: the coarse net also regresses each pixel's spine level, and the
    decoder assigns peaks to vertebrae by order *and* level (see
    :func:`cephspine.vertebrae.decode_vertebrae`)."""
    refine_target: str = "landmarks"
    """What a refinement patch holds: ``"landmarks"`` (one patch per landmark, centred on
    its coarse estimate, read from that landmark's output channel) or ``"vertebrae"`` (one
    ``patch``-sized patch per vertebra, centred on its four coarse corners and rotated so
    that their endplates are level; four output channels TL, TR, BL, BR place the corners
    together; see :func:`cephspine.vertebrae.vertebra_frames`)."""
    refine_max_width_px: float = 90.0
    """Vertebra refinement: a vertebra wider than this (fine px, measured on the corners the
    patch is framed by: the coarse ones at inference, the true ones in training) is sampled
    at a coarser scale so that it spans this many patch pixels."""
    refine_angle_sd_deg: float = 5.0
    """Training of the vertebra refinement: s.d. of the random error of a patch's angle."""
    refine_flip: bool = False
    """Vertebra refinement: also refine each patch mirrored left-right (corner channels
    swapped back) and average the two log-probability maps before decoding."""
    end_prior: tuple[float, float, float, float] | None = None
    """Vertebra models: where the first and the last vertebra's centres lie in the training
    images, ``(top_mean, top_sd, bottom_mean, bottom_sd)`` as fractions of the image height
    (:func:`cephspine.vertebrae.fit_end_prior`). When set, the decoder chooses the chain's
    ends by peak strength *and* position (:func:`cephspine.vertebrae.choose_chain`): it
    assumes the training images' field of view (for AASCE, T1 near the top edge and L5 about
    a tenth of the height above the bottom)."""
    end_prior_weight: float = END_PRIOR_WEIGHT
    """Weight of the end prior's position log-likelihoods in the decoding (used only with an
    end prior)."""

    def __post_init__(self) -> None:
        for name, (lo, hi) in _INT_RANGES.items():
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and lo <= v <= hi):
                raise ValueError(f"{name} must be a whole number from {lo} to {hi}, not {v!r}")
        for name, (flo, fhi) in _FLOAT_RANGES.items():
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if not (isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and flo <= float(v) <= fhi):
                raise ValueError(f"{name} must be a finite number from {flo:g} to {fhi:g}, not {v!r}")
        k = self.context_kernel
        if not (len(k) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 15 for v in k)):
            raise ValueError(f"context_kernel must be two whole numbers from 1 to 15, not {k!r}")
        unet = self.coarse_pool * 2**self.coarse_depth
        if self.pad_multiple % unet:
            raise ValueError(
                f"pad_multiple {self.pad_multiple} must be a multiple of coarse_pool x 2**coarse_depth = {unet}"
            )
        if self.patch % 2**self.refine_depth:
            raise ValueError(f"patch {self.patch} must be a multiple of 2**refine_depth = {2**self.refine_depth}")
        if self.coarse_target not in ("landmarks", "vertebrae"):
            raise ValueError(f"coarse_target must be 'landmarks' or 'vertebrae', not {self.coarse_target!r}")
        if self.coarse_target == "vertebrae" and self.n_landmarks % 4:
            raise ValueError(f"a vertebra model has 4 corners per vertebra, not {self.n_landmarks} landmarks")
        if self.coarse_levels and self.coarse_target != "vertebrae":
            raise ValueError("coarse_levels needs coarse_target='vertebrae'")
        if self.refine_target not in ("landmarks", "vertebrae"):
            raise ValueError(f"refine_target must be 'landmarks' or 'vertebrae', not {self.refine_target!r}")
        if self.refine_target == "vertebrae" and self.n_landmarks % 4:
            raise ValueError(f"vertebra refinement needs 4 corners per vertebra, not {self.n_landmarks} landmarks")
        for name in ("coarse_levels", "refine_flip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if self.refine_flip and self.refine_target != "vertebrae":
            raise ValueError("refine_flip needs refine_target='vertebrae'")
        if not (np.isfinite(self.end_prior_weight) and self.end_prior_weight >= 0):
            raise ValueError(f"end_prior_weight must be finite and >= 0, not {self.end_prior_weight}")
        if self.end_prior is not None:
            if self.coarse_target != "vertebrae" or self.coarse_levels:
                raise ValueError("end_prior needs coarse_target='vertebrae' without coarse_levels")
            if self.n_landmarks < 8:
                raise ValueError(f"end_prior needs at least 2 vertebrae (8 landmarks), not {self.n_landmarks}")
            p = self.end_prior
            if len(p) != 4 or not (
                np.isfinite(p).all() and 0 <= p[0] <= 1 and 0 <= p[2] <= 1 and p[1] > 0 and p[3] > 0
            ):
                raise ValueError(
                    f"end_prior must be (top mean, top sd, bottom mean, bottom sd) with means in [0, 1] "
                    f"and sds > 0: {p}"
                )

    @property
    def coarse_mm(self) -> float:
        return self.fine_mm * self.coarse_pool

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON types; the vertebra-refinement fields only when one is set,
        ``refine_flip`` only when true, the end-prior fields only when set (so that older
        cards read the same as before those fields existed)."""
        d = asdict(self)
        d["context_kernel"] = list(self.context_kernel)
        if not self.refine_flip:
            del d["refine_flip"]
        if self.end_prior is None and self.end_prior_weight == END_PRIOR_WEIGHT:
            del d["end_prior"], d["end_prior_weight"]
        elif self.end_prior is None:
            del d["end_prior"]
        else:
            d["end_prior"] = list(self.end_prior)
        if self.refine_target == "landmarks":
            defaults = StageConfig()
            for k in _VERTEBRA_REFINE_FIELDS:
                if d[k] == getattr(defaults, k):
                    del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        kw = dict(d)
        if "context_kernel" in kw:
            kw["context_kernel"] = tuple(kw["context_kernel"])
        if kw.get("end_prior") is not None:
            kw["end_prior"] = tuple(float(v) for v in kw["end_prior"])
        return cls(**kw)

    def build_coarse(self) -> torch.nn.Module:
        if self.coarse_target == "vertebrae":
            return VertebraCentreNet(
                self.coarse_base,
                self.coarse_depth,
                self.context_width,
                self.context_kernel,
                self.context_stride,
                levels=self.coarse_levels,
            )
        return AppearanceContextNet(
            self.n_landmarks,
            base=self.coarse_base,
            depth=self.coarse_depth,
            context=True,
            context_width=self.context_width,
            context_kernel=self.context_kernel,
            context_stride=self.context_stride,
        )

    @property
    def refine_outputs(self) -> int:
        """Output channels of the refinement net: one per landmark, or per vertebra corner."""
        return 4 if self.refine_target == "vertebrae" else self.n_landmarks

    def build_refine(self) -> AppearanceContextNet:
        return AppearanceContextNet(self.refine_outputs, base=self.refine_base, depth=self.refine_depth, context=False)


def for_inference(net: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
    """``net``, converted in place for inference: eval mode, batch norms folded into their
    convolutions (:func:`~cephspine.models.blocks.fold_batch_norm`; the net cannot be trained
    afterwards), on ``device`` with channels-last weights, oneDNN's fast path for these
    convolutions on CPUs (about 1.5× faster for the refinement net). Outputs are the same to
    float rounding; the stages feed it channels-last inputs."""
    net = fold_batch_norm(net.eval())
    return net.to(device=device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def _net_input(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    return x.to(device=device, memory_format=torch.channels_last)


REFINE_CPU_PIXELS = 8 * 128 * 128
"""Refinement input pixels per forward pass on a CPU (8 patches of 128², 32 of 64²).
Smaller batches keep the activations in cache: the ``spine`` refinement net's forward
passes alone, on 34 patches of 128² and 2 threads, took 0.22–0.23 s in batches of 4–12
against 0.31 s in two batches of 17 and 0.65 s in one (medians of 7 alternated repeats).
A GPU gets all patches at once."""


def _refine_forward(net: torch.nn.Module, patches: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    if torch.device(device).type != "cpu":
        return net(_net_input(patches, device)).float()
    per_pass = max(1, REFINE_CPU_PIXELS // (patches.shape[-2] * patches.shape[-1]))
    return torch.cat([net(_net_input(chunk, device)).float() for chunk in patches.split(per_pass)])


def fine_to_coarse(xy: npt.NDArray[np.float64], pool: int) -> npt.NDArray[np.float64]:
    return (np.asarray(xy, dtype=np.float64) + 0.5) / pool - 0.5


def coarse_to_fine(xy: npt.NDArray[np.float64], pool: int) -> npt.NDArray[np.float64]:
    return (np.asarray(xy, dtype=np.float64) + 0.5) * pool - 0.5


@dataclass(frozen=True)
class StageOutput:
    """Raw two-stage output for one image (all positions in original-image pixels)."""

    xy_px: npt.NDArray[np.float64]  # (N, 2) refined
    coarse_xy_px: npt.NDArray[np.float64]  # (N, 2)
    coarse_peak: npt.NDArray[np.float64]  # (N,)
    refine_peak: npt.NDArray[np.float64]  # (N,)

    def features(self, spacing_xy_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Per-landmark confidence features: refine peak, coarse peak, coarse→refined shift (mm)."""
        shift = np.linalg.norm((self.xy_px - self.coarse_xy_px) * spacing_xy_mm, axis=1)
        return np.stack([self.refine_peak, self.coarse_peak, shift], axis=1)


def fine_grid_hw(shape_hw: tuple[int, int], spacing_rc_mm: tuple[float, float], cfg: StageConfig) -> tuple[int, int]:
    """Height and width (before padding) of the fine grid that :func:`prepare` resamples an
    image of ``shape_hw`` pixels and ``spacing_rc_mm`` to: computed without allocating."""
    h, w = shape_hw
    if cfg.fine_height_px:
        target, sp = h / cfg.fine_height_px, (1.0, 1.0)
    else:
        target, sp = cfg.fine_mm, spacing_rc_mm
    return max(1, int(round(h * sp[0] / target))), max(1, int(round(w * sp[1] / target)))


def prepare(
    pixels01: npt.NDArray[np.float32], spacing_rc_mm: tuple[float, float], cfg: StageConfig
) -> tuple[Resampled, torch.Tensor]:
    """Resample a [0, 1] image to the fine grid and pool it to the coarse grid.

    The fine grid has ``cfg.fine_mm`` per pixel, or, with ``cfg.fine_height_px``, a fixed
    height (``spacing_rc_mm`` is then ignored).
    """
    if cfg.fine_height_px:
        fine = resample(pixels01, (1.0, 1.0), pixels01.shape[0] / cfg.fine_height_px, cfg.pad_multiple)
    else:
        fine = resample(pixels01, spacing_rc_mm, cfg.fine_mm, cfg.pad_multiple)
    if cfg.min_width_px and fine.image.shape[-1] < cfg.min_width_px:
        fine = Resampled(F.pad(fine.image, (0, cfg.min_width_px - fine.image.shape[-1])), fine.factor_xy, fine.size_hw)
    coarse = F.avg_pool2d(fine.image, cfg.coarse_pool)
    return fine, coarse


def mirrored(fine: Resampled, cfg: StageConfig) -> tuple[Resampled, torch.Tensor]:
    """The fine image flipped left-right (padding kept at the right) and its coarse copy.

    A fine x coordinate ``x`` in the mirrored image is ``width - 1 - x`` in ``fine``.
    """
    h, w = fine.size_hw
    img = torch.zeros_like(fine.image)
    img[..., :h, :w] = fine.image[..., :h, :w].flip(-1)
    return Resampled(img, fine.factor_xy, fine.size_hw), F.avg_pool2d(img, cfg.coarse_pool)


def unmirror_x(xy: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] = width - 1 - out[..., 0]
    return out


@torch.no_grad()
def coarse_stage(
    net: torch.nn.Module,
    coarse_imgs: torch.Tensor,
    cfg: StageConfig,
    device: torch.device | str = "cpu",
    valid_hw: tuple[int, int] | None = None,
    info: list[dict[str, float]] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Coarse positions in **fine** pixels ``(B, N, 2)`` and heatmap peaks ``(B, N)`` (for
    a vertebra model: the centre probability of each corner's vertebra).

    ``valid_hw``: the fine image's unpadded size; heatmap pixels over the padding are
    ignored by the arg-max. ``info`` (vertebra models): receives the decoder's notes on the
    chain's ends, one dict per image (see :func:`~cephspine.vertebrae.decode_vertebrae`).
    """
    hm = net(_net_input(coarse_imgs, device)).float()  # float32 also under a bfloat16 autocast
    if cfg.coarse_target == "vertebrae":
        grid_hw = None if valid_hw is None else (-(-valid_hw[0] // cfg.coarse_pool), -(-valid_hw[1] // cfg.coarse_pool))
        xy, peak = decode_vertebrae(
            hm, cfg.n_landmarks // 4, grid_hw, end_prior=cfg.end_prior, end_weight=cfg.end_prior_weight, info=info
        )
        return coarse_to_fine(xy, cfg.coarse_pool), peak
    if valid_hw is not None:
        h = -(-valid_hw[0] // cfg.coarse_pool)
        w = -(-valid_hw[1] // cfg.coarse_pool)
        hm = hm.clone()
        hm[..., h:, :] = -torch.inf
        hm[..., :, w:] = -torch.inf
    xy, peak = decode(hm)
    return coarse_to_fine(xy, cfg.coarse_pool), peak


@torch.no_grad()
def refine_stage(
    net: torch.nn.Module,
    fine: Resampled,
    centers_fine: npt.NDArray[np.float64],
    cfg: StageConfig,
    device: torch.device | str = "cpu",
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Refined positions in fine pixels ``(N, 2)`` and peaks ``(N,)`` from the coarse
    positions ``centers_fine``: one patch per landmark, or with ``cfg.refine_target ==
    "vertebrae"`` one patch per vertebra (its four corners from four channels; with
    ``cfg.refine_flip`` also the mirrored patch, the two log-probability maps averaged).

    The refinement net outputs logits of a spatial softmax (trained with cross-entropy
    against the normalised Gaussian target); ``peak`` is the largest softmax probability
    divided by the peak of the ideal target, about 1 for a sharp, confident heatmap.
    """
    lin: npt.NDArray[np.float64] | None = None
    if cfg.refine_target == "vertebrae":
        ctr, lin = vertebra_frames(centers_fine, cfg.refine_max_width_px)
        patches = crop_patches(fine.image, ctr, cfg.patch, torch.as_tensor(lin))
        if cfg.refine_flip:  # also the mirrored patch: its TL is the vertebra's TR, and so on
            out = _refine_forward(net, torch.cat([patches, patches.flip(-1)]), device)
            logits, flipped = out[: len(patches)], out[len(patches) :].flip(-1)[:, list(CORNER_FLIP)]
            both = torch.log_softmax(logits.flatten(2), 2) + torch.log_softmax(flipped.flatten(2), 2)
            logits = (both / 2).view_as(logits)
        else:
            logits = _refine_forward(net, patches, device)  # (V, 4, p, p)
    else:
        ctr = np.asarray(centers_fine, dtype=np.float64)
        patches = crop_patches(fine.image, ctr, cfg.patch)
        out = _refine_forward(net, patches, device)  # (N, N, p, p): patch k is read from channel k
        idx = torch.arange(cfg.n_landmarks, device=out.device)
        logits = out[idx, idx][:, None]
    xy, _ = decode(logits)  # the log of a Gaussian is a parabola: exact sub-pixel fit
    prob = torch.softmax(logits.flatten(2), dim=2)
    # relative to the peak of the ideal target (a normalised Gaussian): ~1 when sharp
    ideal = 1.0 / (2.0 * np.pi * cfg.sigma_px**2)
    peak = prob.amax(dim=2).cpu().numpy().astype(np.float64).reshape(-1) / ideal
    uv = xy - (cfg.patch - 1) / 2.0  # (K, C, 2) patch offsets from each patch centre
    if lin is not None:
        uv = np.einsum("kij,kcj->kci", lin, uv)
    return (ctr[:, None] + uv).reshape(-1, 2), peak


def run_stages(
    coarse_net: torch.nn.Module,
    refine_net: torch.nn.Module,
    fine: Resampled,
    coarse_img: torch.Tensor,
    cfg: StageConfig,
    device: torch.device | str = "cpu",
) -> StageOutput:
    """Run both stages on one prepared image (networks in eval mode)."""
    c_fine, c_peak = coarse_stage(coarse_net, coarse_img, cfg, device, fine.size_hw)
    r_fine, r_peak = refine_stage(refine_net, fine, c_fine[0], cfg, device)
    return StageOutput(
        xy_px=fine.to_original(r_fine),
        coarse_xy_px=fine.to_original(c_fine[0]),
        coarse_peak=c_peak[0],
        refine_peak=r_peak,
    )
