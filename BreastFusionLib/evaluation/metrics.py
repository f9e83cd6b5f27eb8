"""Metrics at an operating threshold, with stratified bootstrap 95% CIs, and threshold choice.

The threshold is chosen on validation predictions (Youden's J by default) and applied unchanged
to the test predictions. Sensitivity, specificity and accuracy get percentile CIs from a
stratified bootstrap (positives and negatives resampled separately, seeded); the AUC gets DeLong's.

When a patient has several images (``clusters``: one patient id per image), whole patients are
resampled instead (stratified by whether the patient has a malignant image), and the AUC's CI is
DeLong's clustered by patient; with one image per patient both reduce to the unclustered methods.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.delong import delong_auc, patient_clusters

BOOTSTRAP_RESAMPLES = 2000


def check_predictions(labels, probabilities, source: str = "predictions") -> tuple[np.ndarray, np.ndarray]:
    """Validated arrays: labels 0/1 with both classes present, finite probabilities of the same length."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    if labels.shape != probabilities.shape:
        raise UserInputError(f"{source}: {labels.size} labels but {probabilities.size} probabilities")
    if not np.isin(labels, (0, 1)).all():
        raise UserInputError(f"{source}: labels must be 0 or 1, found {sorted(set(labels.tolist()) - {0, 1})[:5]}")
    if not np.isfinite(probabilities).all():
        raise UserInputError(f"{source}: probability is not a number at row(s) {np.flatnonzero(~np.isfinite(probabilities))[:5].tolist()}")
    if len(set(labels.tolist())) < 2:
        raise UserInputError(f"{source}: needs both benign and malignant cases to compute an AUC")
    return labels.astype(int), probabilities


def youden_threshold(labels, probabilities) -> float:
    """The probability threshold maximising sensitivity + specificity - 1 on (validation) data."""
    labels, probabilities = check_predictions(labels, probabilities, "validation predictions")
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = 1 + int(np.argmax((tpr - fpr)[1:]))  # index 0 is roc_curve's "nobody positive" threshold (inf)
    return float(min(thresholds[best], 1.0))


def _rates(labels: np.ndarray, decisions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sensitivity, specificity, accuracy of each row of case ``weights`` (resample, n): how often a case was drawn."""
    positives, negatives = labels == 1, labels == 0
    tp = weights @ (decisions & positives)
    tn = weights @ (~decisions & negatives)
    return np.stack([tp / (weights @ positives), tn / (weights @ negatives), (tp + tn) / weights.sum(-1)], axis=-1)


def _bootstrap_weights(labels: np.ndarray, clusters, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """(resamples, n) draw counts per case: units (cases, or patients) resampled within their stratum."""
    units = np.arange(labels.size) if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1]
    malignant_unit = np.bincount(units, weights=labels) > 0
    counts = np.zeros((resamples, malignant_unit.size))
    rows = np.arange(resamples)[:, None]
    for stratum in (False, True):
        members = np.flatnonzero(malignant_unit == stratum)
        np.add.at(counts, (rows, rng.choice(members, size=(resamples, members.size))), 1.0)
    return counts[:, units]


def threshold_metrics(labels, probabilities, threshold: float, seed: int = 0,
                      resamples: int = BOOTSTRAP_RESAMPLES, clusters=None) -> dict:
    """AUC (DeLong CI) and sensitivity, specificity, accuracy at ``threshold`` (bootstrap CIs).

    ``clusters`` (one patient id per case, or None) makes both CIs clustered by patient when a patient has several cases.
    """
    labels, probabilities = check_predictions(labels, probabilities)
    clusters = patient_clusters(labels, clusters)
    decisions = probabilities >= threshold
    point = _rates(labels, decisions, np.ones((1, labels.size)))[0]
    boot = _rates(labels, decisions, _bootstrap_weights(labels, clusters, np.random.default_rng(seed), resamples))
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    result = {"auc": delong_auc(labels, probabilities, clusters=clusters)}
    method = (f"stratified bootstrap, {resamples} resamples" if clusters is None else
              f"bootstrap of patients (stratified by whether they have a malignant image), {resamples} resamples")
    for index, name in enumerate(("sensitivity", "specificity", "accuracy")):
        result[name] = {"value": float(point[index]), "ci": [float(low[index]), float(high[index])], "method": method}
    tp = int((decisions & (labels == 1)).sum())
    fp = int((decisions & (labels == 0)).sum())
    result["confusion_matrix"] = {"tn": int((labels == 0).sum()) - fp, "fp": fp, "fn": int((labels == 1).sum()) - tp, "tp": tp}
    result.update({"threshold": float(threshold), "n_cases": int(labels.size), "n_malignant": int(labels.sum())})
    if clusters is not None:
        result["n_patients"] = int(np.unique(np.asarray(clusters)).size)
    return result
