"""What the bundle's ``evaluating`` run recorded for one trained model, read without any training code.

``runs/<model>/metrics.json`` (written by ``bundle.report.write_model_report``) holds the operating
``threshold`` chosen on the validation predictions, the calibration ``temperature`` fitted on them,
and the ``spatial_size`` and ``backbone`` the model was evaluated with. Serving reads only these
fields; it never re-fits anything. A cross-validation ensemble lists its members' bundle folders in
``models/<model>/ensemble.json``; its ``runs/<model>/metrics.json`` (``bundle.ensemble``) holds the
ensemble's own threshold, with temperature 1 (each member's temperature is applied before averaging).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.networks import BACKBONES


@dataclass(frozen=True)
class ModelRecord:
    """Operating point and input of one evaluated model. ``temperature`` is None when metrics.json predates calibration."""

    threshold: float
    temperature: float | None
    spatial_size: int | None
    backbone: str | None


def read_json(path: Path) -> dict:
    """A JSON file as a dict; a one-line error naming the file otherwise."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable JSON file ({error})") from None


def read_model_record(root: Path, modality: str) -> ModelRecord:
    """``runs/<modality>/metrics.json`` of the bundle in ``root``, checked field by field."""
    path = root / "runs" / modality / "metrics.json"
    if not path.is_file():
        raise UserInputError(f"bundle {root}: {path.relative_to(root)} is missing: evaluate the {modality} model "
                             f"first (python -m monai.bundle run evaluating ... --modality {modality})")
    metrics = read_json(path)
    threshold = metrics.get("threshold")
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise UserInputError(f"{path}: needs a 'threshold' between 0 and 1, got {threshold!r}")
    temperature = metrics.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or not temperature > 0):
        raise UserInputError(f"{path}: 'temperature' must be > 0, got {temperature!r}")
    backbone = metrics.get("backbone")
    if backbone is not None and backbone not in BACKBONES:
        raise UserInputError(f"{path}: 'backbone' must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    size = metrics.get("spatial_size")
    size = int(size) if isinstance(size, (int, float)) and size > 0 else None
    return ModelRecord(float(threshold), None if temperature is None else float(temperature), size, backbone)


ENSEMBLE_FILE = "ensemble.json"  # models/<model>/ensemble.json: the members of a cross-validation ensemble


def read_ensemble_members(root: Path, modality: str) -> list[Path]:
    """The member bundle folders listed in ``models/<modality>/ensemble.json`` of ``root`` (relative to ``root``)."""
    path = root / "models" / modality / ENSEMBLE_FILE
    members = read_json(path).get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
        raise UserInputError(f"{path}: needs 'members', a non-empty list of member bundle folders, got {members!r}")
    folders = [root / member for member in members]
    missing = [str(f) for f in folders if not (f / "models" / modality / "model.pt").is_file()]
    if missing:
        raise UserInputError(f"{path}: member(s) without models/{modality}/model.pt: {', '.join(missing)}")
    return folders


def read_member_record(folder: Path, modality: str) -> ModelRecord:
    """An ensemble member's ``runs/<modality>/metrics.json``, which must hold the temperature its probabilities are calibrated with."""
    record = read_model_record(folder, modality)
    if record.temperature is None:
        raise UserInputError(f"ensemble member {folder}: runs/{modality}/metrics.json has no calibration temperature; "
                             f"re-run evaluating for it")
    return record
