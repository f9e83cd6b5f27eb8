"""DeLong's AUC variance and paired test, by the fast mid-rank algorithm (Sun & Xu, 2014).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of correlated AUCs from the
"structural components" of the Mann-Whitney statistic; Sun & Xu compute them from mid-ranks in
O(n log n). Ties count one half.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _midranks(values: np.ndarray) -> np.ndarray:
    return stats.rankdata(values, method="average")


def _structural_components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs (k,), positive components V10 (k, m) and negative components V01 (k, n) for k score rows."""
    positives, negatives = scores[:, labels == 1], scores[:, labels == 0]
    m, n = positives.shape[1], negatives.shape[1]
    all_ranks = np.apply_along_axis(_midranks, 1, np.concatenate([positives, negatives], axis=1))
    positive_ranks = np.apply_along_axis(_midranks, 1, positives)
    negative_ranks = np.apply_along_axis(_midranks, 1, negatives)
    auc = (all_ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (all_ranks[:, :m] - positive_ranks) / n
    v01 = 1.0 - (all_ranks[:, m:] - negative_ranks) / m
    return auc, v10, v01


def _covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return s10 / v10.shape[1] + s01 / v01.shape[1]


def delong_auc(labels, scores, confidence: float = 0.95) -> dict:
    """AUC, its DeLong standard error and CI (clipped to [0, 1])."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)[None, :]
    auc, v10, v01 = _structural_components(labels, scores)
    se = float(np.sqrt(_covariance(v10, v01)[0, 0]))
    z = stats.norm.ppf(0.5 + confidence / 2)
    return {"value": float(auc[0]), "se": se, "ci": [max(0.0, auc[0] - z * se), min(1.0, auc[0] + z * se)],
            "method": "DeLong"}


def delong_test(labels, scores_a, scores_b) -> dict:
    """Paired DeLong test of two AUCs on the same cases: AUCs, difference, z and two-sided p."""
    labels = np.asarray(labels)
    scores = np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    auc, v10, v01 = _structural_components(labels, scores)
    covariance = _covariance(v10, v01)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = float(auc[0] - auc[1])
    z = difference / np.sqrt(variance) if variance > 0 else 0.0
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "difference": difference, "z": float(z),
            "p_value": float(2 * stats.norm.sf(abs(z)))}
