"""Comparing the models (and the readers) on one test set: the paper's Table 1, DeLong tests, Fig. 4/5.

Inputs: run folders, each with a predictions CSV (``predictions_test.csv`` from the bundle's
evaluating run, ``predictions.csv`` from an evaluation on another data set) and ``metrics.json``
(the model's operating threshold), and the manifest(s), whose reader columns hold radiologists'
scores: every ``reader_*`` column and any column the user names (e.g. a BI-RADS column called
``birads``). Every model must have predicted the same cases.

Models are scored at their stored threshold, readers at BI-RADS >= 4 or probability >= 0.5 on the
cases they scored; every pair in ``MODEL_PAIRS`` and every reader against every model get a paired
DeLong test. When a patient has several images, CIs and tests are clustered by patient
(``evaluation.metrics``, ``evaluation.delong``). With ``lesion_column`` the same is done per lesion
too: the views of one lesion (same patient, same value in that column) are combined by the mean of
their probabilities and of their reader scores. Outputs in the report folder: ``table1.md``,
``comparison.json`` (the same numbers) and ``roc_all.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from BreastFusionLib.bundle.predictions import LINE, SOURCE, patient_of, read_manifest_rows
from BreastFusionLib.bundle.report import read_predictions
from BreastFusionLib.cohort.readers import is_birads_column, parse_reader_score, reader_columns, reader_threshold
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.delong import delong_test
from BreastFusionLib.evaluation.figures import plot_roc
from BreastFusionLib.evaluation.metrics import threshold_metrics

# Pairs compared with DeLong's test when both are present: (a, b) tests AUC(a) = AUC(b).
MODEL_PAIRS = (("fusion", "us"), ("fusion", "ct"), ("fusion", "late_fusion"), ("us", "ct"))
UNIT = {"image": "images", "lesion": "lesions"}


@dataclass
class Level:
    """Labels and scores at one level of analysis: per image (manifest row) or per lesion (its views combined)."""

    name: str
    labels: np.ndarray
    patients: np.ndarray
    scores: dict[str, np.ndarray]  # model probabilities and reader scores (NaN: not scored)


def reader_names(rows: dict[str, dict[str, str]], declared: list[str] | tuple[str, ...] | str = ()) -> list[str]:
    """The ``reader_*`` columns of the manifest rows and the ``declared`` ones, which must exist."""
    declared = [declared] if isinstance(declared, str) else list(declared or ())
    columns = list(dict.fromkeys(c for row in rows.values() for c in row if c not in (LINE, SOURCE)))
    unknown = [c for c in declared if c not in columns]
    if unknown:
        raise UserInputError(f"reader column(s) {unknown} not in the manifest; its columns are {columns}")
    return list(dict.fromkeys(reader_columns(columns) + declared))


def reader_scores(rows: dict[str, dict[str, str]], case_ids: list[str], columns: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
    """Each reader column's scores for ``case_ids`` (NaN where empty) and whether it holds BI-RADS categories.

    A ``reader_*`` column with no score for any of these cases is left out; a declared one is an error.
    """
    scores = {}
    for column in columns:
        values = [rows.get(case, {}).get(column, "") for case in case_ids]
        if not any(values):
            if not column.startswith("reader_"):
                raise UserInputError(f"reader column {column!r} has no score for any of the {len(case_ids)} cases")
            continue
        birads = is_birads_column(values)
        parsed = []
        for case, value in zip(case_ids, values):
            try:
                parsed.append(parse_reader_score(value, birads) if value else np.nan)
            except ValueError as error:
                row = rows[case]
                raise UserInputError(f"{row[SOURCE]}: line {row[LINE]}, column {column} = {value!r}: {error}") from None
        scores[column] = (np.array(parsed, dtype=float), birads)
    return scores


def lesion_level(image: Level, case_ids: list[str], lesions: list[str]) -> Level:
    """Combine the views of each lesion (same patient, same ``lesions`` value; empty: the image alone) by their mean."""
    keys = [f"{patient}|{lesion or 'case:' + case}" for patient, lesion, case in zip(image.patients, lesions, case_ids)]
    order, group = np.unique(keys, return_index=True, return_inverse=True)[1:]
    first = np.argsort(order)  # lesions in the order they first appear
    group = np.argsort(first)[group]
    size = np.bincount(group)
    labels = np.bincount(group, weights=image.labels) / size
    mixed = np.flatnonzero((labels > 0) & (labels < 1))
    if mixed.size:
        views = [case for case, g in zip(case_ids, group) if g == mixed[0]]
        raise UserInputError(f"images {views[:4]} are views of one lesion but do not share one label")
    scores = {}
    for name, values in image.scores.items():
        scored = ~np.isnan(values)
        total = np.bincount(group, weights=np.where(scored, values, 0.0))
        count = np.bincount(group, weights=scored.astype(float))
        scores[name] = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
    return Level("lesion", labels.astype(int), image.patients[order[first]], scores)


def _metrics(labels, scores, threshold: float, patients: np.ndarray, source: str) -> dict:
    try:
        return threshold_metrics(labels, scores, threshold, clusters=patients)
    except UserInputError as error:
        raise UserInputError(f"{source}: {error}") from None


def compare(level: Level, thresholds: dict[str, tuple[float, str]], readers: dict[str, bool]) -> dict:
    """Counts, metrics of each model (at its ``thresholds`` (value, rule)) and reader, and the paired tests."""
    metrics, tests = {}, {}
    for model, (threshold, rule) in thresholds.items():
        metrics[model] = {**_metrics(level.labels, level.scores[model], threshold, level.patients, model),
                          "threshold_rule": rule}
    for reader, birads in readers.items():
        scored = ~np.isnan(level.scores[reader])
        metrics[reader] = {**_metrics(level.labels[scored], level.scores[reader][scored], reader_threshold(birads),
                                      level.patients[scored], f"reader column {reader}"),
                           "threshold_rule": "BI-RADS >= 4" if birads else "probability >= 0.5",
                           "n_not_scored": int((~scored).sum())}
    pairs = [pair for pair in MODEL_PAIRS if pair[0] in thresholds and pair[1] in thresholds]
    pairs += [(model, reader) for reader in readers for model in thresholds]
    for a, b in pairs:
        both = ~np.isnan(level.scores[a]) & ~np.isnan(level.scores[b])
        tests[f"{a} vs {b}"] = delong_test(level.labels[both], level.scores[a][both], level.scores[b][both],
                                           level.patients[both])
    counts = {UNIT[level.name]: int(level.labels.size), "malignant": int(level.labels.sum()),
              "patients": int(np.unique(level.patients).size)}
    return {"counts": counts, "metrics": metrics, "delong_tests": tests}


def compare_runs(runs: dict[str, str | Path], manifest, predictions: str = "predictions_test.csv",
                 reader_columns_declared: list[str] | tuple[str, ...] | str = (), lesion_column: str | None = None,
                 thresholds: dict[str, tuple[float, str]] | None = None) -> tuple[list[Level], dict]:
    """The levels (image, and lesion with ``lesion_column``) and their comparison (``compare``) for ``runs``.

    ``thresholds``: {model: (threshold, rule)}; by default each run's ``metrics.json`` gives them.
    """
    reference_ids, labels, probabilities = None, None, {}
    for name, folder in runs.items():
        ids, run_labels, run_probabilities = read_predictions(Path(folder) / predictions)
        order = np.argsort(ids)
        ids = [ids[i] for i in order]
        if reference_ids is None:
            reference_ids, labels = ids, run_labels[order]
        elif ids != reference_ids:
            raise UserInputError(f"{folder}: the {name} model was tested on other cases than the "
                                 f"{next(iter(runs))} model; compare models on one test set")
        probabilities[name] = run_probabilities[order]
    if thresholds is None:
        thresholds = {}
        for name, folder in runs.items():
            metrics_file = Path(folder) / "metrics.json"
            if not metrics_file.is_file():
                raise UserInputError(f"{metrics_file} not found: run the bundle's evaluating step for {name} first")
            stored = json.loads(metrics_file.read_text())
            thresholds[name] = (stored["threshold"], stored.get("threshold_rule", ""))
    rows = read_manifest_rows(manifest)
    readers = reader_scores(rows, reference_ids, reader_names(rows, reader_columns_declared))
    patients = np.array([patient_of(rows.get(case), case) for case in reference_ids])
    image = Level("image", labels, patients, {**probabilities, **{name: s for name, (s, _) in readers.items()}})
    levels = [image]
    if lesion_column:
        if not any(lesion_column in row for row in rows.values()):
            raise UserInputError(f"lesion column {lesion_column!r} not in the manifest")
        levels.append(lesion_level(image, reference_ids, [rows.get(c, {}).get(lesion_column, "") for c in reference_ids]))
    birads = {name: flag for name, (_, flag) in readers.items()}
    return levels, {level.name: compare(level, thresholds, birads) for level in levels}


def _cell(metric: dict) -> str:
    low, high = metric["ci"]
    return f"{metric['value']:.3f} [{low:.3f}-{high:.3f}]"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _table(level: str, result: dict, models: list[str], title: str) -> list[str]:
    counts, metrics = result["counts"], result["metrics"]
    lines = [f"### {title}, per {level}", "",
             "| Model / reader | AUC [95% CI] | Sensitivity [95% CI] | Specificity [95% CI] | Accuracy [95% CI] | Threshold |",
             "|---|---|---|---|---|---|"]
    for name, metric in metrics.items():
        threshold = f"{metric['threshold']:.3f}" if name in models else metric["threshold_rule"]
        unscored = f" ({metric['n_not_scored']} not scored)" if metric.get("n_not_scored") else ""
        lines.append(f"| {name}{unscored} | {_cell(metric['auc'])} | {_cell(metric['sensitivity'])} | "
                     f"{_cell(metric['specificity'])} | {_cell(metric['accuracy'])} | {threshold} |")
    first = next(iter(metrics.values()))
    rules = sorted({metrics[m]["threshold_rule"] for m in models})
    what = "images (manifest rows)" if level == "image" else "lesions (views combined)"
    lines += ["", f"{counts[UNIT[level]]} {what}, {counts['malignant']} malignant, of {counts['patients']} patients. "
              f"AUC CI: {first['auc']['method']}; other CIs: {first['sensitivity']['method']}. "
              f"Model thresholds: {'; '.join(rules)}.", "",
              "| Paired DeLong test | AUC a | AUC b | difference | p |", "|---|---|---|---|---|"]
    for name, test in result["delong_tests"].items():
        lines.append(f"| {name} | {test['auc_a']:.3f} | {test['auc_b']:.3f} | {test['difference']:+.3f} | {_p(test['p_value'])} |")
    return lines + [""]


def write_comparison_report(levels: list[Level], results: dict, models: list[str], report_dir: str | Path,
                            title: str = "Test set") -> Path:
    """Write ``table1.md``, ``comparison.json`` and ``roc_all.png`` (per image) for ``compare_runs``' output."""
    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    lines = [line for level in levels for line in _table(level.name, results[level.name], models, title)]
    table = report / "table1.md"
    table.write_text("\n".join(lines))
    image = results["image"]
    document = {**image, **({"lesion_level": results["lesion"]} if "lesion" in results else {})}
    (report / "comparison.json").write_text(json.dumps(document, indent=2))
    metrics, level = image["metrics"], levels[0]
    curves = {name: (level.labels, level.scores[name], metrics[name]) for name in models}
    points = {name: (metrics[name]["sensitivity"]["value"], metrics[name]["specificity"]["value"])
              for name in metrics if name not in models}
    plot_roc(curves, report / "roc_all.png", f"{title}: models and readers", readers=points)
    return table


def write_comparison(runs: dict[str, str | Path], manifest, report_dir: str | Path,
                     predictions: str = "predictions_test.csv", reader_columns_declared=(),
                     lesion_column: str | None = None, title: str = "Test set") -> Path:
    """Write Table 1, the DeLong tests and the combined ROC for ``runs`` = {model name: run folder}."""
    levels, results = compare_runs(runs, manifest, predictions, reader_columns_declared, lesion_column)
    return write_comparison_report(levels, results, list(runs), report_dir, title)
