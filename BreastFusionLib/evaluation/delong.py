"""DeLong's AUC variance and paired test, by the fast mid-rank algorithm (Sun & Xu, 2014).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of correlated AUCs from the
"structural components" of the Mann-Whitney statistic; Sun & Xu compute them from mid-ranks in
O(n log n). Ties count one half.

When several images come from one patient they are not independent. Given ``clusters`` (one
patient id per image), the components are summed per patient and the covariance is Obuchowski's
(Biometrics 1997; 53:567-78) for clustered ROC data, which is DeLong's exactly when every patient
has one image.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from BreastFusionLib.errors import UserInputError


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


def _covariance(labels: np.ndarray, auc: np.ndarray, v10: np.ndarray, v01: np.ndarray,
                clusters: np.ndarray | None) -> np.ndarray:
    """DeLong's covariance of the k AUCs; Obuchowski's when ``clusters`` groups the cases."""
    m, n = v10.shape[1], v01.shape[1]
    if clusters is None:
        return np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    _, cluster = np.unique(clusters, return_inverse=True)
    n_clusters = cluster.max() + 1

    def per_cluster(components: np.ndarray, members: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(members, weights=row, minlength=n_clusters) for row in components])

    positives, negatives = cluster[labels == 1], cluster[labels == 0]
    m_c = np.bincount(positives, minlength=n_clusters)
    n_c = np.bincount(negatives, minlength=n_clusters)
    d10 = per_cluster(v10, positives) - auc[:, None] * m_c  # (k, clusters)
    d01 = per_cluster(v01, negatives) - auc[:, None] * n_c
    i10, i01 = int((m_c > 0).sum()), int((n_c > 0).sum())
    if min(i10, i01) < 2:
        raise UserInputError(f"a CI clustered by patient needs malignant and benign images from at least 2 patients "
                             f"each, found {i10} and {i01}")
    s10 = i10 / ((i10 - 1) * m) * d10 @ d10.T
    s01 = i01 / ((i01 - 1) * n) * d01 @ d01.T
    s11 = n_clusters / (n_clusters - 1) * d10 @ d01.T
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def patient_clusters(labels, clusters) -> np.ndarray | None:
    """``clusters`` (one patient id per case) as an array; None when no patient has several cases."""
    if clusters is None:
        return None
    clusters = np.asarray(clusters)
    if clusters.shape != np.shape(labels):
        raise ValueError(f"{clusters.size} cluster ids for {np.size(labels)} cases")
    return clusters if np.unique(clusters).size < clusters.size else None


def auc_method(clusters) -> str:
    """How the AUC's CI and tests were computed."""
    return "DeLong" if clusters is None else "DeLong clustered by patient (Obuchowski 1997)"


def delong_auc(labels, scores, confidence: float = 0.95, clusters=None) -> dict:
    """AUC, its DeLong standard error and CI (clipped to [0, 1]); ``clusters``: one patient id per case."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)[None, :]
    auc, v10, v01 = _structural_components(labels, scores)
    clusters = patient_clusters(labels, clusters)
    se = float(np.sqrt(_covariance(labels, auc, v10, v01, clusters)[0, 0]))
    z = stats.norm.ppf(0.5 + confidence / 2)
    return {"value": float(auc[0]), "se": se, "ci": [max(0.0, auc[0] - z * se), min(1.0, auc[0] + z * se)],
            "method": auc_method(clusters)}


def delong_contrast(labels, score_rows, weights, clusters=None) -> dict:
    """A weighted sum of AUCs on the same cases (e.g. weights [1, -1, -1, 1] on model A shifted, A clean, B shifted,
    B clean: how much more A loses than B), its DeLong standard error, z and two-sided p."""
    labels = np.asarray(labels)
    scores = np.vstack([np.asarray(row, float) for row in score_rows])
    weights = np.asarray(weights, float)
    auc, v10, v01 = _structural_components(labels, scores)
    clusters = patient_clusters(labels, clusters)
    variance = float(weights @ _covariance(labels, auc, v10, v01, clusters) @ weights)
    value = float(weights @ auc)
    z = value / np.sqrt(variance) if variance > 0 else 0.0
    return {"aucs": auc.tolist(), "value": value, "se": float(np.sqrt(max(variance, 0.0))), "z": float(z),
            "p_value": float(2 * stats.norm.sf(abs(z))), "n_cases": int(labels.size), "method": auc_method(clusters)}


def delong_test(labels, scores_a, scores_b, clusters=None) -> dict:
    """Paired DeLong test of two AUCs on the same cases: AUCs, difference, z and two-sided p."""
    contrast = delong_contrast(labels, [scores_a, scores_b], [1.0, -1.0], clusters)
    return {"auc_a": contrast["aucs"][0], "auc_b": contrast["aucs"][1], "difference": contrast["value"],
            "z": contrast["z"], "p_value": contrast["p_value"], "n_cases": contrast["n_cases"], "method": contrast["method"]}
