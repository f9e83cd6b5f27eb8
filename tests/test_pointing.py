"""The pointing game's scoring: hits in crop pixels, the centre baseline, McNemar, intervals, displaced crops."""

from __future__ import annotations

import numpy as np
import pytest

from BreastFusionLib.evaluation.pointing import (CENTRE, PointingGame, bundle_record, mcnemar_exact, peak, us_crop_pair,
                                                 wilson_interval)
from BreastFusionLib.us.io import USImage


def _spot(row: int, col: int, size: int = 100) -> np.ndarray:
    heat = np.zeros((size, size), np.float32)
    heat[row, col] = 1.0
    return heat


def test_hits_the_tolerance_in_crop_pixels_flat_maps_and_the_centre_baseline():
    lesion = np.zeros((100, 100), bool)
    lesion[40:60, 40:60] = True  # the centre (50, 50) is on the lesion
    game = PointingGame(tolerance=15)
    game.add_case(lesion, {"inside": _spot(45, 45), "edge": _spot(45, 70), "far": _spot(5, 5),
                           "flat": np.full((100, 100), 0.3, np.float32)})
    summary = game.summary()["maps"]
    assert summary["inside"]["hit_rate"] == 1 and summary["inside"]["within_tolerance"] == 1
    assert summary["edge"]["hit_rate"] == 0 and summary["edge"]["within_tolerance"] == 1  # 11 px from the lesion
    assert summary["far"]["within_tolerance"] == 0
    assert summary["flat"]["hit_rate"] == 0 and summary["flat"]["flat_maps"] == 1 and peak(np.ones((3, 3))) is None
    assert summary[CENTRE]["hit_rate"] == 1 and summary[CENTRE]["mcnemar_p_vs_centre"] is None
    assert game.summary()["chance"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="empty"):
        game.add_case(np.zeros((100, 100), bool), {})


def test_mcnemar_counts_only_the_discordant_cases_and_wilson_interval():
    a = [True] * 20 + [False] * 10
    b = [True] * 10 + [False] * 20  # 10 cases only a hits, none only b: p = 2 / 2**10
    assert mcnemar_exact(a, b) == pytest.approx(2 / 1024)
    assert mcnemar_exact(a, a) == 1.0
    low, high = wilson_interval([True] * 39 + [False] * 11)  # 78% of 50
    assert (round(low, 3), round(high, 3)) == (0.648, 0.872)


def test_displaced_crop_moves_the_lesion_off_the_centre_and_keeps_it_whole():
    rng = np.random.default_rng(0)
    image = USImage(rng.uniform(0.3, 0.5, (200, 260)).astype(np.float32))
    mask = np.zeros((200, 260), bool)
    mask[90:110, 100:130] = True
    centre_hits, whole = [], []
    for _ in range(20):
        (centred, lesion), (displaced, moved) = us_crop_pair(image, mask, rng, out_size=60)
        assert centred.pixels.shape == displaced.pixels.shape == (60, 60) and lesion[30, 30]
        assert displaced.box.side_rows == centred.box.side_rows
        whole.append(abs(int(moved.sum()) - int(lesion.sum())) <= 0.05 * lesion.sum())  # the same lesion, none cut off
        centre_hits.append(bool(moved[30, 30]))
    assert all(whole) and np.mean(centre_hits) < 0.6  # the centre is often off the lesion


def test_bundle_record_keeps_the_shown_maps_with_the_centre_rate():
    game = PointingGame()
    lesion = np.zeros((100, 100), bool)
    lesion[40:60, 40:60] = True
    game.add_case(lesion, {"attention": _spot(5, 5), "gradcam": _spot(50, 45), "gradcam_true_class": _spot(50, 45)})
    record = bundle_record("test data", {"centred": {"us": game.summary()}})
    assert record["data"] == "test data" and set(record["maps"]["us"]) == {"attention", "gradcam"}
    row = record["maps"]["us"]["gradcam"]["centred"]
    assert row["hit_rate"] == 1.0 and row["centre"] == 1.0 and row["cases"] == 1
