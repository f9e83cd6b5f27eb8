"""CBAM-ResNet-50 for 2D images of any size, with torchvision's ResNet-50 parameter names.

Built on ``monai.networks.nets.ResNet`` with a bottleneck that adds CBAM after ``bn3``, before the
residual addition, in every block of layer1-4 (the official CBAM placement). The stem has
stride 2 and the downsampling convolutions have no bias, like torchvision, so every non-CBAM
parameter has torchvision's name (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer1.0.downsample.0``) and an ImageNet state dict loads by name. Global average pooling is
adaptive, so 300x300 crops (or any size) work.
"""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNet, ResNetBottleneck
from torch import nn

from BreastFusionLib.networks.cbam import CBAM, SpatialGate

FEATURES = 2048


class CBAMBottleneck(ResNetBottleneck):
    """MONAI's ResNet bottleneck with CBAM on the residual branch (after bn3, before the add)."""

    def __init__(self, in_planes: int, planes: int, spatial_dims: int = 2, stride: int = 1,
                 downsample: nn.Module | None = None, act=("relu", {"inplace": True}), norm="batch") -> None:
        super().__init__(in_planes, planes, spatial_dims, stride, downsample, act, norm)
        self.cbam = CBAM(planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.cbam(self.bn3(self.conv3(out)))
        if self.downsample is not None:
            residual = self.downsample(x)
        return self.act(out + residual)


class CBAMResNet50(ResNet):
    """CBAM-ResNet-50 feature extractor: ``forward(x)`` returns pooled features (B, 2048).

    ``num_classes`` adds torchvision's ``fc`` head (used only to compare parameter counts with the
    ImageNet models). ``attention_module()`` is the last stage's CBAM spatial gate: hook its
    ``gate`` to read the attention map.
    """

    features = FEATURES

    def __init__(self, in_channels: int = 1, num_classes: int | None = None, cbam: bool = True) -> None:
        super().__init__(
            block=CBAMBottleneck if cbam else ResNetBottleneck,
            layers=[3, 4, 6, 3],
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            num_classes=num_classes or 400,
            feed_forward=num_classes is not None,
        )
        self.in_channels = in_channels
        for module in self.modules():
            if isinstance(module, SpatialGate):
                nn.init.zeros_(module.bn.weight)  # official CBAM init: the spatial gate starts at 0.5

    def last_stage(self) -> nn.Module:
        """The layers at 1/32 of the input size (``layer4``), fine-tuned by the ``last_stage`` freeze mode."""
        return self.layer4

    def attention_module(self) -> SpatialGate:
        """The CBAM spatial gate of the last bottleneck of layer4 (the last-stage attention map)."""
        return self.layer4[-1].cbam.spatial_gate
