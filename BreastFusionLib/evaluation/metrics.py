"""Metrics at an operating threshold, with stratified bootstrap 95% CIs, and threshold choice.

The threshold is chosen on validation predictions (Youden's J by default) and applied unchanged
to the test predictions. Sensitivity, specificity and accuracy get percentile CIs from a
stratified bootstrap (positives and negatives resampled separately, seeded); the AUC gets DeLong's.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.delong import delong_auc

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


def _rates(labels: np.ndarray, decisions: np.ndarray) -> np.ndarray:
    """Sensitivity, specificity, accuracy along the last axis of (..., n) arrays."""
    positives, negatives = labels == 1, labels == 0
    tp = (decisions & positives).sum(-1)
    tn = (~decisions & negatives).sum(-1)
    return np.stack([tp / positives.sum(-1), tn / negatives.sum(-1), (tp + tn) / labels.shape[-1]], axis=-1)


def threshold_metrics(labels, probabilities, threshold: float, seed: int = 0,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """AUC (DeLong CI) and sensitivity, specificity, accuracy at ``threshold`` (bootstrap CIs)."""
    labels, probabilities = check_predictions(labels, probabilities)
    decisions = probabilities >= threshold
    point = _rates(labels, decisions)
    rng = np.random.default_rng(seed)
    indices = [rng.choice(np.flatnonzero(labels == c), size=(resamples, int((labels == c).sum()))) for c in (0, 1)]
    sample = np.concatenate(indices, axis=1)
    boot = _rates(labels[sample], decisions[sample])
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    result = {"auc": delong_auc(labels, probabilities)}
    for index, name in enumerate(("sensitivity", "specificity", "accuracy")):
        result[name] = {"value": float(point[index]), "ci": [float(low[index]), float(high[index])],
                        "method": f"stratified bootstrap, {resamples} resamples"}
    tp = int((decisions & (labels == 1)).sum())
    fp = int((decisions & (labels == 0)).sum())
    result["confusion_matrix"] = {"tn": int((labels == 0).sum()) - fp, "fp": fp, "fn": int((labels == 1).sum()) - tp, "tp": tp}
    result.update({"threshold": float(threshold), "n_cases": int(labels.size), "n_malignant": int(labels.sum())})
    return result
