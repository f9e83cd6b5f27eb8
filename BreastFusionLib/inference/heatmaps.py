"""Heat maps of one prediction: CBAM attention and Grad-CAM of the last stage, one per branch.

* Attention: where the last-stage features that CBAM lets through are strongest, for either class:
  the L2 norm over channels of the output of the last CBAM block (the features after its channel
  and spatial gates), read with a forward hook. Read this way rather than as the spatial gate
  alone, it peaks on the lesion far more often: on BUSI the gate hit the lesion less often than a
  mark at the crop centre (docs/INFERENCE.md, pointing game).
* Grad-CAM on the last-stage map of each branch (``TARGET_LAYERS``), for a chosen class (in
  ``predict_case``, the class the model decided): one forward pass (the same that gives the logits)
  and one backward pass that stops at the target layers give every branch's map, computed as
  ``monai.visualize.GradCAM`` does (a test pins the equality). MONAI's default ``postprocessing``
  maps (min, max) to (1, 0), i.e. it flips the map so that the most important region looks least
  important; ``min_max`` below keeps high = important.

Both are scaled to [0, 1] per map (``min_max``). For an ensemble (``networks.EnsembleClassifier``) each
member's maps come from the same forward and backward pass (Grad-CAM of the ensemble's output), are
scaled to [0, 1] one by one, averaged and scaled again: the members' mean map. They come at the network's feature resolution
(spatial_size / 32): Grad-CAM is upsampled to the input size (as MONAI does), then both are
upsampled bilinearly to the 300x300 crop and mapped back into the original image (US: the image's
rows x cols; CT: the axial slice ``volume.hu[slice_index]``) through the crop's ``CropBox``; pixels
outside the crop are 0.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack, contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import default_upsampler
from scipy import ndimage
from torch import nn

from BreastFusionLib.crop import CropBox
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.networks.ensemble import EnsembleClassifier

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


def branch_backbones(network: nn.Module, modality: str, branch: str) -> list[nn.Module]:
    """The backbone of ``branch`` in ``network``: one per member of an ensemble, else one."""
    networks = list(network.members) if isinstance(network, EnsembleClassifier) else [network]
    return [getattr(member, BRANCHES[modality][branch]) for member in networks]


def mean_map(maps: list[torch.Tensor]) -> torch.Tensor:
    """The members' maps, each scaled to [0, 1], averaged and scaled again (one member: ``min_max`` of its map)."""
    return min_max(torch.stack([min_max(heat) for heat in maps]).mean(0))


@contextmanager
def record_attention(network: nn.Module, modality: str):
    """While active, ``maps[branch]`` lists each member's attention map (B, 1, h, w) of the last forward pass
    (one entry for a single network): the L2 norm over channels of the last CBAM block's output
    (``attention_module()``, its last gate), not scaled."""
    maps: dict[str, list[torch.Tensor | None]] = {}
    handles = []
    for branch in BRANCHES[modality]:
        backbones = branch_backbones(network, modality, branch)
        maps[branch] = [None] * len(backbones)
        for index, backbone in enumerate(backbones):
            def hook(_module, _inputs, output, branch=branch, index=index):
                maps[branch][index] = output.detach().float().norm(dim=1, keepdim=True)

            handles.append(backbone.attention_module().register_forward_hook(hook))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


class HeatMaps:
    """Attention and Grad-CAM of every branch of one network, from the forward pass that gives the logits.

    During a call, forward hooks read each branch's last CBAM block (``record_attention``) and make
    each Grad-CAM target's output the start of a new autograd graph (a leaf that requires grad), so
    the backward pass runs only from the logits back to the targets (for the last stage: pooling and
    head), not through the whole network to the input as with MONAI's ``GradCAM``; the gradients at
    the targets are the same. The hooks are removed after each call: the network itself is used (no
    copy) and can still be scripted.
    """

    def __init__(self, network: nn.Module, modality: str, backbone: str, layer: str | None = None) -> None:
        """``layer``: the Grad-CAM target inside each branch's backbone (default ``TARGET_LAYERS[backbone]``)."""
        self.network, self.modality = network, modality
        self.layer = layer or TARGET_LAYERS[backbone]
        self.targets: dict[str, list[nn.Module]] = {}  # per branch, the target module of each member
        for branch in BRANCHES[modality]:
            backbones = branch_backbones(network, modality, branch)
            if self.layer not in dict(backbones[0].named_modules()):
                raise UserInputError(f"Grad-CAM layer {self.layer!r} is not a module of the {backbone} branches")
            self.targets[branch] = [b.get_submodule(self.layer) for b in backbones]

    def logits_and_maps(self, image: torch.Tensor, branches: list[str], kinds: tuple[str, ...] = HEATMAP_KINDS,
                        class_index: int | Callable[[torch.Tensor], int] = MALIGNANT,
                        ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]], int | None]:
        """The logits (B, classes) of ``image``, ``{branch: {kind: map}}`` and the class Grad-CAM explained.

        Attention maps are (B, 1, S/32, S/32), Grad-CAM maps (B, 1, S, S), both in [0, 1]; Grad-CAM for
        ``class_index``, or for the class that ``class_index(logits)`` picks after the forward pass
        (e.g. the model's decision). Without "gradcam" in ``kinds`` no gradient is computed and the
        explained class is None.
        """
        activations: dict[str, list[torch.Tensor | None]] = {b: [None] * len(t) for b, t in self.targets.items()}

        def start_graph(output, branch, index):
            activations[branch][index] = output.detach().requires_grad_(True)
            return activations[branch][index]

        gradcam = "gradcam" in kinds
        with ExitStack() as stack:
            if gradcam:
                for branch, targets in self.targets.items():
                    for index, target in enumerate(targets):
                        stack.callback(target.register_forward_hook(
                            lambda m, i, o, b=branch, k=index: start_graph(o, b, k)).remove)
            attention = stack.enter_context(record_attention(self.network, self.modality)) if "attention" in kinds else {}
            member_logits = []  # an ensemble's members' own logits: each member's Grad-CAM is its own, as alone
            if gradcam and isinstance(self.network, EnsembleClassifier):
                for member in self.network.members:
                    stack.callback(member.register_forward_hook(lambda m, i, o: member_logits.append(o)).remove)
            stack.enter_context(torch.enable_grad() if gradcam else torch.no_grad())
            logits = self.network(image)
            explained = None
            if gradcam:
                explained = class_index(logits.detach()) if callable(class_index) else class_index
                wanted = [a for branch in branches for a in activations[branch]]
                score = sum(out[:, explained].sum() for out in member_logits or [logits])
                gradients = torch.autograd.grad(score, wanted, allow_unused=True) if wanted else []
        maps: dict[str, dict[str, torch.Tensor]] = {branch: {} for branch in branches}
        for branch in branches:
            if "attention" in kinds:
                maps[branch]["attention"] = mean_map(attention[branch])
        if gradcam:
            upsample = default_upsampler(image.shape[2:])
            gradient_of = dict(zip(((b, k) for b in branches for k in range(len(activations[b]))), gradients))
            for branch in branches:
                cams = []
                for index, activation in enumerate(activations[branch]):
                    gradient = gradient_of[branch, index]
                    activation = activation.detach().float()
                    gradient = torch.zeros_like(activation) if gradient is None else gradient.float()
                    weights = gradient.mean(dim=(2, 3), keepdim=True)  # GradCAM: channel weights = mean gradient
                    cams.append(upsample(F.relu((weights * activation).sum(1, keepdim=True))))
                maps[branch]["gradcam"] = mean_map(cams)
        return logits.detach(), maps, explained

    def __call__(self, image: torch.Tensor, branches: list[str],
                 class_index: int = MALIGNANT) -> dict[str, dict[str, torch.Tensor]]:
        """``{branch: {kind: map}}`` for ``branches``, Grad-CAM for ``class_index`` (``logits_and_maps``)."""
        return self.logits_and_maps(image, branches, HEATMAP_KINDS, class_index)[1]


def model_heatmaps(model, layer: str | None = None) -> HeatMaps:
    """The ``HeatMaps`` of a loaded model (``loaded_bundle.LoadedModel``), built on first use (or again for another ``layer``)."""
    if model.heatmaps is None or (layer is not None and model.heatmaps.layer != layer):
        model.heatmaps = HeatMaps(model.network, model.modality, model.backbone, layer)
    return model.heatmaps


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
    image = np.zeros(image_shape, np.float32)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return image
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the crop's rectangle in the image
    values = ndimage.map_coordinates(crop_map.astype(np.float32), [crop_rows[window], crop_cols[window]],
                                     order=1, mode="nearest")
    image[window] = np.where(inside[window], values, 0.0)
    return image
