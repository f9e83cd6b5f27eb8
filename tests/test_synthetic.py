"""The synthetic paired cohort: valid manifest, deterministic, truthful ground truth, fusion-friendly evidence."""

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.localization.clock import clock_from_point
from BreastFusionLib.synthetic import generate_cohort
from BreastFusionLib.synthetic.latent import SEPARATION, sample_lesions
from BreastFusionLib.synthetic.ultrasound import MARGIN_LEFT, MARGIN_TOP
from BreastFusionLib.us.overlays import find_overlays


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return load_manifest(generate_cohort(out, cases=6, seed=5)), out


def test_manifest_validates_with_both_modalities_and_locations(cohort):
    cases, _ = cohort
    assert len(cases) == 6 and {c["label_name"] for c in cases} <= {"benign", "malignant"}
    for case in cases:
        assert case["us_box"] and case["us_mask"] and case["ct_point_ras"] and case["ct_clock"] is not None
        assert case["reader_us"] and 0 <= float(case["reader_ct"]) <= 1


def test_ground_truth_is_consistent(cohort):
    cases, _ = cohort
    for case in cases:
        image = np.asarray(Image.open(case["us_image"]))
        mask = np.asarray(Image.open(case["us_mask"])) > 0
        x0, y0, x1, y1 = case["us_box"]
        rows, cols = np.nonzero(mask)
        assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (x0, y0, x1, y1)
        assert image.shape[:2] == mask.shape and image[mask].mean() < 90  # hypoechoic mass
        volume = load_ct(case["ct_image"])
        point = np.array(case["ct_point_ras"])
        i, j, k = np.round(volume.ras_to_ijk(point)).astype(int)
        assert 0 < volume.hu[k, j - 1:j + 2, i - 1:i + 2].mean() < 100  # soft-tissue mass at the point
        assert (point[0] > 0) == (case["ct_side"] == "right")  # in the stated breast (+x = patient right)
        nipple = np.array([float(v) for v in case[f"truth_nipple_{case['ct_side']}_ras"].split(",")])
        assert point[1] < nipple[1] - case["lesion_diameter_mm"] / 2  # inside the breast, behind the nipple
        position = clock_from_point(nipple, point, case["ct_side"])
        assert position.hour == pytest.approx(case["ct_clock"], abs=0.02)
        assert position.distance_mm == pytest.approx(case["ct_distance_mm"], abs=0.1)
        ni, nj, nk = np.round(volume.ras_to_ijk(nipple)).astype(int)
        assert volume.hu[nk, nj + 2, ni] > -300 and volume.hu[nk, nj - 3, ni] < -800  # skin below, air above


def test_deterministic_per_seed_and_dicom_matches_nifti(cohort, tmp_path):
    cases, out = cohort
    again = load_manifest(generate_cohort(tmp_path / "again", cases=6, seed=5, dicom=True))
    for first, second in zip(cases, again):
        assert np.array_equal(np.asarray(Image.open(first["us_image"])), np.asarray(Image.open(second["us_image"])))
        assert np.array_equal(load_ct(first["ct_image"]).hu, load_ct(second["ct_image"]).hu)
    assert (tmp_path / "again" / "ct" / again[0]["case_id"]).is_dir()


def test_evidence_is_independent_per_modality_so_fusion_can_win():
    lesions = sample_lesions(4000, seed=1)
    labels = np.array([lesion.label for lesion in lesions])
    assert abs(labels.mean() - 155 / 436) < 0.01
    us = norm.ppf(np.array([lesion.us_appearance for lesion in lesions]))
    ct = norm.ppf(np.array([lesion.ct_appearance for lesion in lesions]))
    expected_single, expected_both = norm.cdf(SEPARATION / np.sqrt(2)), norm.cdf(SEPARATION)
    assert roc_auc_score(labels, us) == pytest.approx(expected_single, abs=0.02)
    assert roc_auc_score(labels, ct) == pytest.approx(expected_single, abs=0.02)
    assert roc_auc_score(labels, us + ct) == pytest.approx(expected_both, abs=0.015)
    for label in (0, 1):
        assert abs(np.corrcoef(us[labels == label], ct[labels == label])[0, 1]) < 0.06


def test_overlay_removal_flags_the_burned_in_marks_not_the_speckle(cohort):
    """On BUSI the overlay detector flags 0.4% of an image; synthetic speckle must not look like marks either
    (with a linear display it did: 15-24% of every image was flagged and filled)."""
    cases, _ = cohort
    for case in cases:
        image = np.asarray(Image.open(case["us_image"]).convert("L"), np.float32) / 255.0
        flagged = find_overlays(image)
        margin = np.ones(image.shape, bool)
        margin[MARGIN_TOP:, MARGIN_LEFT:-MARGIN_LEFT] = False
        marks = margin & (image >= 250 / 255)  # text, logo and depth ruler, drawn white beside the tissue
        assert flagged.mean() < 0.05, (case["case_id"], flagged.mean())
        assert flagged[marks].mean() > 0.8  # the marks are found
