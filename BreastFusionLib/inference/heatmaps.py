"""Heat maps of one prediction: last-stage CBAM spatial attention and Grad-CAM, one per branch.

* Attention: the sigmoid output of the last-stage CBAM spatial gate (``attention_module().gate``),
  read with a forward hook during the ordinary forward pass. It is what the network itself weighted,
  independent of the class; values in (0, 1), shown as they are (not rescaled).
* Grad-CAM on the last-stage map of each branch (``TARGET_LAYERS``), for a chosen class (malignant by
  default), from MONAI's ``ModelWithHooks``: one forward and one backward pass give every branch's
  map, computed as ``monai.visualize.GradCAM`` does (a test pins the equality). MONAI's default
  ``postprocessing`` maps (min, max) to (1, 0), i.e. it flips the map so that the most important
  region looks least important; ``min_max`` below keeps high = important.

Maps come at the network's feature resolution (spatial_size / 32): Grad-CAM is upsampled to the
input size (as MONAI does), then both are upsampled bilinearly to the 300x300 crop and mapped back
into the original image (US: the image's rows x cols; CT: the axial slice ``volume.hu[slice_index]``)
through the crop's ``CropBox``; pixels outside the crop are 0.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import default_upsampler
from monai.visualize.class_activation_maps import ModelWithHooks
from scipy import ndimage
from torch import nn

from BreastFusionLib.crop import CropBox
from BreastFusionLib.errors import UserInputError

# For each model: crop key (branch) -> the attribute holding that branch's backbone.
BRANCHES = {"us": {"us": "backbone"}, "ct": {"ct": "backbone"}, "fusion": {"us": "us_branch", "ct": "ct_branch"}}
# Grad-CAM target in a backbone: the module whose output is the last-stage map that CBAM receives.
TARGET_LAYERS = {"cbam_resnet50": "layer4", "cbam_efficientnet_lite0": "head_activation"}
MALIGNANT = 1


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


class HeatMaps:
    """Attention and Grad-CAM of every branch of one network, from one forward and one backward pass.

    MONAI registers its hooks for good (they cannot be removed, and a module with backward hooks
    cannot be traced or scripted), so they go on a private copy of the network, made once; the
    attention is read from that copy's forward pass.
    """

    def __init__(self, network: nn.Module, modality: str, backbone: str, layer: str | None = None) -> None:
        """``layer``: the Grad-CAM target inside each branch's backbone (default ``TARGET_LAYERS[backbone]``)."""
        self.modality, self.branches = modality, list(BRANCHES[modality])
        self.layer = layer or TARGET_LAYERS[backbone]
        for branch in self.branches:
            if self.layer not in dict(getattr(network, BRANCHES[modality][branch]).named_modules()):
                raise UserInputError(f"Grad-CAM layer {self.layer!r} is not a module of the {backbone} branches")
        layers = [f"{BRANCHES[modality][b]}.{self.layer}" for b in self.branches]
        self.hooked = ModelWithHooks(copy.deepcopy(network).eval(), layers, register_forward=True, register_backward=True)

    def __call__(self, image: torch.Tensor, branches: list[str], class_index: int = MALIGNANT) -> dict[str, dict[str, torch.Tensor]]:
        """``{branch: {"attention": (B, 1, h, w) at feature size, "gradcam": (B, 1, H, W) at the input size in [0, 1]}}``."""
        image = image.detach().clone().requires_grad_(True)  # the graph reaches the target even with frozen weights
        with record_attention(self.hooked.model, self.modality) as attention, torch.enable_grad():
            _, activations, gradients = self.hooked(image, class_idx=class_index)
        upsample = default_upsampler(image.shape[2:])
        maps = {}
        for branch in branches:
            index = self.branches.index(branch)
            weights = gradients[index].mean(dim=(2, 3), keepdim=True)  # GradCAM: channel weights = mean gradient
            cam = F.relu((weights * activations[index]).sum(1, keepdim=True))
            maps[branch] = {"attention": attention[branch], "gradcam": min_max(upsample(cam)).detach()}
        return maps


def model_heatmaps(model, layer: str | None = None) -> HeatMaps:
    """The ``HeatMaps`` of a loaded model (``bundle.LoadedModel``), built on first use (or again for another ``layer``)."""
    if model.gradcam is None or (layer is not None and model.gradcam.layer != layer):
        model.gradcam = HeatMaps(model.network, model.modality, model.backbone, layer)
    return model.gradcam


def crop_heatmaps(maps: dict[str, dict[str, torch.Tensor]], out_size: int) -> dict[str, dict[str, np.ndarray]]:
    """``HeatMaps`` output (batch of one) upsampled to the out_size x out_size crop, per branch and kind."""
    return {branch: {kind: to_crop(heat[0, 0].cpu(), out_size) for kind, heat in kinds.items()}
            for branch, kinds in maps.items()}


def to_crop(feature_map: torch.Tensor, out_size: int) -> np.ndarray:
    """A (1, 1, h, w) or (h, w) map upsampled bilinearly to the out_size x out_size crop, float32."""
    tensor = torch.as_tensor(feature_map, dtype=torch.float32).reshape(1, 1, *feature_map.shape[-2:])
    return F.interpolate(tensor, size=(out_size, out_size), mode="bilinear", align_corners=False)[0, 0].numpy()


def to_image(crop_map: np.ndarray, box: CropBox, image_shape: tuple[int, int]) -> np.ndarray:
    """A crop-sized map resampled into the source image (rows, cols); 0 outside the crop, float32."""
    crop_rows, crop_cols, inside = box.image_pixels_in_crop(image_shape, crop_map.shape[0])
    values = ndimage.map_coordinates(crop_map.astype(np.float32), [crop_rows, crop_cols], order=1, mode="nearest")
    return np.where(inside, values, 0.0).astype(np.float32)
