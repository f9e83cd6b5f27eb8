"""The evaluation report of one trained model, written by the bundle's ``evaluating`` run.

Reads ``predictions_val.csv`` and ``predictions_test.csv`` (written by ``PredictionWriter``),
chooses the operating threshold on the validation predictions (Youden's J), applies it to the
test predictions, fits a calibration temperature on the validation predictions
(``inference.calibration``; applied at prediction time), and writes ``metrics.json``, ``roc.png``, ``confusion_matrix.png`` and, when the
training left a ``loss_history.csv``, ``loss_curves.png``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

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
                       backbone: str | None = None) -> dict:
    """Threshold from validation, metrics on test, figures; returns the metrics written to metrics.json.

    ``spatial_size`` (the model's input size) and ``backbone`` ("cbam_resnet50" or
    "cbam_efficientnet_lite0") are recorded so that inference uses the same ones.
    """
    out = Path(output_dir)
    _, val_labels, val_probabilities = read_predictions(out / "predictions_val.csv")
    _, test_labels, test_probabilities = read_predictions(out / "predictions_test.csv")
    threshold = youden_threshold(val_labels, val_probabilities)
    metrics = threshold_metrics(test_labels, test_probabilities, threshold)
    metrics.update({"model": modality, "spatial_size": spatial_size, "backbone": backbone,
                    "threshold_rule": "Youden's J on the validation predictions",
                    "data": "test split", "temperature": fit_temperature(val_labels, val_probabilities),
                    "temperature_rule": "temperature scaling fitted on the validation predictions (NLL)"})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_roc({modality: (test_labels, test_probabilities, metrics)}, out / "roc.png", f"{modality} model, test set")
    plot_confusion_matrix(metrics["confusion_matrix"], out / "confusion_matrix.png",
                          f"{modality}, threshold {threshold:.2f}")
    history = out / "loss_history.csv"
    if history.is_file():
        with history.open(newline="") as handle:
            plot_loss_curves(list(csv.DictReader(handle)), out / "loss_curves.png", f"{modality} model")
    return metrics
