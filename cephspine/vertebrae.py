"""Vertebra-centre targets, loss and decoding for :class:`~cephspine.models.vertebra.VertebraCentreNet`.

Vertebra identity comes from order, not from a channel per vertebra: the network finds
vertebra centres (one class-agnostic heatmap), the ``n`` strongest separate peaks are
sorted top to bottom, and each centre's four corners are read from the offset channels
at its pixel. Corner order per vertebra: TL, TR, BL, BR.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from cephspine.models.vertebra import N_CORNERS, VertebraCentreNet

NMS_WINDOW = 5
"""A centre is a peak when it is the maximum of its 5 × 5 neighbourhood (vertebrae are
about 12 grid pixels apart on the 256-px-high grid)."""


def _centres(xy: torch.Tensor) -> torch.Tensor:
    """``(B, 4V, 2)`` corners → ``(B, V, 2)`` vertebra centres (mean of the four corners)."""
    b, n, _ = xy.shape
    return xy.view(b, n // N_CORNERS, N_CORNERS, 2).mean(dim=2)


def vertebra_loss(out: torch.Tensor, xy: torch.Tensor, sigma: float, offset_weight: float = 1.0) -> torch.Tensor:
    """Focal loss on the centre heatmap plus L1 on the corner offsets.

    Args:
        out: network output ``(B, 9, H, W)``.
        xy: ``(B, 4V, 2)`` corners in grid pixels, four per vertebra.
        sigma: σ of the Gaussian around each (integer) centre, grid pixels.

    The heatmap term is the penalty-reduced focal loss of CenterNet (Zhou et al., 2019),
    normalised by the number of centres; the offset term is supervised at the 3 × 3 pixels
    around each centre, so a peak one pixel off still reads good corners.
    """
    b, _, h, w = out.shape
    ctr = _centres(xy)
    v = ctr.shape[1]
    ci = torch.stack([ctr[..., 0].round().clamp(0, w - 1), ctr[..., 1].round().clamp(0, h - 1)], -1)
    ys = torch.arange(h, dtype=xy.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=xy.dtype).view(1, 1, 1, w)
    g = torch.exp(-((xs - ci[..., 0, None, None]) ** 2 + (ys - ci[..., 1, None, None]) ** 2) / (2 * sigma**2))
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
    pred = out[:, 1:].flatten(2).gather(2, flat.expand(b, 2 * N_CORNERS, flat.shape[-1]))  # (B, 8, V*9)
    pred = pred.view(b, N_CORNERS, 2, v, 9).permute(0, 3, 4, 1, 2)
    return heat + offset_weight * F.l1_loss(pred, tgt)


@torch.no_grad()
def decode_vertebrae(
    out: torch.Tensor, n_vertebrae: int, valid_hw: tuple[int, int] | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Corners ``(B, 4 n, 2)`` in grid pixels and per-corner scores ``(B, 4 n)`` (the
    centre-heatmap probability of the corner's vertebra).

    ``valid_hw``: the unpadded grid size; peaks over the padding are ignored. When fewer than
    ``n_vertebrae`` peaks exist, the strongest remaining pixels fill in (with their low scores).
    """
    out = out.detach().float().cpu()
    b, _, h, w = out.shape
    prob = torch.sigmoid(out[:, :1])
    if valid_hw is not None:
        prob[..., valid_hw[0] :, :] = 0.0
        prob[..., :, valid_hw[1] :] = 0.0
    peaks = prob * (prob == F.max_pool2d(prob, NMS_WINDOW, 1, NMS_WINDOW // 2)).float()
    xy = np.zeros((b, n_vertebrae * N_CORNERS, 2))
    score = np.zeros((b, n_vertebrae * N_CORNERS))
    for k in range(b):
        # peaks first, then the other pixels by probability (ties are impossible to order otherwise)
        rank = (peaks[k, 0] + prob[k, 0] * 1e-3).flatten()
        idx = torch.topk(rank, n_vertebrae).indices
        iy, ix = idx // w, idx % w
        order = torch.argsort(iy.double() + ix.double() * 1e-6)
        iy, ix = iy[order], ix[order]
        off = out[k, 1:, iy, ix].T.reshape(n_vertebrae, N_CORNERS, 2).double() * VertebraCentreNet.offset_unit
        base = torch.stack([ix, iy], -1).double()[:, None, :]
        xy[k] = (base + off).reshape(-1, 2).numpy()
        score[k] = np.repeat(prob[k, 0, iy, ix].double().numpy(), N_CORNERS)
    return xy, score
