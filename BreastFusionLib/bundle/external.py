"""Evaluating a trained model on another data set, into a folder of its own (``configs/evaluate_external.json``).

The run predicts every case of the manifest(s) (or only the ``--eval_part test`` rows) with
``models/<m>/model.pt``, at the backbone and input size it was trained with (``bundle.trained_model``),
and writes into ``runs/<m>/eval/<eval_name>/``, never over the model's own ``runs/<m>/`` files:

- ``predictions.csv``: raw and calibrated probability, the decision and the manifest's other columns;
- ``metrics.json``: AUC, sensitivity, specificity and accuracy per image at the **stored** threshold
  (chosen on the training run's validation split, read from ``runs/<m>/metrics.json``; nothing is
  re-chosen on these data), with CIs clustered by patient when patients have several images; the
  calibration error (ECE, 10 bins) before and after the stored temperature; the counts; with
  ``--lesion_column``, the same per lesion (the mean probability of its views);
- ``table1.md``, ``comparison.json``, ``roc_all.png``: the model beside every reader column
  (``reader_*`` and those named by ``--reader_columns``) with paired DeLong tests
  (``bundle.comparison``), per image and per lesion; ``roc.png`` and ``confusion_matrix.png``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from BreastFusionLib.bundle.checkpoints import exit_on_user_error
from BreastFusionLib.bundle.comparison import (Level, compare_runs, lesion_level, reader_names, reader_scores,
                                               write_comparison_report)
from BreastFusionLib.bundle.datalist import load_datalist, manifest_paths
from BreastFusionLib.bundle.predictions import patient_of, read_manifest_rows, write_prediction_table
from BreastFusionLib.bundle.report import read_predictions, write_model_figures
from BreastFusionLib.bundle.trained_model import TrainedModel, trained_model
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.calibration import apply_temperature, expected_calibration_error

EVAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def evaluation_folder(bundle_root: str, modality: str, eval_name) -> str:
    """``<bundle_root>/runs/<modality>/eval/<eval_name>``: one folder per named evaluation."""
    name = "" if eval_name is None else str(eval_name)
    if not EVAL_NAME.fullmatch(name):
        raise UserInputError(f"--eval_name {eval_name!r}: name this evaluation with letters, digits, '.', '_' or '-' "
                             f"(e.g. --eval_name external_siteA); its results go to runs/{modality}/eval/<name>/")
    return str(Path(bundle_root) / "runs" / modality / "eval" / name)


@exit_on_user_error()
def preflight_external(manifest, modality: str, eval_part: str | None, eval_name, bundle_root: str, ckpt_dir: str,
                       backbone: str | None = None, spatial_size: int | None = None, reader_columns=(),
                       lesion_column: str | None = None) -> None:
    """Check everything an external evaluation needs before any work starts; one-line errors."""
    evaluation_folder(bundle_root, modality, eval_name)
    items = load_datalist(manifest, modality, eval_part)
    if len({item["label"] for item in items}) < 2:
        raise UserInputError(f"{' + '.join(manifest_paths(manifest))}: the {len(items)} case(s) evaluated need both "
                             f"benign and malignant ones to measure an AUC")
    rows = read_manifest_rows(manifest)
    ids = [item["case_id"] for item in items]
    reader_scores(rows, ids, reader_names(rows, reader_columns))
    if lesion_column:
        if not any(lesion_column in row for row in rows.values()):
            raise UserInputError(f"--lesion_column {lesion_column!r} is not a column of the manifest")
        images = Level("image", np.array([item["label"] for item in items]),
                       np.array([patient_of(rows[case], case) for case in ids]), {})
        lesion_level(images, ids, [rows[case].get(lesion_column, "") for case in ids])  # one label per lesion
    trained_model(bundle_root, modality, ckpt_dir, backbone, spatial_size, need_record=True)


@exit_on_user_error()
def write_external_report(output_dir: str, trained: TrainedModel, manifest, eval_name, reader_columns=(),
                          lesion_column: str | None = None) -> dict:
    """Predictions table, metrics.json, the reader comparison and the figures of one external evaluation."""
    out, modality, record = Path(output_dir), trained.modality, trained.record
    ids, labels, probabilities = read_predictions(out / "predictions.csv")
    write_prediction_table(out / "predictions.csv", ids, labels, probabilities, record.threshold, record.temperature,
                           read_manifest_rows(manifest))
    rule = f"stored by the training run's validation (runs/{modality}/metrics.json)"
    levels, results = compare_runs({modality: out}, manifest, "predictions.csv", reader_columns, lesion_column,
                                   thresholds={modality: (record.threshold, rule)})
    write_comparison_report(levels, results, [modality], out, f"{modality} model on {eval_name}")
    calibrated = apply_temperature(probabilities, record.temperature or 1.0)
    metrics = {**results["image"]["metrics"][modality], "model": modality, "evaluation": str(eval_name),
               "data": " + ".join(manifest_paths(manifest)), "counts": results["image"]["counts"],
               "spatial_size": trained.spatial_size, "backbone": trained.backbone, "temperature": record.temperature,
               "temperature_rule": rule if record.temperature else "none recorded: probabilities left uncalibrated",
               "calibration_error": {"bins": 10, "raw": expected_calibration_error(labels, probabilities),
                                     "calibrated": expected_calibration_error(labels, calibrated)}}
    if "lesion" in results:
        metrics["lesion_level"] = {**results["lesion"]["metrics"][modality], "counts": results["lesion"]["counts"],
                                   "combined": f"mean probability of the views sharing patient_id and {lesion_column}"}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    image = levels[0]
    write_model_figures(out, modality, image.labels, image.scores[modality], metrics, str(eval_name))
    return metrics
