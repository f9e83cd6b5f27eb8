"""What evaluating needs to know about a trained model, read from the model and its records, never guessed.

- ``models/<m>/model_settings.json``, written when training starts: ``backbone`` and ``spatial_size``;
- the checkpoint's parameter names, which show its backbone (``inference.loaded_bundle.checkpoint_backbone``);
- ``runs/<m>/metrics.json``, written by the evaluation on the training run's own validation split:
  the operating threshold and calibration temperature (``inference.records``), which an evaluation
  on another data set uses unchanged.

A value given on the command line (``--backbone``, ``--spatial_size``) must agree with these; two
sources that disagree are a one-line error naming both. A cross-validation ensemble
(``models/<m>/ensemble.json``, ``bundle.ensemble``) is read member by member, each as above.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from BreastFusionLib.bundle.checkpoints import exit_on_user_error
from BreastFusionLib.errors import UserInputError
from torch import nn

from BreastFusionLib.inference.loaded_bundle import ARCHITECTURES, checkpoint_backbone, load_ensemble, read_state_dict
from BreastFusionLib.inference.records import ENSEMBLE_FILE, ModelRecord, read_ensemble_members, read_json, read_model_record
from BreastFusionLib.networks import build_classifier

SETTINGS_FILE = "model_settings.json"


@dataclass(frozen=True)
class TrainedModel:
    """A trained checkpoint with the backbone and input size it was trained with (and its record, when asked for)."""

    modality: str
    checkpoint: Path
    backbone: str
    spatial_size: int
    record: ModelRecord | None = None  # threshold and temperature from the training run's validation
    members: tuple["TrainedModel", ...] = ()  # an ensemble's members (``checkpoint`` is then its ensemble.json)

    def network(self) -> nn.Module:
        """The network to evaluate: for one model, the classifier to fill from ``checkpoint`` (the bundle's
        ``CheckpointLoader`` does); for an ensemble, its members loaded into an ``EnsembleClassifier``."""
        if not self.members:
            return build_classifier(self.modality, backbone=self.backbone)
        return load_ensemble(self.checkpoint.parents[2], self.modality)[0]


def write_model_settings(ckpt_dir: str, modality: str, backbone: str, spatial_size: int) -> str:
    """Record the backbone and input size of the model being trained beside its checkpoint."""
    path = Path(ckpt_dir) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"modality": modality, "backbone": backbone, "spatial_size": int(spatial_size)}, indent=2))
    return str(path)


def _agreed(what: str, modality: str, sources: list[tuple[str, object]]) -> object | None:
    """The one value the named ``sources`` give (None when none gives one); disagreement is an error."""
    given = [(name, value) for name, value in sources if value is not None]
    for name, value in given[1:]:
        if value != given[0][1]:
            raise UserInputError(f"the {modality} model's {what} is {given[0][1]!r} according to {given[0][0]} but "
                                 f"{value!r} according to {name}; leave --{what} out to use the trained one")
    return given[0][1] if given else None


@exit_on_user_error()
def trained_model(bundle_root: str, modality: str, ckpt_dir: str, backbone: str | None = None,
                  spatial_size: int | None = None, need_record: bool = False) -> TrainedModel:
    """The checkpoint ``<ckpt_dir>/model.pt`` with its backbone and input size, checked against every record.

    ``backbone`` / ``spatial_size``: what the user passed (None: take the trained one). With
    ``need_record``, ``runs/<modality>/metrics.json`` (threshold, temperature) must exist. Called from the
    bundle's configs: a problem ends the run with a one-line message.
    """
    checkpoint = Path(ckpt_dir) / "model.pt"
    ensemble = Path(ckpt_dir) / ENSEMBLE_FILE
    if not checkpoint.is_file() and ensemble.is_file():
        return _trained_ensemble(bundle_root, modality, ensemble, backbone, spatial_size, need_record)
    if not checkpoint.is_file():
        raise UserInputError(f"no trained {modality} model at {checkpoint}: train it first "
                             f"(python -m monai.bundle run training ... --modality {modality}) or pass --ckpt_dir")
    settings_path = Path(ckpt_dir) / SETTINGS_FILE
    settings = read_json(settings_path) if settings_path.is_file() else {}
    record = read_model_record(Path(bundle_root), modality) if need_record else None
    found = checkpoint_backbone(checkpoint, modality, read_state_dict(checkpoint).keys())
    if backbone is not None and backbone != found:
        raise UserInputError(f"--backbone {backbone} contradicts {checkpoint}, which holds {ARCHITECTURES[found]} "
                             f"weights ({found}); leave --backbone out to use the trained one")
    _agreed("backbone", modality, [(str(checkpoint), found), (str(settings_path), settings.get("backbone")),
                                   (f"runs/{modality}/metrics.json", record and record.backbone)])
    size = _agreed("spatial_size", modality, [("--spatial_size", spatial_size and int(spatial_size)),
                                              (str(settings_path), settings.get("spatial_size")),
                                              (f"runs/{modality}/metrics.json", record and record.spatial_size)])
    if size is None:
        raise UserInputError(f"the input size of the {modality} model is not recorded ({settings_path} is missing, "
                             f"written by trainings since this release): pass --spatial_size, the size it was trained with")
    return TrainedModel(modality, checkpoint, found, int(size), record)


def _trained_ensemble(bundle_root: str, modality: str, ensemble: Path, backbone: str | None, spatial_size: int | None,
                      need_record: bool) -> TrainedModel:
    """The ensemble of ``ensemble`` (``models/<m>/ensemble.json``), each member checked as ``trained_model`` does."""
    members = tuple(trained_model(str(folder), modality, str(folder / "models" / modality), need_record=True)
                    for folder in read_ensemble_members(ensemble.parents[2], modality))
    record = read_model_record(Path(bundle_root), modality) if need_record else None
    found = _agreed("backbone", modality, [("--backbone", backbone), *((str(m.checkpoint), m.backbone) for m in members),
                                           (f"runs/{modality}/metrics.json", record and record.backbone)])
    size = _agreed("spatial_size", modality, [("--spatial_size", spatial_size and int(spatial_size)),
                                              *((str(m.checkpoint), m.spatial_size) for m in members),
                                              (f"runs/{modality}/metrics.json", record and record.spatial_size)])
    return TrainedModel(modality, ensemble, found, int(size), record, members)
