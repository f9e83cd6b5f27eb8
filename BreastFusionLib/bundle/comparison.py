"""Comparing the models (and the readers) on one test set: the paper's Table 1, DeLong tests, Fig. 4/5.

Inputs: the run folders written by the bundle's ``evaluating`` run (``predictions_test.csv`` and
``metrics.json`` per model) and the manifest, whose ``reader_*`` columns hold radiologists'
scores. Every model must have predicted the same test cases. Outputs in the report folder:
``table1.md`` (AUC with DeLong 95% CI; sensitivity, specificity, accuracy with bootstrap CIs at
each model's validation-chosen threshold; readers at BI-RADS >= 4 or probability >= 0.5),
``comparison.json`` (the same numbers and the paired DeLong tests) and ``roc_all.png``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from BreastFusionLib.bundle.report import read_predictions
from BreastFusionLib.cohort.readers import is_birads_column, parse_reader_score, reader_columns, reader_threshold
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.delong import delong_test
from BreastFusionLib.evaluation.figures import plot_roc
from BreastFusionLib.evaluation.metrics import threshold_metrics

# Pairs compared with DeLong's test when both are present: (a, b) tests AUC(a) = AUC(b).
MODEL_PAIRS = (("fusion", "us"), ("fusion", "ct"), ("fusion", "late_fusion"), ("us", "ct"))
READER_MODEL = {"reader_us": "us", "reader_ct": "ct"}


def _reader_scores(manifest: str | Path, case_ids: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
    with Path(manifest).open(newline="") as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    scores = {}
    for column in reader_columns(list(next(iter(rows.values())).keys()) if rows else []):
        values = [rows[case].get(column, "") if case in rows else "" for case in case_ids]
        if any(not value.strip() for value in values):
            continue  # a reader who did not score every test case is not compared
        birads = is_birads_column(values)
        scores[column] = (np.array([parse_reader_score(v, birads) for v in values]), birads)
    return scores


def _cell(metric: dict) -> str:
    low, high = metric["ci"]
    return f"{metric['value']:.3f} [{low:.3f}-{high:.3f}]"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def write_comparison(runs: dict[str, str | Path], manifest: str | Path, report_dir: str | Path) -> Path:
    """Write Table 1, the DeLong tests and the combined ROC for ``runs`` = {model name: run folder}."""
    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    reference_ids, labels, probabilities, metrics = None, None, {}, {}
    for name, folder in runs.items():
        ids, run_labels, run_probabilities = read_predictions(Path(folder) / "predictions_test.csv")
        order = np.argsort(ids)
        ids = [ids[i] for i in order]
        if reference_ids is None:
            reference_ids, labels = ids, run_labels[order]
        elif ids != reference_ids:
            raise UserInputError(f"{folder}: the {name} model was tested on other cases than the "
                                 f"{next(iter(runs))} model; compare models on one test set")
        probabilities[name] = run_probabilities[order]
        metrics_file = Path(folder) / "metrics.json"
        if not metrics_file.is_file():
            raise UserInputError(f"{metrics_file} not found: run the bundle's evaluating step for {name} first")
        metrics[name] = json.loads(metrics_file.read_text())
    readers = _reader_scores(manifest, reference_ids)
    for column, (scores, birads) in readers.items():
        metrics[column] = threshold_metrics(labels, scores, reader_threshold(birads))
        metrics[column]["threshold_rule"] = "BI-RADS >= 4" if birads else "probability >= 0.5"
        probabilities[column] = scores
    tests = {}
    pairs = [pair for pair in MODEL_PAIRS if pair[0] in probabilities and pair[1] in probabilities]
    pairs += [(model, reader) for reader in readers for model in ("fusion", READER_MODEL.get(reader))
              if model in probabilities]
    for a, b in pairs:
        tests[f"{a} vs {b}"] = delong_test(labels, probabilities[a], probabilities[b])
    lines = ["| Model / reader | AUC [95% CI] | Sensitivity [95% CI] | Specificity [95% CI] | Accuracy [95% CI] | Threshold |",
             "|---|---|---|---|---|---|"]
    for name, metric in metrics.items():
        rule = metric.get("threshold_rule", "")
        threshold = f"{metric['threshold']:.3f}" if "Youden" in rule else rule
        lines.append(f"| {name} | {_cell(metric['auc'])} | {_cell(metric['sensitivity'])} | "
                     f"{_cell(metric['specificity'])} | {_cell(metric['accuracy'])} | {threshold} |")
    lines += ["", f"Test set: {len(labels)} lesions ({int(labels.sum())} malignant). AUC CI: DeLong; "
              "other CIs: stratified bootstrap. Model thresholds: Youden's J on the validation set.", "",
              "| Paired DeLong test | AUC a | AUC b | difference | p |", "|---|---|---|---|---|"]
    for name, test in tests.items():
        lines.append(f"| {name} | {test['auc_a']:.3f} | {test['auc_b']:.3f} | {test['difference']:+.3f} | {_p(test['p_value'])} |")
    table = report / "table1.md"
    table.write_text("\n".join(lines) + "\n")
    (report / "comparison.json").write_text(json.dumps({"metrics": metrics, "delong_tests": tests}, indent=2))
    curves = {name: (labels, probabilities[name], metrics[name]) for name in runs}
    points = {name: (metrics[name]["sensitivity"]["value"], metrics[name]["specificity"]["value"]) for name in readers}
    plot_roc(curves, report / "roc_all.png", "Test set: models and readers", readers=points)
    return table
