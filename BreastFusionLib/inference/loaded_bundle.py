"""Load a trained BreastFusion bundle once: networks, operating thresholds and calibration temperatures.

Bundle folder layout (what ``python -m monai.bundle run training|evaluating`` writes under
``bundle_root``): ``models/<m>/model.pt`` (best checkpoint, a state dict; or ``model.ts``, TorchScript;
or ``ensemble.json``, a cross-validation ensemble whose members are bundle folders of their own,
``bundle.ensemble``),
``runs/<m>/metrics.json`` (threshold, temperature, and the input size and backbone the model was
evaluated with; read by ``inference.records``; without a temperature the probability stays uncalibrated
and ``LoadedBundle.notes`` says so), else ``configs/inference.json`` or ``configs/train.json`` (``spatial_size``), and
``configs/metadata.json`` (``version``). A bundle without ``configs/`` (the demo writes none) is read
with the repository's configs; ``spatial_size`` can always be given explicitly.

The backbone each model was trained with is read from its checkpoint's parameter names (Lite0:
``_conv_stem``; ResNet-50: ``layer4``) and must agree with the ``backbone`` that evaluation recorded
in ``runs/<m>/metrics.json``, when it did.

Checkpoints are loaded with ``torch.load(weights_only=True)``: an untrusted file is never unpickled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.records import (ENSEMBLE_FILE, read_ensemble_members, read_json, read_member_record,
                                              read_model_record)
from BreastFusionLib.networks import MODALITIES, EnsembleClassifier, build_classifier
from BreastFusionLib.transform_config import REPOSITORY_CONFIGS

ARCHITECTURES = {"cbam_resnet50": "CBAM-ResNet-50", "cbam_efficientnet_lite0": "CBAM-EfficientNet-Lite0"}


@dataclass
class LoadedModel:
    """One trained model, ready for prediction (eval mode, CPU or ``device``)."""

    modality: str
    network: nn.Module
    threshold: float
    temperature: float
    spatial_size: int
    checkpoint: Path
    sha256: str
    backbone: str  # "cbam_resnet50" or "cbam_efficientnet_lite0"
    device: torch.device = torch.device("cpu")
    torchscript: bool = False
    heatmaps: Any = field(default=None, repr=False)  # heatmaps.HeatMaps (attention and Grad-CAM), built on first use
    members: tuple[tuple[Path, str], ...] = ()  # an ensemble's member checkpoints and their SHA-256 (network: EnsembleClassifier)


@dataclass
class LoadedBundle:
    """The models loaded from one bundle folder, and where they came from."""

    root: Path
    version: str | None
    models: dict[str, LoadedModel] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a user should know about the loaded models


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file (names the exact checkpoint in reports)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _configs_dir(root: Path) -> Path:
    own = root / "configs"
    return own if (own / "inference.json").is_file() or (own / "train.json").is_file() else REPOSITORY_CONFIGS


def _spatial_size(configs: Path) -> int:
    for name in ("inference.json", "train.json"):
        path = configs / name
        if path.is_file():
            value = read_json(path).get("spatial_size")
            if isinstance(value, (int, float)) and value > 0:
                return int(value)
    raise UserInputError(f"{configs}: no 'spatial_size' in inference.json or train.json")


def checkpoint_backbone(checkpoint: Path, modality: str, keys) -> str:
    """The backbone whose parameter names ``keys`` (of ``checkpoint``) holds."""
    found = ("cbam_efficientnet_lite0" if any("_conv_stem" in k for k in keys)
             else "cbam_resnet50" if any("layer4" in k for k in keys) else None)
    if found is None:
        raise UserInputError(f"{checkpoint}: not a checkpoint of a {modality} BreastFusion classifier (neither "
                             f"CBAM-ResNet-50 'layer4' nor CBAM-EfficientNet-Lite0 '_conv_stem' weights)")
    return found


def read_state_dict(checkpoint: Path, device: torch.device | str = "cpu") -> dict:
    """The model weights of a ``model.pt`` (or of a resume checkpoint), loaded with ``weights_only=True``."""
    try:
        state = torch.load(checkpoint, map_location=device, weights_only=True)
    except Exception as error:  # pickle, zip and weights-only errors come in many types
        raise UserInputError(f"{checkpoint}: not a loadable weights-only checkpoint "
                             f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a resume checkpoint {"model": ..., "optimizer": ...}
    if not isinstance(state, dict):
        raise UserInputError(f"{checkpoint}: holds a {type(state).__name__}, not a state dict")
    return state


def _backbone(checkpoint: Path, modality: str, keys, recorded: str | None) -> str:
    """The backbone whose parameter names ``keys`` holds, checked against the one metrics.json ``recorded``."""
    found = checkpoint_backbone(checkpoint, modality, keys)
    if recorded is not None and recorded != found:
        raise UserInputError(f"{checkpoint}: holds {ARCHITECTURES[found]} weights, but runs/{modality}/metrics.json "
                             f"says the model was evaluated with backbone {recorded!r}")
    return found


def _load_network(checkpoint: Path, modality: str, device: torch.device, recorded: str | None) -> tuple[nn.Module, str]:
    """The network in ``checkpoint`` (eval mode, frozen) and its backbone."""
    if checkpoint.suffix == ".ts":
        try:
            network = torch.jit.load(str(checkpoint), map_location=device).eval()
        except (RuntimeError, ValueError) as error:
            raise UserInputError(f"{checkpoint}: not a loadable TorchScript model ({error})") from None
        return network, _backbone(checkpoint, modality, network.state_dict(), recorded)
    state = read_state_dict(checkpoint, device)
    backbone = _backbone(checkpoint, modality, state, recorded)
    network = build_classifier(modality, backbone=backbone)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        missing, unexpected = network.state_dict().keys() - state.keys(), state.keys() - network.state_dict().keys()
        detail = (f"{len(missing)} missing keys (e.g. {sorted(missing)[:3]}), {len(unexpected)} unexpected keys "
                  f"(e.g. {sorted(unexpected)[:3]})") if missing or unexpected else str(error).splitlines()[-1].strip()[:300]
        raise UserInputError(f"{checkpoint}: not a checkpoint of the {modality} {ARCHITECTURES[backbone]} classifier "
                             f"(another architecture or modality: {detail})") from None
    return network.to(device).eval().requires_grad_(False), backbone  # Grad-CAM needs activation gradients only


def load_ensemble(root: Path, modality: str, device: torch.device | str = "cpu",
                  ) -> tuple[EnsembleClassifier, str, int | None, tuple[Path, ...]]:
    """The ensemble of ``models/<modality>/ensemble.json`` in ``root``: network (eval mode), backbone, input size, member checkpoints.

    Each member is a bundle folder with ``models/<m>/model.pt`` and ``runs/<m>/metrics.json`` holding its
    temperature; members must share backbone and input size.
    """
    networks, temperatures, backbones, sizes, checkpoints = [], [], set(), set(), []
    for folder in read_ensemble_members(root, modality):
        record = read_member_record(folder, modality)
        checkpoint = folder / "models" / modality / "model.pt"
        network, backbone = _load_network(checkpoint, modality, torch.device(device), record.backbone)
        networks.append(network)
        temperatures.append(record.temperature)
        backbones.add(backbone)
        sizes.add(record.spatial_size)
        checkpoints.append(checkpoint)
    if len(backbones) > 1 or len(sizes) > 1:
        raise UserInputError(f"{root / 'models' / modality / ENSEMBLE_FILE}: the members differ in backbone or input size "
                             f"({sorted(backbones)}, {sorted(sizes, key=str)}); an ensemble needs one of each")
    network = EnsembleClassifier(networks, temperatures).to(device).eval().requires_grad_(False)
    return network, backbones.pop(), sizes.pop(), tuple(checkpoints)


def load_bundle(root: str | Path, modalities: tuple[str, ...] | list[str] = MODALITIES, spatial_size: int | None = None,
                device: str | torch.device = "cpu") -> LoadedBundle:
    """Load the ``modalities`` ("us", "ct", "fusion") of the trained bundle in ``root``, once.

    Each checkpoint is loaded into the backbone its parameter names show (see the module docstring).
    Raises ``UserInputError`` naming what is missing (folder, checkpoint, metrics.json) or the
    checkpoint that fits neither backbone, contradicts metrics.json or does not fit the architecture.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"bundle folder not found: {root}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise UserInputError(f"models must be among {', '.join(MODALITIES)}, got {', '.join(modalities) or 'none'}")
    if not (root / "models").is_dir():
        raise UserInputError(f"{root} is not a trained BreastFusion bundle: it has no models/ folder "
                             f"(expected models/<us|ct|fusion>/model.pt and runs/<model>/metrics.json)")
    configs = _configs_dir(root)
    size = int(spatial_size) if spatial_size else _spatial_size(configs)
    metadata = configs / "metadata.json"
    version = read_json(metadata).get("version") if metadata.is_file() else None
    device = torch.device(device)
    bundle = LoadedBundle(root=root, version=version)
    for modality in modalities:
        folder = root / "models" / modality
        candidates = [folder / "model.pt", folder / "model.ts", folder / ENSEMBLE_FILE]
        checkpoint = next((c for c in candidates if c.is_file()), None)
        if checkpoint is None:
            raise UserInputError(f"bundle {root}: models/{modality}/model.pt (or model.ts, or ensemble.json) is missing: "
                                 f"train the {modality} model or leave it out of --models")
        record = read_model_record(root, modality)
        if record.temperature is None:
            bundle.notes.append(f"runs/{modality}/metrics.json has no calibration temperature (written before "
                                f"calibration existed): the {modality} probability is uncalibrated; re-run evaluating")
        members: tuple[tuple[Path, str], ...] = ()
        if checkpoint.name == ENSEMBLE_FILE:
            network, backbone, members_size, member_files = load_ensemble(root, modality, device)
            if record.backbone not in (None, backbone):
                raise UserInputError(f"{checkpoint}: the members hold {ARCHITECTURES[backbone]} weights, but "
                                     f"runs/{modality}/metrics.json records backbone {record.backbone!r}")
            members = tuple((f, sha256(f)) for f in member_files)
            record_size = record.spatial_size or members_size
        else:
            network, backbone = _load_network(checkpoint, modality, device, record.backbone)
            record_size = record.spatial_size
        model_size = int(spatial_size) if spatial_size else (record_size or size)
        bundle.models[modality] = LoadedModel(modality, network, record.threshold, record.temperature or 1.0, model_size,
                                              checkpoint, sha256(checkpoint), backbone, device,
                                              torchscript=checkpoint.suffix == ".ts", members=members)
    return bundle
