"""Heat maps of one prediction: last-stage CBAM spatial attention and Grad-CAM, one per branch.

* Attention: the sigmoid output of the last-stage CBAM spatial gate (``attention_module().gate``),
  read with a forward hook during the ordinary forward pass. It is what the network itself weighted,
  independent of the class; values in (0, 1), shown as they are (not rescaled).
* Grad-CAM on the last-stage map of each branch (``TARGET_LAYERS``), for a chosen class (malignant by
  default): one forward pass (the same that gives the logits) and one backward pass that stops at
  the target layers give every branch's map, computed as ``monai.visualize.GradCAM`` does (a test
  pins the equality). MONAI's default ``postprocessing`` maps (min, max) to (1, 0), i.e. it flips
  the map so that the most important region looks least important; ``min_max`` below keeps
  high = important.

Maps come at the network's feature resolution (spatial_size / 32): Grad-CAM is upsampled to the
input size (as MONAI does), then both are upsampled bilinearly to the 300x300 crop and mapped back
into the original image (US: the image's rows x cols; CT: the axial slice ``volume.hu[slice_index]``)
through the crop's ``CropBox``; pixels outside the crop are 0.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import default_upsampler
from scipy import ndimage
from torch import nn

from BreastFusionLib.crop import CropBox

# For each model: crop key (branch) -> the attribute holding that branch's backbone.
BRANCHES = {"us": {"us": "backbone"}, "ct": {"ct": "backbone"}, "fusion": {"us": "us_branch", "ct": "ct_branch"}}
# Grad-CAM target in a backbone: the module whose output is the last-stage map that CBAM receives.
TARGET_LAYERS = {"cbam_resnet50": "layer4", "cbam_efficientnet_lite0": "head_activation"}
MALIGNANT = 1
HEATMAP_KINDS = ("attention", "gradcam")


def min_max(cam: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max scaling to [0, 1] keeping high = important (a constant map becomes 0)."""
    flat = cam.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    span = (high - low).clamp_min(1e-12)[:, None]
    scaled = torch.where((high > low)[:, None], (flat - low[:, None]) / span, torch.zeros_like(flat))
    return scaled.view_as(cam)


@contextmanager
def record_attention(network: nn.Module, modality: str):
    """While active, ``maps[branch]`` holds the last-stage spatial attention (B, 1, h, w) of each forward pass."""
    maps: dict[str, torch.Tensor] = {}
    handles = []
    for branch, attribute in BRANCHES[modality].items():
        gate = getattr(network, attribute).attention_module().gate

        def hook(_module, _inputs, output, branch=branch):
            maps[branch] = output.detach()

        handles.append(gate.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


class GradCAMMaps:
    """Grad-CAM of every branch of one network, from the forward pass that gives the logits.

    During the call a forward hook makes each target layer's output the start of a new autograd
    graph (a leaf that requires grad), so the backward pass runs only from the logits back to the
    target layers (for the last stage: pooling and head), not through the whole network to the
    input as with MONAI's ``GradCAM``; the gradients at the targets are the same. The hooks are
    removed after each call: the network itself is used (no copy) and can still be scripted.
    """

    def __init__(self, network: nn.Module, modality: str, backbone: str, layer: str | None = None) -> None:
        """``layer``: the target inside each branch's backbone (default ``TARGET_LAYERS[backbone]``)."""
        self.network = network
        self.branches = list(BRANCHES[modality])
        self.targets = [network.get_submodule(f"{BRANCHES[modality][b]}.{layer or TARGET_LAYERS[backbone]}")
                        for b in self.branches]

    def logits_and_maps(self, image: torch.Tensor, branches: list[str],
                        class_index: int = MALIGNANT) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The logits (B, classes) of ``image`` and the maps (B, 1, H, W) at the input size for ``branches``, in [0, 1]."""
        activations: dict[str, torch.Tensor] = {}

        def hook(_module, _inputs, output, branch):
            activations[branch] = output.detach().requires_grad_(True)
            return activations[branch]

        handles = [target.register_forward_hook(lambda m, i, o, b=branch: hook(m, i, o, b))
                   for branch, target in zip(self.branches, self.targets)]
        try:
            with torch.enable_grad():
                logits = self.network(image)
                wanted = [activations[branch] for branch in branches]
                gradients = torch.autograd.grad(logits[:, class_index].sum(), wanted, allow_unused=True) if wanted else []
        finally:
            for handle in handles:
                handle.remove()
        upsample = default_upsampler(image.shape[2:])
        maps = {}
        for branch, activation, gradient in zip(branches, wanted, gradients):
            activation = activation.detach().float()
            gradient = torch.zeros_like(activation) if gradient is None else gradient.float()
            weights = gradient.mean(dim=(2, 3), keepdim=True)  # GradCAM: channel weights = mean gradient
            cam = F.relu((weights * activation).sum(1, keepdim=True))
            maps[branch] = min_max(upsample(cam))
        return logits.detach(), maps

    def __call__(self, image: torch.Tensor, branches: list[str], class_index: int = MALIGNANT) -> dict[str, torch.Tensor]:
        """Maps (B, 1, H, W) at the input size for ``branches``, each in [0, 1]."""
        return self.logits_and_maps(image, branches, class_index)[1]


def to_crop(feature_map: torch.Tensor, out_size: int) -> np.ndarray:
    """A (1, 1, h, w) or (h, w) map upsampled bilinearly to the out_size x out_size crop, float32."""
    tensor = torch.as_tensor(feature_map, dtype=torch.float32).reshape(1, 1, *feature_map.shape[-2:])
    return F.interpolate(tensor, size=(out_size, out_size), mode="bilinear", align_corners=False)[0, 0].numpy()


def to_image(crop_map: np.ndarray, box: CropBox, image_shape: tuple[int, int]) -> np.ndarray:
    """A crop-sized map resampled into the source image (rows, cols); 0 outside the crop, float32."""
    crop_rows, crop_cols, inside = box.image_pixels_in_crop(image_shape, crop_map.shape[0])
    image = np.zeros(image_shape, np.float32)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return image
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the crop's rectangle in the image
    values = ndimage.map_coordinates(crop_map.astype(np.float32), [crop_rows[window], crop_cols[window]],
                                     order=1, mode="nearest")
    image[window] = np.where(inside[window], values, 0.0)
    return image
