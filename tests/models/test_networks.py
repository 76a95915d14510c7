"""Shapes and basic behaviour of the network building blocks and assembled networks."""

from __future__ import annotations

import pytest
import torch

from cephspine.models import CBAM, AppearanceContextNet, AppearanceUNet, ConvBNReLU, GlobalContext

N = 5


def _img(*hw: int, b: int = 2) -> torch.Tensor:
    return torch.rand(b, 1, *hw, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("context", [True, False])
@pytest.mark.parametrize("hw", [(32, 32), (16, 48), (64, 24)])
def test_appearance_context_net_shapes(context: bool, hw: tuple[int, int]) -> None:
    depth = 3
    assert hw[0] % 2**depth == 0 and hw[1] % 2**depth == 0
    net = AppearanceContextNet(N, base=4, depth=depth, context=context, context_width=8, context_stride=4)
    assert (net.context is not None) is context
    out = net.eval()(_img(*hw))
    assert out.shape == (2, N, *hw)
    assert torch.isfinite(out).all()


def test_context_branch_changes_the_output() -> None:
    torch.manual_seed(0)
    net = AppearanceContextNet(N, base=4, depth=2, context=True, context_width=8, context_stride=4).eval()
    x = _img(16, 24)
    with torch.no_grad():
        full = net(x)
        la = net.appearance(x)
        gc = net.context(la, x)
    assert gc.shape == la.shape
    torch.testing.assert_close(full, la * gc)


def test_context_kernel_5x3_variant() -> None:
    net = AppearanceContextNet(
        N, base=4, depth=2, context=True, context_width=8, context_kernel=(5, 3), context_stride=4
    ).eval()
    convs = [m for m in net.context.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7
    assert all(c.kernel_size == (5, 3) for c in convs)
    out = net(_img(40, 24))
    assert out.shape == (2, N, 40, 24)


def test_context_grid_not_divisible_by_stride() -> None:
    # 36 x 20 is divisible by 2**depth = 4 but not by the context stride 8
    net = AppearanceContextNet(N, base=4, depth=2, context=True, context_width=8, context_stride=8).eval()
    assert net(_img(36, 20)).shape == (2, N, 36, 20)


def test_global_context_needs_seven_dilations() -> None:
    with pytest.raises(ValueError):
        GlobalContext(N, width=8, dilations=(1, 2, 4))


@pytest.mark.parametrize("dilations", [(1, 2, 4, 8, 4, 2, 1), (1, 1, 1, 1, 1, 1, 1)])
def test_global_context_shape(dilations) -> None:
    gc = GlobalContext(N, width=8, kernel=(5, 3), dilations=dilations, stride=2).eval()
    hm, img = torch.rand(1, N, 24, 16), torch.rand(1, 1, 24, 16)
    assert gc(hm, img).shape == (1, N, 24, 16)


def test_unet_channels_and_gradients() -> None:
    net = AppearanceUNet(1, 3, base=4, depth=2)
    x = _img(16, 32, b=1).requires_grad_(True)
    out = net(x)
    assert out.shape == (1, 3, 16, 32)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (3, 4), ((5, 3), (2, 1))])
def test_conv_bn_relu_keeps_size(kernel, dilation) -> None:
    block = ConvBNReLU(2, 6, kernel, dilation).eval()
    out = block(torch.rand(1, 2, 17, 11))
    assert out.shape == (1, 6, 17, 11)
    assert (out >= 0).all()


@pytest.mark.parametrize("shape", [(2, 8, 16, 16), (1, 32, 5, 9), (3, 4, 1, 1)])
def test_cbam_preserves_shape_and_only_attenuates(shape) -> None:
    torch.manual_seed(0)
    cbam = CBAM(shape[1]).eval()
    x = torch.randn(shape)
    out = cbam(x)
    assert out.shape == x.shape
    # both attentions are sigmoid gates in (0, 1): values shrink, signs are kept
    assert (out.abs() <= x.abs() + 1e-6).all()
    assert (out * x >= 0).all()
