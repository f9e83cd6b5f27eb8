"""Running a loaded model on one input fast: memory layout, precision, heat maps from the same pass, warm-up.

* ``prepare_network``: the weights go to channels_last once per loaded model (oneDNN's convolutions
  work in NHWC, so this saves a reorder per convolution: ~1.2x on this CPU, docs/INFERENCE.md).
  Inputs stay NCHW: the fusion network slices its channels, and a 1-channel NCHW tensor already is
  channels_last.
* ``run_model``: logits (averaged over flips with TTA) and the requested heat maps under
  ``precision.autocast`` (bf16 on a CPU with native bf16 for inputs of 128 px or more, fp32
  elsewhere). Grad-CAM shares the forward pass that gives the logits, and its backward pass stops
  at the target layers (``heatmaps.HeatMaps``); the CBAM attention is read by a hook during that
  same pass.
* ``warm_up``: oneDNN creates its kernels for each new input shape and precision on the first call
  (a forward and, for Grad-CAM, a backward pass); one call per model on a blank input, right after
  loading, moves that cost out of the first case (about 0.1 s of CPU per case here; on a busy
  machine PyTorch's OpenMP threads cost far more unless ``OMP_WAIT_POLICY=PASSIVE``,
  docs/INFERENCE.md).
"""

from __future__ import annotations

import time

import torch

from BreastFusionLib.inference.loaded_bundle import LoadedBundle, LoadedModel
from BreastFusionLib.inference.heatmaps import BRANCHES, HEATMAP_KINDS, MALIGNANT, model_heatmaps
from BreastFusionLib.precision import autocast
from BreastFusionLib.transforms import modality_keys


def prepare_network(model: LoadedModel) -> None:
    """Put ``model``'s weights in channels_last, once (TorchScript models are left as they are)."""
    if model.torchscript:
        return
    if not all(p.is_contiguous(memory_format=torch.channels_last) for p in model.network.parameters() if p.dim() == 4):
        model.network.to(memory_format=torch.channels_last)


def model_device(model: LoadedModel) -> torch.device:
    """The device holding ``model``'s weights."""
    return next(model.network.parameters()).device


def run_model(model: LoadedModel, image: torch.Tensor, branches: list[str], kinds: tuple[str, ...] = HEATMAP_KINDS,
              tta: bool = False, class_index: int | None = MALIGNANT, precision: str = "auto",
              ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]], int | None]:
    """Logits (classes,) of ``image`` (1, C, S, S), maps ``{branch: {kind: map}}`` and the class Grad-CAM explained.

    Attention maps are (1, 1, S/32, S/32), Grad-CAM maps (1, 1, S, S), both in [0, 1]; Grad-CAM for
    ``class_index``, or with None for the model's decision (malignant when the malignancy
    probability, before calibration, reaches ``model.threshold``; with ``tta`` on the averaged
    logits); both float32, on the CPU. Maps come from the unflipped image; ``tta`` averages the
    logits over it and its horizontal and vertical flips. No maps from a TorchScript model (it has
    no hooks). On CUDA the same code runs (autocast bf16 or fp16); it is not tested here.
    """
    kinds = () if model.torchscript else kinds
    prepare_network(model)
    device = model_device(model)
    image = image.to(device)
    with autocast(device, precision, image.shape[-1]):
        flipped = []
        if tta:
            with torch.no_grad():
                flipped = [model.network(image.flip(-1)), model.network(image.flip(-2))]

        def combined(logits: torch.Tensor) -> torch.Tensor:
            return torch.stack([logits, *flipped]).float().mean(0) if flipped else logits.float()

        def decision(logits: torch.Tensor) -> int:
            return int(float(torch.softmax(combined(logits)[0], dim=0)[MALIGNANT]) >= model.threshold)

        if kinds:
            logits, maps, explained = model_heatmaps(model).logits_and_maps(
                image, branches, kinds, decision if class_index is None else class_index)
        else:
            with torch.no_grad():
                logits, maps, explained = model.network(image), {}, None
    maps = {branch: {kind: heat.float().cpu() for kind, heat in branch_maps.items()} for branch, branch_maps in maps.items()}
    return combined(logits)[0], maps, explained


def warm_up(bundle: LoadedBundle, heatmaps: bool = True, precision: str = "auto") -> dict[str, float]:
    """Run each model of ``bundle`` once on a blank input of its size; seconds per model.

    Call it right after ``load_bundle`` in a process that will predict cases (a server or worker),
    with the ``heatmaps`` and ``precision`` its cases will use, so that the first case does not pay
    for oneDNN's kernel creation.
    """
    seconds = {}
    for name, model in bundle.models.items():
        channels = len(modality_keys(name))
        image = torch.full((1, channels, model.spatial_size, model.spatial_size), 0.5)
        start = time.perf_counter()
        run_model(model, image, list(BRANCHES[name]), HEATMAP_KINDS if heatmaps else (), precision=precision)
        seconds[name] = time.perf_counter() - start
    return seconds
