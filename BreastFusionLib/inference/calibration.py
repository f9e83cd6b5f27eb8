"""Temperature scaling of a binary classifier's malignancy probability (Guo et al., ICML 2017).

The bundle's validation predictions give probabilities p = softmax(logits)[1] = sigmoid(z) with
z = logit_malignant - logit_benign. One temperature T > 0 is fitted by minimising the negative
log-likelihood of sigmoid(z / T) on the validation labels; at prediction time the probability is
sigmoid(z / T). T > 0 keeps the order of the probabilities (the ROC curve and AUC do not change)
and the operating threshold is mapped the same way, so every decision stays as it was; only the
probability shown to a reader becomes better calibrated (T > 1: the model was over-confident).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

EPSILON = 1e-6
LOG_T_BOUNDS = (-4.0, 4.0)  # T from about 0.02 to 55


def logit(probability) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-6, 1 - 1e-6] so 0 and 1 stay finite."""
    p = np.clip(np.asarray(probability, dtype=float), EPSILON, 1.0 - EPSILON)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probability, temperature: float) -> np.ndarray | float:
    """The calibrated probability sigmoid(logit(p) / T); a scalar in, a float out."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    calibrated = 1.0 / (1.0 + np.exp(-logit(probability) / float(temperature)))
    return float(calibrated) if np.ndim(probability) == 0 else calibrated


def fit_temperature(labels, probabilities) -> float:
    """The temperature minimising the validation NLL; 1.0 (no change) when the data cannot fix one."""
    labels = np.asarray(labels, dtype=float)
    z = logit(probabilities)
    if labels.size == 0 or np.unique(labels).size < 2 or not np.any(z != 0):
        return 1.0

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        # -[y log s(x) + (1 - y) log(1 - s(x))] = log(1 + e^x) - y x, computed stably
        return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))

    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded")
    return float(np.exp(result.x)) if result.success else 1.0


def expected_calibration_error(labels, probabilities, bins: int = 10) -> float:
    """ECE: the case-weighted mean gap between the malignant rate and the mean probability in ``bins`` equal-width bins."""
    labels, probabilities = np.asarray(labels, dtype=float), np.asarray(probabilities, dtype=float)
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.bincount(index, weights=labels, minlength=bins) - np.bincount(index, weights=probabilities, minlength=bins)
    return float(np.abs(gap).sum() / max(count.sum(), 1))
