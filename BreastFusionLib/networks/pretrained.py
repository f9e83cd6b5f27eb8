"""ImageNet transfer learning for CBAM-ResNet-50, and the freeze modes.

``load_imagenet_resnet50`` loads a torchvision-layout ResNet-50 state dict (a local ``.pth`` read
with ``weights_only=True``, or ``"imagenet"``: torchvision's IMAGENET1K_V2 file through the torch hub
cache, downloaded on a connected machine). ``fc.*`` is dropped (the head starts fresh), CBAM
parameters keep their fresh initialisation, and any other missing or unexpected key, or a shape
mismatch, is an error that lists the keys. For ``in_channels`` != 3 the RGB ``conv1`` kernels are
folded: each new input channel gets ``sum over RGB / in_channels``, so one channel gets the plain
sum and a grey image gives the same first-layer response as in the RGB network.

Freeze modes: ``none`` fine-tunes everything; ``backbone`` (the paper) freezes the pretrained
extractor and trains the head, and CBAM too unless ``train_cbam=False``; ``last_stage`` also
fine-tunes the extractor's last stage (the layers at 1/32 of the input size: ResNet-50's
``layer4``, Lite0's last two block stages and head convolution). Frozen batch-norm layers stay in
eval mode while the rest trains (their running statistics do not move).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.networks.resnet import CBAMResNet50

IMAGENET_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
FREEZE_MODES = ("none", "last_stage", "backbone")


@dataclass
class LoadReport:
    """What an ImageNet load did: keys loaded, keys skipped from the file, fresh (CBAM) keys."""

    loaded: list[str]
    skipped: list[str]
    fresh: list[str]

    def summary(self) -> str:
        return f"loaded {len(self.loaded)} tensors, skipped {self.skipped or 'none'}, {len(self.fresh)} CBAM tensors start fresh"


def _read_state_dict(source: str) -> dict[str, torch.Tensor]:
    if source == "imagenet":
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        try:
            return torch.hub.load_state_dict_from_url(IMAGENET_URL, map_location="cpu", weights_only=True)
        except OSError as error:
            raise UserInputError(
                f"could not download the ImageNet ResNet-50 weights from {IMAGENET_URL} ({error}); "
                f"offline, copy that file into {hub} or pass its path instead of 'imagenet'"
            ) from None
    path = Path(source)
    if not path.is_file():
        raise UserInputError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip or torch errors all mean "not a usable state dict"
        raise UserInputError(f"{path} is not a readable PyTorch state dict ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(f"{path} does not hold a plain state dict of tensors")
    return state


def _fold_conv1(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    if in_channels == weight.shape[1]:
        return weight
    return weight.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels


def load_checked_weights(backbone: nn.Module, raw: dict[str, torch.Tensor], source: str, architecture: str,
                         head_prefix: str, stem_key: str, is_cbam, optional_suffix: str | None = None) -> LoadReport:
    """Load an ImageNet state dict into a CBAM backbone, checking every key.

    The classification head (``head_prefix``) is dropped, the stem (``stem_key``) is folded to the
    backbone's input channels, CBAM keys (``is_cbam``) keep their fresh initialisation, and keys ending
    in ``optional_suffix`` may be absent; any other missing or unexpected key or wrong shape is an error.
    """
    state = {k: v for k, v in raw.items() if not k.startswith(head_prefix)}
    if stem_key in state:
        state[stem_key] = _fold_conv1(state[stem_key], backbone.in_channels)
    target = backbone.state_dict()
    expected = {k for k in target if not is_cbam(k) and not k.startswith(head_prefix)}
    optional = {k for k in expected if optional_suffix and k.endswith(optional_suffix)}
    missing = sorted(expected - optional - set(state))
    unexpected = sorted(set(state) - expected)
    mismatched = sorted(k for k in set(state) & expected if state[k].shape != target[k].shape)
    if missing or unexpected or mismatched:
        raise UserInputError(
            f"{source} is not {architecture} state dict: {len(missing)} missing keys {missing[:8]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:8]}, wrong shapes {mismatched[:8]}"
        )
    backbone.load_state_dict(state, strict=False)
    return LoadReport(loaded=sorted(state), skipped=sorted(set(raw) - set(state)),
                      fresh=sorted(k for k in target if is_cbam(k)))


def load_imagenet_resnet50(backbone: CBAMResNet50, source: str) -> LoadReport:
    """Load torchvision ResNet-50 weights from ``source`` (a path or "imagenet") into ``backbone``."""
    return load_checked_weights(backbone, _read_state_dict(source), source, "a torchvision ResNet-50",
                                head_prefix="fc.", stem_key="conv1.weight", is_cbam=lambda k: ".cbam." in k,
                                optional_suffix="num_batches_tracked")


def load_branches_from_single_models(model: nn.Module, us_checkpoint: str, ct_checkpoint: str) -> None:
    """Start a fusion model's branches from trained US and CT models (their ``backbone.*`` weights).

    Two-stage fusion training: each branch begins where its single-modality model ended, and the
    fusion head learns to combine them. Each file must be a US or CT model checkpoint of this
    architecture (``model.pt`` written by the bundle), loaded with ``weights_only=True``.
    """
    for branch, checkpoint in ((model.us_branch, us_checkpoint), (model.ct_branch, ct_checkpoint)):
        state = _read_state_dict(checkpoint)
        backbone = {key[len("backbone."):]: value for key, value in state.items() if key.startswith("backbone.")}
        if not backbone:
            raise UserInputError(f"{checkpoint}: not a single-modality BreastFusion model (no 'backbone.*' weights)")
        try:
            branch.load_state_dict(backbone)
        except RuntimeError as error:
            raise UserInputError(f"{checkpoint}: weights do not fit the fusion branch ({str(error).splitlines()[0]})") from None


def freeze(model: nn.Module, mode: str, train_cbam: bool = True) -> None:
    """Apply a freeze mode to a classifier whose head is ``model.head`` (see the module docstring).

    Frozen batch-norm layers are put back in eval mode by the classifiers' ``train()``.
    """
    if mode not in FREEZE_MODES:
        raise UserInputError(f"freeze mode must be one of {FREEZE_MODES}, got {mode!r}")
    for name, parameter in model.named_parameters():
        in_head, is_cbam = name.startswith("head."), ".cbam." in name
        parameter.requires_grad = mode == "none" or in_head or (is_cbam and train_cbam)
    if mode == "last_stage":
        for branch in model.extractors():
            branch.last_stage().requires_grad_(True)
    model.train(model.training)
