"""The evaluation report of one trained model, written by the bundle's ``evaluating`` run.

Reads ``predictions_val.csv`` and ``predictions_test.csv`` (written by ``PredictionWriter``),
chooses the operating threshold on the validation predictions (Youden's J), applies it to the
test predictions, fits a calibration temperature on the validation predictions
(``inference.calibration``; applied at prediction time), and writes ``metrics.json``, ``roc.png``, ``confusion_matrix.png`` and, when the
training left a ``loss_history.csv``, ``loss_curves.png``. Given the manifest, CIs are clustered by
patient when a patient has several cases, and both predictions files are rewritten with the
calibrated probability, the decision and the manifest's other columns (``bundle.predictions``).
A model trained with ``val_fold`` has no test split (``tested=False``): its metrics are those of the
validation split, on which the threshold was chosen, and say so.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from BreastFusionLib.bundle.predictions import patient_of, read_manifest_rows, write_prediction_table
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.figures import plot_confusion_matrix, plot_loss_curves, plot_roc
from BreastFusionLib.evaluation.metrics import threshold_metrics, youden_threshold
from BreastFusionLib.inference.calibration import fit_temperature


def read_predictions(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Case ids, labels (0/1) and malignancy probabilities from a predictions CSV."""
    if not path.is_file():
        raise UserInputError(f"predictions file not found: {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        labels = np.array([int(row["label"]) for row in rows])
        probabilities = np.array([float(row["prob_malignant"]) for row in rows])
    except (KeyError, ValueError) as error:
        raise UserInputError(f"{path}: needs integer 'label' and numeric 'prob_malignant' columns ({error})") from None
    return [row["case_id"] for row in rows], labels, probabilities


def write_model_report(output_dir: str, modality: str, spatial_size: int | None = None,
                       backbone: str | None = None, manifest=None, tested: bool = True) -> dict:
    """Threshold from validation, metrics on test, figures; returns the metrics written to metrics.json.

    ``spatial_size`` (the model's input size) and ``backbone`` ("cbam_resnet50" or
    "cbam_efficientnet_lite0") are recorded so that inference uses the same ones.
    """
    out = Path(output_dir)
    rows = read_manifest_rows(manifest) if manifest else None
    parts = ("val", "test") if tested else ("val",)
    predictions = {part: read_predictions(out / f"predictions_{part}.csv") for part in parts}
    _, val_labels, val_probabilities = predictions["val"]
    threshold = youden_threshold(val_labels, val_probabilities)
    temperature = fit_temperature(val_labels, val_probabilities)
    ids, labels, probabilities = predictions[parts[-1]]
    patients = [patient_of((rows or {}).get(case), case) for case in ids]
    metrics = threshold_metrics(labels, probabilities, threshold, clusters=patients)
    data = "test split" if tested else "validation split"
    metrics.update({"model": modality, "spatial_size": spatial_size, "backbone": backbone,
                    "threshold_rule": "Youden's J on the validation predictions",
                    "data": data if tested else f"{data} (no test split: optimistic, the threshold was chosen on it)",
                    "temperature": temperature,
                    "temperature_rule": "temperature scaling fitted on the validation predictions (NLL)"})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if not tested:
        (out / "predictions_test.csv").unlink(missing_ok=True)  # an earlier run's, of another model
    for part, (part_ids, part_labels, part_probabilities) in predictions.items():
        write_prediction_table(out / f"predictions_{part}.csv", part_ids, part_labels, part_probabilities, threshold,
                               temperature, rows)
    write_model_figures(out, modality, labels, probabilities, metrics, data)
    history = out / "loss_history.csv"
    if history.is_file():
        with history.open(newline="") as handle:
            plot_loss_curves(list(csv.DictReader(handle)), out / "loss_curves.png", f"{modality} model")
    return metrics


def write_model_figures(out: Path, modality: str, labels, probabilities, metrics: dict, data: str) -> None:
    """``roc.png`` and ``confusion_matrix.png`` of one model on ``data`` at its threshold."""
    plot_roc({modality: (labels, probabilities, metrics)}, out / "roc.png", f"{modality} model, {data}")
    plot_confusion_matrix(metrics["confusion_matrix"], out / "confusion_matrix.png",
                          f"{modality}, threshold {metrics['threshold']:.2f}")
