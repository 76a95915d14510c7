"""Building blocks: conv-BN-ReLU and CBAM (Woo et al., ECCV 2018)."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``Conv2d → BatchNorm2d → ReLU`` with 'same' padding."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int] = 3,
        dilation: int | tuple[int, int] = 1,
    ) -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        d = (dilation, dilation) if isinstance(dilation, int) else dilation
        pad = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        super().__init__(
            nn.Conv2d(in_ch, out_ch, k, padding=pad, dilation=d, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


def fold_batch_norm(net: nn.Module) -> nn.Module:
    """Fold each :class:`ConvBNReLU`'s batch norm into its convolution, in place (inference only).

    The folded convolution computes the same function with the running statistics of eval
    mode (to float rounding) and saves a pass over every feature map; the block keeps its
    three children (the norm becomes an identity), so module indices stay valid. ``net`` must
    not be trained afterwards: the normalisation is gone.
    """
    for m in net.modules():
        if not isinstance(m, ConvBNReLU):
            continue
        conv, norm = m[0], m[1]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            m[0] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), norm.eval())
            m[1] = nn.Identity()
    return net


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared MLP over average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7×7 conv over channel-wise mean and max maps."""

    def __init__(self, kernel: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
