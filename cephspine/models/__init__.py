"""Networks: building blocks, the local-appearance U-Net, the global-context net and their product."""

from cephspine.models.appearance import AppearanceUNet
from cephspine.models.blocks import CBAM, ConvBNReLU
from cephspine.models.context import GlobalContext
from cephspine.models.network import AppearanceContextNet

__all__ = ["CBAM", "AppearanceContextNet", "AppearanceUNet", "ConvBNReLU", "GlobalContext"]
