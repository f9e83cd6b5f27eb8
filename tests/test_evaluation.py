"""Evaluation statistics: DeLong (and clustered by patient) against sklearn and slow references, thresholds, bootstrap CIs, ECE, errors."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.delong import delong_auc, delong_test
from BreastFusionLib.evaluation.metrics import threshold_metrics, youden_threshold
from BreastFusionLib.inference.calibration import expected_calibration_error


def slow_delong_variance(labels, scores):
    """DeLong et al. (1988) straight from the definition: Mann-Whitney kernel, ties count 1/2."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    return kernel.mean(), v10.var(ddof=1) / len(positives) + v01.var(ddof=1) / len(negatives), v10, v01


@pytest.fixture()
def data():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 120)
    first = labels * 1.0 + rng.normal(0, 1, 120)
    second = np.round(labels * 0.6 + rng.normal(0, 1, 120), 1)  # rounded: ties exercise the mid-ranks
    return labels, first, second


def test_delong_auc_matches_sklearn_and_the_slow_definition(data):
    labels, first, second = data
    for scores in (first, second):
        result = delong_auc(labels, scores)
        auc, variance, _, _ = slow_delong_variance(labels, scores)
        assert result["value"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert result["value"] == pytest.approx(auc, abs=1e-12)
        assert result["se"] ** 2 == pytest.approx(variance, rel=1e-9)
        assert result["ci"][0] < result["value"] < result["ci"][1]


def test_paired_delong_test_matches_the_slow_covariance(data):
    labels, first, second = data
    result = delong_test(labels, first, second)
    _, var_a, a10, a01 = slow_delong_variance(labels, first)
    _, var_b, b10, b01 = slow_delong_variance(labels, second)
    covariance = np.cov(a10, b10)[0, 1] / len(a10) + np.cov(a01, b01)[0, 1] / len(a01)
    z = (result["auc_a"] - result["auc_b"]) / np.sqrt(var_a + var_b - 2 * covariance)
    assert result["z"] == pytest.approx(z, rel=1e-9)
    assert 0 < result["p_value"] < 1
    assert delong_test(labels, first, first)["p_value"] == pytest.approx(1.0)


def test_youden_threshold_and_threshold_metrics_on_a_hand_checked_example():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probabilities = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert youden_threshold(labels, probabilities) == pytest.approx(0.7)
    metrics = threshold_metrics(labels, probabilities, threshold=0.5, resamples=500)
    assert metrics["sensitivity"]["value"] == 0.75 and metrics["specificity"]["value"] == 0.75
    assert metrics["accuracy"]["value"] == 0.75
    assert metrics["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    low, high = metrics["sensitivity"]["ci"]
    assert 0 <= low <= 0.75 <= high <= 1
    assert metrics["auc"]["value"] == pytest.approx(roc_auc_score(labels, probabilities))


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 80), rng.random(80)
    assert threshold_metrics(labels, scores, 0.5, seed=1) == threshold_metrics(labels, scores, 0.5, seed=1)


@pytest.mark.parametrize(
    "labels, probabilities, message",
    [([0, 1, 2], [0.1, 0.2, 0.3], "labels must be 0 or 1"), ([0, 0], [0.1, 0.2], "both benign and malignant"),
     ([0, 1], [0.1, float("nan")], "not a number at row"), ([0, 1], [0.1], "2 labels but 1 probabilities")],
)
def test_bad_predictions_are_named(labels, probabilities, message):
    with pytest.raises(UserInputError, match=message):
        threshold_metrics(labels, probabilities, 0.5)


def test_youden_threshold_never_calls_everyone_benign():
    labels = np.array([0, 0, 1, 1])
    assert youden_threshold(labels, np.array([0.9, 0.8, 0.2, 0.1])) <= 0.9  # a useless model still gets a real cut


def test_clustered_ci_of_duplicated_images_equals_the_unduplicated_ci(data):
    """Three identical views per patient carry one patient's evidence: clustered CIs and tests must not narrow."""
    labels, first, second = data
    patients = np.repeat(np.arange(labels.size), 3)
    tripled = [np.repeat(values, 3) for values in (labels, first, second)]
    clustered = delong_auc(tripled[0], tripled[1], clusters=patients)
    assert clustered["se"] == pytest.approx(delong_auc(labels, first)["se"], rel=1e-9)
    assert "Obuchowski" in clustered["method"]
    assert delong_auc(tripled[0], tripled[1])["se"] < 0.6 * clustered["se"]  # ignoring the clusters: far too narrow
    test = delong_test(*tripled, clusters=patients)
    assert test["z"] == pytest.approx(delong_test(labels, first, second)["z"], rel=1e-9)
    plain = threshold_metrics(labels, first, 0.5)
    boot = threshold_metrics(tripled[0], tripled[1], 0.5, clusters=patients)
    for name in ("sensitivity", "specificity", "accuracy"):
        assert boot[name]["ci"] == pytest.approx(plain[name]["ci"])
    assert "bootstrap of patients" in boot["sensitivity"]["method"] and boot["n_patients"] == labels.size


def test_one_image_per_patient_keeps_the_unclustered_methods(data):
    labels, first, _ = data
    assert threshold_metrics(labels, first, 0.5, clusters=[f"p{i}" for i in range(labels.size)]) == \
        threshold_metrics(labels, first, 0.5)


def test_clustered_delong_matches_obuchowski_by_hand():
    """Obuchowski (1997) written out case by case on patients holding mixed benign and malignant images."""
    rng = np.random.default_rng(5)
    patients = np.repeat(np.arange(30), rng.integers(1, 4, 30))
    labels = rng.integers(0, 2, patients.size)
    scores = labels + rng.normal(0, 1, patients.size) + 0.5 * rng.normal(0, 1, 30)[patients]
    positives, negatives = scores[labels == 1], scores[labels == 0]
    kernel = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    auc, m, n = kernel.mean(), len(positives), len(negatives)
    v10 = np.array([kernel[(patients[labels == 1] == p)].sum() / n for p in range(30)])
    v01 = np.array([kernel[:, (patients[labels == 0] == p)].sum() / m for p in range(30)])
    m_c = np.array([(labels[patients == p] == 1).sum() for p in range(30)])
    n_c = np.array([(labels[patients == p] == 0).sum() for p in range(30)])
    i10, i01 = (m_c > 0).sum(), (n_c > 0).sum()
    s10 = i10 / ((i10 - 1) * m) * ((v10 - m_c * auc) ** 2).sum()
    s01 = i01 / ((i01 - 1) * n) * ((v01 - n_c * auc) ** 2).sum()
    s11 = 30 / 29 * ((v10 - m_c * auc) * (v01 - n_c * auc)).sum()
    variance = s10 / m + s01 / n + 2 * s11 / (m * n)
    assert delong_auc(labels, scores, clusters=patients)["se"] ** 2 == pytest.approx(variance, rel=1e-9)


def test_expected_calibration_error_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    probabilities = np.array([0.05, 0.15, 0.95, 0.9, 0.5])
    # bins: [0.0-0.1) 0 vs 0.05, [0.1-0.2) 0 vs 0.15, [0.5-0.6) 1 vs 0.5, [0.9-1.0] 2 vs 1.85
    assert expected_calibration_error(labels, probabilities) == pytest.approx((0.05 + 0.15 + 0.5 + 0.15) / 5)
