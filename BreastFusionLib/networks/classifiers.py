"""Benign-vs-malignant classifiers on one input tensor: US or CT alone, US+CT fused, late fusion.

One tensor in (``image``), logits out, so MONAI's trainers and evaluators, ``monai.visualize``
Grad-CAM and TorchScript export work unchanged. The fusion input stacks the US channels first,
then the CT channels; the network splits them.

Missing modality (fusion): a modality whose input channels are all exactly zero is treated as
absent, and its branch's pooled features are set to zero before the head. Training with
``modality_dropout`` p drops one of the two modalities' features (chosen at random, never both)
for a fraction p of the samples, so the head learns to answer from one modality as well.
"""

from __future__ import annotations

import torch
from torch import nn

from BreastFusionLib.networks.resnet import CBAMResNet50


def _present(image: torch.Tensor) -> torch.Tensor:
    """(B, 1) float mask: 1 where a sample's channels are not all zero (the modality is present)."""
    return (image.flatten(1).abs().amax(dim=1, keepdim=True) > 0).to(image.dtype)


class _Classifier(nn.Module):
    """Keeps frozen batch-norm layers (all parameters without gradient) in eval mode during training."""

    def train(self, mode: bool = True) -> "_Classifier":
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and not module.weight.requires_grad:
                module.eval()
        return self


class SingleModalityClassifier(_Classifier):
    """A CBAM feature extractor + linear head for one modality (US or CT): (B, C, H, W) -> logits (B, classes).

    ``extractor`` is the extractor class (CBAM-ResNet-50 by default, or CBAM-EfficientNet-Lite0).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, dropout: float = 0.0,
                 extractor: type[nn.Module] = CBAMResNet50) -> None:
        super().__init__()
        self.backbone = extractor(in_channels=in_channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.features, num_classes))

    def extractors(self) -> list[nn.Module]:
        """The feature extractor(s): what ImageNet weights load into and the freeze modes act on."""
        return [self.backbone]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image))


class FusionClassifier(_Classifier):
    """One CBAM extractor branch per modality (``extractor`` class, CBAM-ResNet-50 by default), pooled
    features concatenated, linear head.

    Input (B, us_channels + ct_channels, H, W), US first; output logits (B, num_classes).
    """

    def __init__(self, us_channels: int = 1, ct_channels: int = 1, num_classes: int = 2,
                 modality_dropout: float = 0.0, dropout: float = 0.0, extractor: type[nn.Module] = CBAMResNet50) -> None:
        super().__init__()
        if not 0.0 <= modality_dropout <= 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1], got {modality_dropout}")
        self.us_channels, self.ct_channels = us_channels, ct_channels
        self.modality_dropout = modality_dropout
        self.us_branch = extractor(in_channels=us_channels)
        self.ct_branch = extractor(in_channels=ct_channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * self.us_branch.features, num_classes))

    def extractors(self) -> list[nn.Module]:
        """The US and CT branches: what ImageNet weights load into and the freeze modes act on."""
        return [self.us_branch, self.ct_branch]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        us = image[:, : self.us_channels]
        ct = image[:, self.us_channels : self.us_channels + self.ct_channels]
        keep_us, keep_ct = _present(us), _present(ct)
        if self.training and self.modality_dropout > 0:
            drop = torch.rand(image.shape[0], 1, device=image.device) < self.modality_dropout
            drop_us = drop & (torch.rand(image.shape[0], 1, device=image.device) < 0.5)
            keep_us = keep_us * (~drop_us).to(image.dtype)
            keep_ct = keep_ct * (~(drop & ~drop_us)).to(image.dtype)
        features = torch.cat([self.us_branch(us) * keep_us, self.ct_branch(ct) * keep_ct], dim=1)
        return self.head(features)


class LateFusion(nn.Module):
    """Baseline: the average of a US and a CT model's softmax probabilities.

    Takes the fusion input (US channels first) and returns PROBABILITIES (B, num_classes), not logits.
    """

    def __init__(self, us_model: nn.Module, ct_model: nn.Module, us_channels: int = 1) -> None:
        super().__init__()
        self.us_model, self.ct_model, self.us_channels = us_model, ct_model, us_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        us = torch.softmax(self.us_model(image[:, : self.us_channels]), dim=1)
        ct = torch.softmax(self.ct_model(image[:, self.us_channels :]), dim=1)
        return (us + ct) / 2
