"""Late fusion and the Table-1 comparison across models and readers."""

import csv
import json

import numpy as np
import pytest

from BreastFusionLib.bundle.comparison import write_comparison
from BreastFusionLib.bundle.late_fusion import write_late_fusion_predictions
from BreastFusionLib.bundle.report import write_model_report
from BreastFusionLib.cohort.readers import is_birads_column, parse_reader_score
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.delong import delong_test


def write_predictions(folder, ids, labels, probabilities, part):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"predictions_{part}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("case_id", "label", "prob_malignant"))
        writer.writerows(zip(ids, labels, probabilities))


@pytest.fixture()
def runs(tmp_path):
    """US, CT and fusion predictions on 80 cases: each single model sees its own noisy evidence."""
    rng = np.random.default_rng(0)
    labels = (np.arange(80) % 3 == 0).astype(int)
    ids = [f"c{i:02d}" for i in range(80)]
    us, ct = labels * 1.5 + rng.normal(size=80), labels * 1.5 + rng.normal(size=80)
    scores = {"us": us, "ct": ct, "fusion": us + ct}
    for name, score in scores.items():
        probabilities = 1 / (1 + np.exp(-score))
        for part, index in (("val", slice(0, 40)), ("test", slice(40, 80))):
            write_predictions(tmp_path / name, ids[index], labels[index], probabilities[index], part)
        write_model_report(str(tmp_path / name), name)
    rows = [{"case_id": i, "reader_us": ("2", "3", "4a", "4b", "5")[int(np.clip(1.2 * u + 1.5, 0, 4))],
             "reader_ct": f"{1 / (1 + np.exp(-c)):.3f}"} for i, u, c in zip(ids, us, ct)]
    with (tmp_path / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path, labels[40:], scores


def test_late_fusion_averages_probabilities(runs):
    folder, labels, _ = runs
    metrics = write_late_fusion_predictions(folder / "us", folder / "ct", folder / "late")
    rows = {row["case_id"]: float(row["prob_malignant"]) for row in csv.DictReader(open(folder / "late" / "predictions_test.csv"))}
    us = {row["case_id"]: float(row["prob_malignant"]) for row in csv.DictReader(open(folder / "us" / "predictions_test.csv"))}
    ct = {row["case_id"]: float(row["prob_malignant"]) for row in csv.DictReader(open(folder / "ct" / "predictions_test.csv"))}
    assert all(np.isclose(rows[c], (us[c] + ct[c]) / 2) for c in rows)
    assert metrics["model"] == "late_fusion" and (folder / "late" / "metrics.json").is_file()


def test_table1_lists_models_and_readers_with_delong_tests(runs):
    folder, labels, scores = runs
    table = write_comparison({name: folder / name for name in ("us", "ct", "fusion")}, folder / "manifest.csv",
                             folder / "report").read_text()
    for row in ("| us |", "| ct |", "| fusion |", "| reader_us |", "| reader_ct |", "BI-RADS >= 4", "probability >= 0.5",
                "| fusion vs us |", "| fusion vs ct |", "| us vs reader_us |", "| ct vs reader_ct |", "| fusion vs reader_us |"):
        assert row in table, row
    result = json.loads((folder / "report" / "comparison.json").read_text())
    expected = delong_test(labels, scores["fusion"][40:], scores["us"][40:])
    assert result["delong_tests"]["fusion vs us"]["p_value"] == pytest.approx(expected["p_value"])
    assert result["metrics"]["fusion"]["auc"]["value"] > result["metrics"]["us"]["auc"]["value"]
    assert (folder / "report" / "roc_all.png").stat().st_size > 10_000


def test_models_tested_on_different_cases_are_refused(runs, tmp_path):
    folder, _, _ = runs
    other = folder / "other"
    write_predictions(other, ["x1", "x2"], [0, 1], [0.2, 0.8], "test")
    with pytest.raises(UserInputError, match="tested on other cases"):
        write_comparison({"us": folder / "us", "other": other}, folder / "manifest.csv", tmp_path / "r")


def test_reader_scores_are_typed_per_column():
    assert is_birads_column(["2", "4a", ""]) and is_birads_column(["3", "5"]) and not is_birads_column(["0.2", "1", "0"])
    assert parse_reader_score("4B", birads=True) == 4.5 and parse_reader_score("0.3", birads=False) == 0.3
    with pytest.raises(ValueError, match="not a BI-RADS category"):
        parse_reader_score("7", birads=True)
