"""A cross-validation ensemble as one deliverable model: ``python -m monai.bundle run ensembling``.

Train and evaluate K members, each a bundle folder of its own under ``<bundle_root>/members/``
(``--val_fold k``: fold k validates, every other fold trains), then ``ensembling`` writes:

- ``models/<m>/ensemble.json``: the member folders (relative to ``bundle_root``), their backbone and
  input size (which must agree), and how they are combined: the mean of the members' calibrated
  probabilities (``networks.EnsembleClassifier``; each member's temperature from its own record);
- ``runs/<m>/metrics.json``: the ensemble's operating threshold, chosen by Youden's J on the pooled
  out-of-fold validation predictions (each case scored, calibrated, by the one member that validated
  on it, so that no member scores a case it trained on), temperature 1 (the members are calibrated
  one by one), the pooled AUC and calibration error (ECE) with each member's own validation AUC;
- ``runs/<m>/predictions_oof.csv`` and the ROC and confusion-matrix figures of those predictions.

The pooled out-of-fold metrics describe one member, not the ensemble (every case was in the
training data of the other K-1 members); ``training/bench_domain_shift.py --variants pair`` measures what
ensembling adds.
Serving (``inference.loaded_bundle``) and external evaluation (``bundle.trained_model``) read an
ensemble bundle like a single-model one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from BreastFusionLib.bundle.checkpoints import exit_on_user_error
from BreastFusionLib.bundle.datalist import manifest_paths
from BreastFusionLib.bundle.predictions import patient_of, read_manifest_rows, write_prediction_table
from BreastFusionLib.bundle.report import read_predictions, write_model_figures
from BreastFusionLib.bundle.trained_model import trained_model, write_model_settings
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.metrics import threshold_metrics, youden_threshold
from BreastFusionLib.inference.calibration import apply_temperature, expected_calibration_error
from BreastFusionLib.inference.records import ENSEMBLE_FILE, read_member_record

MEMBERS_FOLDER = "members"
COMBINE = "mean of the members' calibrated probabilities (each member's temperature from its runs/<m>/metrics.json)"


def member_folders(bundle_root: str | Path, modality: str) -> list[Path]:
    """The trained members under ``<bundle_root>/members/`` (folders holding ``models/<modality>/model.pt``), sorted."""
    folder = Path(bundle_root) / MEMBERS_FOLDER
    members = sorted(p for p in folder.glob("*") if (p / "models" / modality / "model.pt").is_file())
    if len(members) < 2:
        raise UserInputError(f"{folder}: an ensemble needs at least 2 trained {modality} members (folders with "
                             f"models/{modality}/model.pt), found {len(members)}; train each with --val_fold k "
                             f"--bundle_root {folder}/fold_k and evaluate it the same way")
    return members


def _pooled_validation(members: list[Path], modality: str) -> tuple[list[str], np.ndarray, np.ndarray, list[dict]]:
    """Case ids, labels and calibrated probabilities of the members' validation predictions, pooled; per-member summary."""
    ids, labels, calibrated, summary, seen = [], [], [], [], {}
    for folder in members:
        member = trained_model(str(folder), modality, str(folder / "models" / modality), need_record=True)
        temperature = read_member_record(folder, modality).temperature
        case_ids, case_labels, raw = read_predictions(folder / "runs" / modality / "predictions_val.csv")
        for case in case_ids:
            if case in seen:
                raise UserInputError(f"ensemble members {seen[case]} and {folder} both validated on case {case!r}: "
                                     f"pooled out-of-fold predictions need each case validated by one member "
                                     f"(train member k with --val_fold k)")
            seen[case] = folder
        probabilities = apply_temperature(raw, temperature)
        ids += case_ids
        labels.append(case_labels)
        calibrated.append(probabilities)
        summary.append({"folder": folder.name, "validation_cases": len(case_ids),
                        "temperature": temperature, "backbone": member.backbone,
                        "spatial_size": member.spatial_size})
    return ids, np.concatenate(labels), np.concatenate(calibrated), summary


def _shared(summary: list[dict], key: str, modality: str) -> str | int:
    """The one value of ``key`` all members have; a one-line error naming the values otherwise."""
    values = {member[key] for member in summary}
    if len(values) > 1:
        raise UserInputError(f"the {modality} ensemble's members differ in {key} ({sorted(values, key=str)}); "
                             f"train every member with the same --{key}")
    return values.pop()


@exit_on_user_error()
def write_ensemble(bundle_root: str, modality: str, manifest=None) -> dict:
    """Make the members under ``<bundle_root>/members/`` one model: ensemble.json and its metrics (module docstring)."""
    root = Path(bundle_root)
    members = member_folders(root, modality)
    ids, labels, calibrated, summary = _pooled_validation(members, modality)
    backbone, size = _shared(summary, "backbone", modality), _shared(summary, "spatial_size", modality)
    missing = [path for path in (manifest_paths(manifest) if manifest else []) if not Path(path).is_file()]
    if missing:
        raise UserInputError(f"manifest not found: {', '.join(missing)} (--dataset_dir names the folder holding manifest.csv)")
    rows = read_manifest_rows(manifest) if manifest else {}  # patient clusters and the manifest's columns
    threshold = youden_threshold(labels, calibrated)
    metrics = threshold_metrics(labels, calibrated, threshold,
                                clusters=[patient_of(rows.get(case), case) for case in ids] if rows else None)
    data = (f"pooled out-of-fold validation predictions of the {len(members)} members (each case scored by the "
            f"member that did not train on it): this estimates one member, not the ensemble")
    metrics.update({
        "model": modality, "ensemble": True, "spatial_size": int(size), "backbone": backbone, "data": data,
        "threshold_rule": "Youden's J on the pooled out-of-fold validation predictions (calibrated)",
        "temperature": 1.0, "temperature_rule": "1: each member's own temperature is applied before averaging",
        "calibration_error": {"bins": 10, "calibrated": expected_calibration_error(labels, calibrated)},
        "members": summary})
    models_dir, runs_dir = root / "models" / modality, root / "runs" / modality
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_model_settings(str(models_dir), modality, backbone, size)
    (models_dir / ENSEMBLE_FILE).write_text(json.dumps(
        {"modality": modality, "members": [m.relative_to(root).as_posix() for m in members], "combine": COMBINE,
         "backbone": backbone, "spatial_size": int(size)}, indent=2))
    (runs_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_prediction_table(runs_dir / "predictions_oof.csv", ids, labels, calibrated, threshold, 1.0, rows)
    write_model_figures(runs_dir, modality, labels, calibrated, metrics, f"{len(members)} members, pooled out-of-fold")
    return metrics
