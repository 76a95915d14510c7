"""Vertebra-centre targets, loss and decoding for :class:`~cephspine.models.vertebra.VertebraCentreNet`.

Vertebra identity comes from order, not from a channel per vertebra: the network finds
vertebra centres (one class-agnostic heatmap), the ``n`` strongest separate peaks are
sorted top to bottom, and each centre's four corners are read from the offset channels
at its pixel. Corner order per vertebra: TL, TR, BL, BR.

A network with a spine-level channel (``levels=True``) also says *which* vertebra each
peak is; when there are more strong peaks than vertebrae, the decoder picks the run of
consecutive peaks whose levels and strengths agree best (:func:`best_window`).

A model with an *end prior* (``StageConfig.end_prior``) also knows where T1 and L5 usually
lie in the image: the decoder then chooses the first and the last vertebra among all
peaks so that strength and position agree best (:func:`choose_chain`), which settles
whether a strong peak just above T1 (C7) or just below L5 (S1) belongs to the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from cephspine.models.vertebra import N_CORNERS, VertebraCentreNet
from cephspine.preprocess import rotation_scale

NMS_WINDOW = 5
"""A centre is a peak when it is the maximum of its 5 × 5 neighbourhood (vertebrae are
about 12 grid pixels apart on the 256-px-high grid)."""

LEVEL_CHANNEL = 1 + 2 * N_CORNERS
"""Index of the spine-level output channel of a network built with ``levels=True`` (after
the centre heatmap and the eight corner offsets)."""

LEVEL_SD = 0.5
"""Decoding: s.d. (in vertebrae) of the level read at a peak; a peak whose level is one
vertebra off its slot costs as much as a 7.4× weaker peak."""

CANDIDATE_MIN_PROB = 0.4
"""Decoding with levels: a candidate peak needs at least this centre probability (weak
peaks away from the spine have no meaningful level)."""

END_MIN_PROB = 0.1
"""Decoding with an end prior: a peak is a candidate vertebra from this centre probability."""

END_MAX_CANDIDATES = 2
"""Decoding with an end prior: at most this many times ``n`` candidates, the strongest (the
chain search grows with the cube of their number; real spine images have 18–26)."""

END_PRIOR_WEIGHT = 0.5
"""Decoding with an end prior: weight of the two Gaussian position log-likelihoods against
the sum of the chosen peaks' log-probabilities (chosen on training images)."""

LEVEL_MARGIN = 1.5
"""Training: the level channel is supervised up to this many vertebrae above the first
and below the last annotated one (so the neighbours C7 and S1 learn levels −1 and n)."""


def level_targets(ctr: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense spine-level targets ``(H, W)`` and their mask for one image.

    Args:
        ctr: ``(V, 2)`` vertebra centres (grid pixels), top to bottom.

    The level of a row is the vertebra index interpolated linearly between the centres'
    rows (extrapolated with the end spacings above the first and below the last); it is
    supervised within one mean vertebra spacing left and right of the spine's midline and
    up to :data:`LEVEL_MARGIN` vertebrae beyond the ends.
    """
    v = len(ctr)
    cy, cx = ctr[:, 1], ctr[:, 0]
    ys = np.arange(h, dtype=np.float64)
    level = np.interp(ys, cy, np.arange(v, dtype=np.float64))
    top, bot = max(cy[1] - cy[0], 1e-3), max(cy[-1] - cy[-2], 1e-3)
    level = np.where(ys < cy[0], (ys - cy[0]) / top, level)
    level = np.where(ys > cy[-1], v - 1 + (ys - cy[-1]) / bot, level)
    mid = np.interp(ys, cy, cx)
    half = max(float(np.mean(np.diff(cy))), 1.0)
    xs = np.arange(w, dtype=np.float64)
    rows = (level >= -LEVEL_MARGIN) & (level <= v - 1 + LEVEL_MARGIN)
    mask = (np.abs(xs[None, :] - mid[:, None]) <= half) & rows[:, None]
    return np.broadcast_to(level[:, None], (h, w)).copy(), mask


def _centres(xy: torch.Tensor) -> torch.Tensor:
    """``(B, 4V, 2)`` corners → ``(B, V, 2)`` vertebra centres (mean of the four corners)."""
    b, n, _ = xy.shape
    return xy.view(b, n // N_CORNERS, N_CORNERS, 2).mean(dim=2)


def vertebra_loss(
    out: torch.Tensor, xy: torch.Tensor, sigma: float, offset_weight: float = 1.0, level_weight: float = 4.0
) -> torch.Tensor:
    """Focal loss on the centre heatmap plus L1 on the corner offsets (and on the spine
    levels, :func:`level_targets`, when ``out`` has the level channel).

    Args:
        out: network output ``(B, 9, H, W)`` or ``(B, 10, H, W)``.
        xy: ``(B, 4V, 2)`` corners in grid pixels, four per vertebra.
        sigma: σ of the Gaussian around each (integer) centre, grid pixels.

    The heatmap term is the penalty-reduced focal loss of CenterNet (Zhou et al., 2019),
    normalised by the number of centres; the offset term is supervised at the 3 × 3 pixels
    around each centre, so a peak one pixel off still reads good corners.

    A vertebra whose centre lies outside the grid (moved out of view by a framing
    augmentation) is no target: no peak is asked for it anywhere, and its offsets are not
    supervised.
    """
    b, _, h, w = out.shape
    ctr = _centres(xy)
    v = ctr.shape[1]
    seen = (ctr[..., 0] > -0.5) & (ctr[..., 0] < w - 0.5) & (ctr[..., 1] > -0.5) & (ctr[..., 1] < h - 0.5)
    ci = torch.stack([ctr[..., 0].round().clamp(0, w - 1), ctr[..., 1].round().clamp(0, h - 1)], -1)
    ys = torch.arange(h, dtype=xy.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=xy.dtype).view(1, 1, 1, w)
    g = torch.exp(-((xs - ci[..., 0, None, None]) ** 2 + (ys - ci[..., 1, None, None]) ** 2) / (2 * sigma**2))
    all_seen = bool(seen.all())
    if not all_seen:
        g = g * seen[..., None, None].to(g.dtype)
    target = g.amax(dim=1)  # (B, H, W)
    logit = out[:, 0]
    pos = target >= 1.0 - 1e-6
    log_p, log_q = F.logsigmoid(logit), F.logsigmoid(-logit)
    p = torch.sigmoid(logit)
    focal = torch.where(pos, (1 - p) ** 2 * log_p, (1 - target) ** 4 * p**2 * log_q)
    heat = -focal.sum() / max(int(pos.sum()), 1)
    # offsets at the 3 × 3 pixels around each centre
    d = torch.tensor([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=xy.dtype)
    pix = (ci[:, :, None, :] + d).clamp(torch.zeros(2), torch.tensor([w - 1.0, h - 1.0]))  # (B, V, 9, 2)
    corners = xy.view(b, v, 1, N_CORNERS, 2)
    tgt = (corners - pix[:, :, :, None, :]) / VertebraCentreNet.offset_unit  # (B, V, 9, 4, 2)
    flat = (pix[..., 1] * w + pix[..., 0]).long().view(b, 1, -1)  # (B, 1, V*9)
    pred = out[:, 1:LEVEL_CHANNEL].flatten(2).gather(2, flat.expand(b, 2 * N_CORNERS, flat.shape[-1]))  # (B, 8, V*9)
    pred = pred.view(b, N_CORNERS, 2, v, 9).permute(0, 3, 4, 1, 2)
    if all_seen:
        off_loss = F.l1_loss(pred, tgt)
    else:
        keep = seen[:, :, None, None, None].expand_as(tgt)
        off_loss = (pred - tgt).abs()[keep].mean() if bool(keep.any()) else pred.sum() * 0.0
    loss = heat + offset_weight * off_loss
    if out.shape[1] > LEVEL_CHANNEL:
        lv, mk = zip(*(level_targets(c, h, w) for c in ctr.detach().double().numpy()))
        level = (torch.as_tensor(np.stack(lv), dtype=out.dtype) - (v - 1) / 2) / VertebraCentreNet.level_unit
        mask = torch.as_tensor(np.stack(mk))
        if mask.any():
            loss = loss + level_weight * F.l1_loss(out[:, LEVEL_CHANNEL][mask], level[mask])
    return loss


@torch.no_grad()
def decode_vertebrae(
    out: torch.Tensor,
    n_vertebrae: int,
    valid_hw: tuple[int, int] | None = None,
    level_sd: float = LEVEL_SD,
    min_prob: float = CANDIDATE_MIN_PROB,
    end_prior: tuple[float, float, float, float] | None = None,
    end_weight: float = END_PRIOR_WEIGHT,
    info: list[dict[str, float]] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Corners ``(B, 4 n, 2)`` in grid pixels and per-corner scores ``(B, 4 n)`` (the
    centre-heatmap probability of the corner's vertebra).

    ``info``: when given, one dict per image is appended with what the chain's ends rest
    on: ``above`` and ``below``, the probability of the strongest peak above the first
    vertebra and below the last one (0 when none); a strong peak beyond an end is a
    vertebra the chain could equally have started or ended with.

    ``valid_hw``: the unpadded grid size; peaks over the padding are ignored. When fewer than
    ``n_vertebrae`` peaks exist, the strongest remaining pixels fill in (with their low scores).
    With ``end_prior`` (see :func:`fit_end_prior`) and at least ``n_vertebrae`` peaks of
    probability :data:`END_MIN_PROB` or more, those peaks (at most
    :data:`END_MAX_CANDIDATES` ``× n_vertebrae``, the strongest) are the candidates and
    :func:`choose_chain` (with ``end_weight``) picks the vertebrae; ``end_prior`` takes
    precedence over a level channel, and ``min_prob`` does not apply. Otherwise, with a level
    channel and more than ``n_vertebrae`` peaks of probability ``min_prob`` or more, all those
    peaks are candidates and :func:`best_window` (with ``level_sd``) chooses the run of
    ``n_vertebrae`` consecutive ones; otherwise the ``n_vertebrae`` strongest peaks are the
    vertebrae. Heights for the end prior are relative to ``valid_hw`` (the image the prior
    was fitted on, not a registration template's frame).
    """
    out = out.detach().float().cpu()
    b, _, h, w = out.shape
    prob = torch.sigmoid(out[:, :1])
    if valid_hw is not None:
        prob[..., valid_hw[0] :, :] = 0.0
        prob[..., :, valid_hw[1] :] = 0.0
    peaks = prob * (prob == F.max_pool2d(prob, NMS_WINDOW, 1, NMS_WINDOW // 2)).float()
    levels = out.shape[1] > LEVEL_CHANNEL
    xy = np.zeros((b, n_vertebrae * N_CORNERS, 2))
    score = np.zeros((b, n_vertebrae * N_CORNERS))
    for k in range(b):
        # peaks first, then the other pixels by probability (ties are impossible to order otherwise)
        rank = (peaks[k, 0] + prob[k, 0] * 1e-3).flatten()
        strong = int((peaks[k, 0] >= min_prob).sum()) if levels else 0
        if end_prior is not None and int((peaks[k, 0] >= END_MIN_PROB).sum()) >= n_vertebrae:
            strong = min(int((peaks[k, 0] >= END_MIN_PROB).sum()), END_MAX_CANDIDATES * n_vertebrae)
        idx = torch.topk(rank, min(max(n_vertebrae, strong), h * w)).indices
        iy, ix = idx // w, idx % w
        order = torch.argsort(iy.double() + ix.double() * 1e-6)
        iy, ix = iy[order], ix[order]
        if len(iy) > n_vertebrae and end_prior is not None:  # the end prior chooses the chain
            rows = valid_hw[0] if valid_hw is not None else h
            y_rel = (iy.double().numpy() + 0.5) / rows
            sel = choose_chain(prob[k, 0, iy, ix].double().numpy(), y_rel, n_vertebrae, end_prior, end_weight)
            iy, ix = iy[sel], ix[sel]
        elif len(iy) > n_vertebrae:  # more strong peaks than vertebrae: the levels choose the run
            lv = out[k, LEVEL_CHANNEL, iy, ix].double().numpy() * VertebraCentreNet.level_unit
            j = best_window(prob[k, 0, iy, ix].double().numpy(), lv + (n_vertebrae - 1) / 2, n_vertebrae, level_sd)
            iy, ix = iy[j : j + n_vertebrae], ix[j : j + n_vertebrae]
        off = out[k, 1:LEVEL_CHANNEL, iy, ix].T.reshape(n_vertebrae, N_CORNERS, 2).double()
        off = off * VertebraCentreNet.offset_unit
        base = torch.stack([ix, iy], -1).double()[:, None, :]
        xy[k] = (base + off).reshape(-1, 2).numpy()
        score[k] = np.repeat(prob[k, 0, iy, ix].double().numpy(), N_CORNERS)
        if info is not None:
            pk = peaks[k, 0]
            top, bottom = int(iy.min()), int(iy.max())
            above = float(pk[:top].max()) if top > 0 else 0.0
            below = float(pk[bottom + 1 :].max()) if bottom + 1 < h else 0.0
            info.append({"above": above, "below": below})
    return xy, score


def choose_chain(
    prob: np.ndarray,
    y_rel: np.ndarray,
    n: int,
    end_prior: tuple[float, float, float, float],
    weight: float = END_PRIOR_WEIGHT,
) -> np.ndarray:
    """Indices of the ``n`` candidates (sorted top to bottom) that become vertebrae 0 … n−1.

    Args:
        prob: centre probabilities of the candidates.
        y_rel: their heights as a fraction of the image height (0 top, 1 bottom).
        end_prior: ``(top_mean, top_sd, bottom_mean, bottom_sd)`` of the first and the last
            vertebra's centre height, as fractions of the image height (:func:`fit_end_prior`).
        weight: weight of the two position log-likelihoods.

    Every pair (first, last) with at least ``n − 2`` candidates between them is scored
    ``Σ log p`` over the first, the last and the ``n − 2`` strongest candidates between,
    plus ``weight · (log N(y_first; top) + log N(y_last; bottom))``; the best pair wins.
    With ``weight = 0`` this is the ``n`` strongest candidates.
    """
    m = len(prob)
    if n < 2 or m < n:
        raise ValueError(f"{m} candidates for {n} vertebrae (at least 2 vertebrae needed)")
    logp = np.log(np.clip(prob, 1e-6, 1.0))
    t_mu, t_sd, b_mu, b_sd = end_prior
    top = -0.5 * ((y_rel - t_mu) / t_sd) ** 2
    bottom = -0.5 * ((y_rel - b_mu) / b_sd) ** 2
    best, chosen = -np.inf, np.arange(n)
    for a in range(m - n + 1):
        for b in range(a + n - 1, m):
            inner = a + 1 + np.argsort(-logp[a + 1 : b], kind="stable")[: n - 2]
            score = logp[a] + logp[b] + logp[inner].sum() + weight * (top[a] + bottom[b])
            if score > best:
                best, chosen = score, np.sort(np.concatenate([[a], inner, [b]]))
    return chosen


def fit_end_prior(corners: npt.ArrayLike, heights: npt.ArrayLike) -> tuple[float, float, float, float]:
    """Where the first and the last vertebra lie in training images: ``(top_mean, top_sd,
    bottom_mean, bottom_sd)`` of their centre heights (mean of the four corners) as
    fractions of the image height.

    Args:
        corners: ``(M, 4V, 2)`` true corners (TL, TR, BL, BR per vertebra, top to bottom),
            in the pixels of images of height ``heights`` ``(M,)``.
    """
    q = np.asarray(corners, dtype=np.float64)
    h = np.asarray(heights, dtype=np.float64)
    if q.ndim != 3 or q.shape[1] % N_CORNERS or len(q) != len(h) or len(q) < 2:
        raise ValueError(f"need corners (M >= 2, 4V, 2) and M heights, got {q.shape} and {h.shape}")
    ctr_y = q.reshape(len(q), -1, N_CORNERS, 2)[..., 1].mean(axis=2) / h[:, None]
    t, b = ctr_y[:, 0], ctr_y[:, -1]
    return (float(t.mean()), float(t.std(ddof=1)), float(b.mean()), float(b.std(ddof=1)))


def best_window(prob: np.ndarray, level: np.ndarray, n: int, level_sd: float = LEVEL_SD) -> int:
    """Start of the run of ``n`` consecutive candidates (sorted top to bottom) that become
    vertebrae 0 … n−1: the run maximising ``Σ log p − Σ (level − slot)² / (2 level_sd²)``.

    The level term is summed over the whole run, so one vertebra's level error matters
    little while a chain shifted by one (C7 taken for T1, or the sacrum for L5) costs about
    ``n / (2 level_sd²)``.
    """
    m = len(prob)
    if m < n:
        raise ValueError(f"{m} candidates for {n} vertebrae")
    logp = np.log(np.clip(prob, 1e-6, 1.0))
    slots = np.arange(n)
    scores = [
        logp[j : j + n].sum() - ((level[j : j + n] - slots) ** 2).sum() / (2 * level_sd**2) for j in range(m - n + 1)
    ]
    return int(np.argmax(scores))


def drop_level_channel(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict of a :class:`VertebraCentreNet` trained with ``levels=True``, for the
    same network without the level channel (its output row removed): the decoder then
    assigns vertebrae by order alone.

    Raises:
        ValueError: the state has no level channel.
    """
    weight, bias = state["appearance.head.weight"], state["appearance.head.bias"]
    if len(weight) != LEVEL_CHANNEL + 1 or len(bias) != LEVEL_CHANNEL + 1:
        raise ValueError(f"not a coarse state with a level channel: head has {len(weight)} outputs")
    return state | {"appearance.head.weight": weight[:LEVEL_CHANNEL], "appearance.head.bias": bias[:LEVEL_CHANNEL]}


MAX_FRAME_SCALE = 2.0
"""A vertebra patch is sampled at most this much coarser than the fine grid (spread-out
coarse corners of a gross error must not zoom the patch out arbitrarily)."""

CORNER_FLIP = (1, 0, 3, 2)
"""Corner order of a left-right mirrored vertebra: TL ↔ TR, BL ↔ BR."""


def vertebra_frames(
    corners: npt.NDArray[np.float64], max_width: float | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each vertebra's patch frame from (estimated) corners ``(4V, 2)`` in TL, TR, BL, BR order.

    Returns the centres ``(V, 2)`` (mean of the four corners) and ``(V, 2, 2)`` linear maps
    from patch offsets to image offsets (for :func:`cephspine.preprocess.crop_patches`): a
    rotation by the endplates' direction (TL→TR plus BL→BR), so that the vertebra is level
    in its patch (never by more than 90°: left stays left), times a scale between 1 and
    :data:`MAX_FRAME_SCALE` that brings a vertebra wider than ``max_width`` image pixels
    down to that width in patch pixels.
    """
    q = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
    ctr = q.mean(axis=1)
    d = (q[:, 1] - q[:, 0]) + (q[:, 3] - q[:, 2])
    # a frame never turns a vertebra upside down: corners given right-to-left (a gross
    # coarse error) keep the patch's left on the image's left
    d = np.where(d[:, :1] < 0, -d, d)
    ang = np.arctan2(d[:, 1], d[:, 0])
    scale = np.ones(len(q))
    if max_width is not None:
        width = 0.5 * np.linalg.norm(d, axis=1)
        scale = np.clip(width / max_width, 1.0, MAX_FRAME_SCALE)
    return ctr, rotation_scale(ang, scale)


@dataclass(frozen=True)
class LevelRules:
    """When a decoded chain cannot be trusted (a model card's ``levels``, fitted on
    held-out predictions; see docs/models/spine.md).

    Attributes:
        found_min_prob: a vertebra of the chain whose centre probability is below this was
            not found: the film does not show it clearly (cut off at an end, covered, or a
            gap in the chain), its corners are placeholders, and since vertebrae are named by
            counting, every name may be shifted.
        ambiguous_ratio: a peak beyond an end of the chain (above the first vertebra or below
            the last) with at least this times that vertebra's probability makes the chain's
            levels ambiguous: it could as well start or end there. ``None``: not checked.
        doubt_confidence: confidences of a doubtful chain (either finding) are multiplied by
            this (the share of such held-out films whose levels were right).
    """

    found_min_prob: float
    ambiguous_ratio: float | None
    doubt_confidence: float

    def __post_init__(self) -> None:
        ratio_ok = self.ambiguous_ratio is None or self.ambiguous_ratio > 0
        if not (0 <= self.found_min_prob < 1 and ratio_ok and 0 <= self.doubt_confidence <= 1):
            raise ValueError(f"invalid level rules {self}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LevelRules:
        r = d.get("ambiguous_ratio")
        return cls(float(d["found_min_prob"]), None if r is None else float(r), float(d["doubt_confidence"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "found_min_prob": self.found_min_prob,
            "ambiguous_ratio": self.ambiguous_ratio,
            "doubt_confidence": self.doubt_confidence,
        }


@dataclass(frozen=True)
class ChainDoubt:
    """What :func:`chain_doubt` found: the vertebrae (indices, top to bottom) not found,
    and whether either end is ambiguous."""

    missing: tuple[int, ...] = ()
    ambiguous_top: bool = False
    ambiguous_bottom: bool = False

    @property
    def any(self) -> bool:
        return bool(self.missing or self.ambiguous_top or self.ambiguous_bottom)


def chain_doubt(vertebra_prob: npt.ArrayLike, above: float, below: float, rules: LevelRules) -> ChainDoubt:
    """Doubts about a decoded chain from its vertebrae's centre probabilities ``(V,)`` (top
    to bottom) and the strongest peaks ``above`` and ``below`` it (the decoder's notes,
    :func:`decode_vertebrae`)."""
    p = np.asarray(vertebra_prob, dtype=np.float64)
    missing = tuple(int(i) for i in np.flatnonzero(p < rules.found_min_prob))
    r = rules.ambiguous_ratio
    return ChainDoubt(
        missing=missing,
        ambiguous_top=r is not None and 0 not in missing and above >= r * p[0],
        ambiguous_bottom=r is not None and len(p) - 1 not in missing and below >= r * p[-1],
    )
