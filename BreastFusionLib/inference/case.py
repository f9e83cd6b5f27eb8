"""Predict one case from raw inputs with models loaded once: crops, calibrated probabilities, heat maps.

The preprocessing is the training path: ``us_lesion_crop`` / ``ct_axial_crop`` with the same
lesion-to-crop ratio and 300x300 size as ``cohort.prepare``, then the bundle's ``array_preprocessing``
(``configs/inference.json``, read by ``transform_config.inference_transforms``: 8-bit quantisation like
the training PNGs, then the training configs' resize to the model's ``spatial_size`` and stacking).

Fusion with a missing modality: the fusion network treats an all-zero modality as absent (its
branch's features are zeroed; training used modality dropout). When only US or only CT is given,
the fusion model is run that way and ``missing_modality`` says which one was absent.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from BreastFusionLib.crop import DEFAULT_LESION_FRACTION, DEFAULT_OUT_SIZE, LesionCrop
from BreastFusionLib.ct.crop import apply_window, ct_axial_crop
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.loaded_bundle import LoadedBundle, LoadedModel
from BreastFusionLib.inference.calibration import apply_temperature
from BreastFusionLib.inference.heatmaps import BRANCHES, HEATMAP_KINDS, MALIGNANT, crop_heatmaps, to_image
from BreastFusionLib.inference.runtime import model_device, run_model
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.points import LesionLocation, locate_lesion
from BreastFusionLib.networks.ensemble import EnsembleClassifier, record_member_probabilities
from BreastFusionLib.precision import autocast_dtype
from BreastFusionLib.transform_config import inference_transforms
from BreastFusionLib.transforms import modality_keys
from BreastFusionLib.us.crop import us_lesion_crop
from BreastFusionLib.us.io import USImage, load_us_image

# A reduced-precision (bf16) answer whose network probability (before calibration) is this close to
# the threshold is recomputed in fp32, so that bf16 does not change decisions: on the demo's models
# bf16 moved that probability by at most 0.011 (0.015 after calibration; training/compare_precision.py).
FP32_NEAR_THRESHOLD = 0.03


@dataclass
class ModelResult:
    """One model's answer. ``probability`` and ``threshold`` are calibrated (temperature scaling);
    ``raw_*`` are the network's softmax and the validation threshold before calibration. For an ensemble,
    ``probability`` is the mean of ``members`` (each calibrated by its own temperature) and the temperature is 1."""

    probability: float
    threshold: float
    decision: str
    missing_modality: str | None
    raw_probability: float
    raw_threshold: float
    temperature: float
    members: tuple[float, ...] = ()  # an ensemble's members' calibrated probabilities (their spread: its uncertainty)


@dataclass
class CaseResult:
    """Everything ``predict_case`` computed; heat maps in original image coordinates and in crop coordinates."""

    models: dict[str, ModelResult]
    crops: dict[str, LesionCrop]
    images: dict[str, np.ndarray]  # "us": grey US image, "ct": windowed axial slice through the lesion, in [0, 1]
    location: LesionLocation | None
    heatmaps: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    crop_heatmaps: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    heatmap_class: dict[str, int] = field(default_factory=dict)  # per model, the class its Grad-CAM explains (1 malignant)
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _Timer:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] = round(self.timings.get(self.name, 0.0) + time.perf_counter() - self.start, 4)


def default_models(candidates, have: set[str]) -> list[str]:
    """The models among ``candidates`` that the inputs ``have`` ("us", "ct") allow: fusion needs either."""
    return [m for m in candidates if (bool(have) if m == "fusion" else m in have)]


def _models_to_run(bundle: LoadedBundle, models, have: set[str]) -> list[str]:
    """``models`` checked against the inputs; by default every loaded model the inputs allow."""
    if models is None:
        return default_models(bundle.models, have)
    for m in models:
        if m not in bundle.models:
            raise UserInputError(f"model {m!r} was not loaded from the bundle (loaded: {', '.join(bundle.models)})")
        if m == "fusion" and not have:
            raise UserInputError("the fusion model needs a US image or a CT (or both)")
        if m != "fusion" and m not in have:
            raise UserInputError(f"the {m} model needs {'a US image' if m == 'us' else 'a CT'}: give it or leave {m} out of the models")
    return list(models)


def model_input(modality: str, crops: dict[str, LesionCrop], spatial_size: int, configs: Path | None = None) -> torch.Tensor:
    """The network input (1, C, S, S); a missing fusion modality is an all-zero channel (what the network reads as absent).

    ``configs``: the bundle's configs folder, whose inference.json defines the preprocessing (None, or a
    folder without it: the repository's; ``transform_config.serving_config``).
    """
    data = {key: (crops[key].pixels if key in crops else np.zeros((DEFAULT_OUT_SIZE,) * 2, np.float32))
            for key in modality_keys(modality)}
    return torch.as_tensor(inference_transforms(modality, int(spatial_size), configs)(data)["image"])[None]


def _heatmap_plan(heatmaps: bool | Collection[str], heatmap_models: Collection[str] | None,
                  models: list[str]) -> dict[str, tuple[str, ...]]:
    """Which heat-map kinds each model gets: ``heatmaps`` is True (all kinds), False or kinds; ``heatmap_models`` limits the models."""
    if isinstance(heatmaps, bool):
        kinds = HEATMAP_KINDS if heatmaps else ()
    else:
        unknown = [k for k in heatmaps if k not in HEATMAP_KINDS]
        if unknown:
            raise UserInputError(f"heat map kinds must be among {', '.join(HEATMAP_KINDS)}, got {', '.join(map(str, unknown))}")
        kinds = tuple(k for k in HEATMAP_KINDS if k in heatmaps)
    if heatmap_models is not None:
        unknown = [m for m in heatmap_models if m not in models]
        if unknown:
            raise UserInputError(f"heat maps were asked for {', '.join(map(str, unknown))}, which will not run "
                                 f"(models: {', '.join(models)})")
    return {m: kinds if heatmap_models is None or m in heatmap_models else () for m in models}


def _malignancy(model: LoadedModel, image: torch.Tensor, branches: list[str], kinds: tuple[str, ...], tta: bool,
                class_index: int | None, precision: str) -> tuple[float, dict, int | None, tuple[float, ...]]:
    """The network's malignancy probability (before calibration), heat maps, the class they explain
    (``runtime.run_model``) and, for an ensemble, each member's calibrated probability (mean over TTA flips).

    A reduced-precision answer within ``FP32_NEAR_THRESHOLD`` of the threshold (both before
    calibration, which keeps their order) is recomputed in fp32, heat maps included, so that the
    maps explain the fp32 decision.
    """
    def run(run_precision: str) -> tuple[float, dict, int | None, tuple[float, ...]]:
        if not isinstance(model.network, EnsembleClassifier):
            logits, maps, explained = run_model(model, image, branches, kinds, tta, class_index, run_precision)
            return float(torch.softmax(logits, dim=0)[MALIGNANT]), maps, explained, ()
        with record_member_probabilities(model.network) as calls:
            logits, maps, explained = run_model(model, image, branches, kinds, tta, class_index, run_precision)
        members = tuple(float(torch.stack(member)[:, 0, MALIGNANT].mean()) for member in calls)
        return float(torch.softmax(logits, dim=0)[MALIGNANT]), maps, explained, members

    answer = run(precision)
    near = abs(answer[0] - model.threshold) < FP32_NEAR_THRESHOLD
    if near and autocast_dtype(model_device(model), precision, model.spatial_size) is not None:
        answer = run("fp32")
    return answer


def predict_case(
    bundle: LoadedBundle,
    us_image: USImage | str | Path | None = None,
    us_box: tuple[float, float, float, float] | None = None,
    us_mask: np.ndarray | None = None,
    ct: CTVolume | str | Path | None = None,
    ct_point: np.ndarray | None = None,
    clock: tuple[str, float, float] | ClockPosition | None = None,
    lesion_diameter_mm: float | None = None,
    models: list[str] | None = None,
    heatmaps: bool | Collection[str] = True,
    tta: bool = False,
    class_index: int | None = None,
    heatmap_models: Collection[str] | None = None,
    precision: str = "auto",
) -> CaseResult:
    """Calibrated probability, threshold and decision of each model on one case, with crops and heat maps.

    US: ``us_image`` (a ``USImage`` or a file) and the lesion as ``us_box`` (x0, y0, x1, y1) pixels or
    ``us_mask``. CT: ``ct`` (a ``CTVolume`` or a path) and the lesion as ``ct_point`` (RAS mm) or
    ``clock`` = (side, hour, distance_mm). ``models`` defaults to every loaded model the inputs allow.
    ``tta`` averages the logits over horizontal and vertical flips (the training augmentation).
    ``heatmaps``: True (attention and Grad-CAM), False, or the kinds wanted ("attention", "gradcam");
    ``heatmap_models`` limits them to those models (default: every model run). Grad-CAM explains
    ``class_index`` (0 benign, 1 malignant), by default each model's decision. ``precision``
    "auto" runs bf16 autocast on a CPU with native bf16 for inputs of 128 px or more (fp32
    elsewhere; ``BreastFusionLib.precision``) and recomputes in fp32 an answer within
    ``FP32_NEAR_THRESHOLD`` of the threshold; "fp32" forces fp32.
    """
    timings: dict[str, float] = {}
    notes: list[str] = list(bundle.notes)
    crops: dict[str, LesionCrop] = {}
    images: dict[str, np.ndarray] = {}
    location = None
    if us_image is not None:
        crops["us"], images["us"] = _us_crop(us_image, us_box, us_mask, timings)
    elif us_box is not None or us_mask is not None:
        raise UserInputError("a US lesion box or mask was given without a US image")
    if ct is not None:
        crops["ct"], images["ct"], location = _ct_crop(ct, ct_point, clock, lesion_diameter_mm, timings)
        if location.message:
            notes.append(location.message)
    elif ct_point is not None or clock is not None:
        raise UserInputError("a CT lesion point or clock position was given without a CT")
    result = CaseResult({}, crops, images, location, timings_s=timings, notes=notes)
    names = _models_to_run(bundle, models, set(crops))
    plan = _heatmap_plan(heatmaps, heatmap_models, names)
    for name in names:
        _run_one_model(bundle, name, plan[name], result, tta, class_index, precision)
    return result


def _us_crop(us_image: USImage | str | Path, us_box, us_mask, timings: dict[str, float]) -> tuple[LesionCrop, np.ndarray]:
    """The US lesion crop (from the box or mask) and the grey image it was cut from."""
    if not isinstance(us_image, USImage):
        with _Timer(timings, "load_us"):
            us_image = load_us_image(us_image)
    if us_mask is not None and tuple(np.shape(us_mask)) != us_image.shape:
        raise UserInputError(f"the lesion mask is {np.shape(us_mask)[0]}x{np.shape(us_mask)[1]} pixels, "
                             f"the US image {us_image.shape[0]}x{us_image.shape[1]}: they must match")
    if us_mask is not None and not np.any(us_mask):
        raise UserInputError("the US lesion mask is empty: no pixel marks the lesion")
    with _Timer(timings, "crop_us"):
        crop = us_lesion_crop(us_image, mask=us_mask, box=us_box, lesion_fraction=DEFAULT_LESION_FRACTION,
                              out_size=DEFAULT_OUT_SIZE)
    return crop, us_image.grey()


def _ct_crop(ct: CTVolume | str | Path, ct_point, clock, lesion_diameter_mm: float | None,
             timings: dict[str, float]) -> tuple[LesionCrop, np.ndarray, LesionLocation]:
    """The CT lesion located (``locate_lesion``) and cropped, and the windowed axial slice through it."""
    if not isinstance(ct, CTVolume):
        with _Timer(timings, "load_ct"):
            ct = load_ct(ct)
    if isinstance(clock, tuple):
        clock = ClockPosition(*clock)
    if ct_point is None and clock is None:
        raise UserInputError("the CT lesion needs a point (x,y,z RAS mm) or side + clock + distance from the nipple")
    with _Timer(timings, "localize_ct"):
        location = locate_lesion(ct, point_ras=ct_point, position=clock if ct_point is None else None,
                                 side=clock.side if clock is not None else None)
    with _Timer(timings, "crop_ct"):
        crop = ct_axial_crop(ct, location.point_ras, lesion_diameter_mm=lesion_diameter_mm,
                             lesion_fraction=DEFAULT_LESION_FRACTION, out_size=DEFAULT_OUT_SIZE)
    return crop, apply_window(ct.hu[crop.slice_index]), location


def _present_branches(name: str, image: torch.Tensor, crops: dict[str, LesionCrop], notes: list[str]) -> list[str]:
    """The branches of model ``name`` that have a crop; for fusion, an all-black crop counts as missing (noted)."""
    present = [b for b in BRANCHES[name] if b in crops]
    if name != "fusion":
        return present
    channels = dict(zip(modality_keys(name), image[0]))
    for branch in present:
        if not channels[branch].any():
            notes.append(f"the {branch} crop is entirely black after windowing: the fusion model treats it as missing")
    return [b for b in present if channels[b].any()]


def _run_one_model(bundle: LoadedBundle, name: str, kinds: tuple[str, ...], result: CaseResult, tta: bool,
                   class_index: int | None, precision: str) -> None:
    """Model ``name`` on the case's crops: its calibrated answer and, for ``kinds``, its heat maps, into ``result``."""
    model, timings, crops = bundle.models[name], result.timings_s, result.crops
    with _Timer(timings, f"preprocess_{name}"):
        image = model_input(name, crops, model.spatial_size, bundle.root / "configs").to(model.device)
    present = _present_branches(name, image, crops, result.notes)
    missing = next((b for b in BRANCHES[name] if b not in present), None) if name == "fusion" else None
    if kinds and model.torchscript:
        result.notes.append(f"no heat maps for the {name} model: it was loaded from TorchScript (model.ts), which has no hooks")
        kinds = ()
    with _Timer(timings, f"forward_{name}"):  # with Grad-CAM: its backward pass to the last stage too
        raw, network_maps, explained, members = _malignancy(model, image, present, kinds, tta, class_index, precision)
    probability = apply_temperature(raw, model.temperature)
    threshold = apply_temperature(model.threshold, model.temperature)
    result.models[name] = ModelResult(probability, threshold, "malignant" if probability >= threshold else "benign",
                                      missing, raw, model.threshold, model.temperature, members)
    if not kinds:
        return
    if explained is not None:
        result.heatmap_class[name] = explained
    with _Timer(timings, f"heatmaps_{name}"):
        result.crop_heatmaps[name] = crop_heatmaps(network_maps, DEFAULT_OUT_SIZE)
        result.heatmaps[name] = {branch: {kind: to_image(heat, crops[branch].box, result.images[branch].shape[:2])
                                          for kind, heat in branch_maps.items()}
                                 for branch, branch_maps in result.crop_heatmaps[name].items()}
