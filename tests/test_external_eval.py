"""Evaluating a trained bundle on an external set, as README's "Evaluate a trained model on your own data" does.

A US model is trained on tiny crops with ``--val_fold`` (every fold but one trains, no test part)
and evaluated on its validation fold; then ``configs/evaluate_external.json`` scores it on a
synthetic external set (other noise and brightness; every row a test row; patients with two lesions
of two views each; a device column; BI-RADS in a column called ``birads``) through MONAI's CLI.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, bundle_cli, bundle_workflow, write_external_set, write_tiny_crops

from BreastFusionLib.bundle.checkpoints import preflight
from BreastFusionLib.bundle.comparison import write_comparison
from BreastFusionLib.bundle.datalist import load_datalist
from BreastFusionLib.bundle.external import evaluation_folder, preflight_external
from BreastFusionLib.bundle.predictions import patient_of, read_manifest_rows, write_prediction_table
from BreastFusionLib.bundle.trained_model import SETTINGS_FILE, trained_model
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.calibration import apply_temperature

EXTERNAL_CONFIGS = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'evaluate_external.json'}']"
INTERNAL = ("metrics.json", "predictions_val.csv", "roc.png", "confusion_matrix.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A bundle root with a US model trained on folds 0-2 of ``write_tiny_crops(folds=True)`` and evaluated on fold 3."""
    root, dataset = tmp_path_factory.mktemp("bundle"), tmp_path_factory.mktemp("crops")
    write_tiny_crops(dataset, folds=True)
    bundle_workflow(["train.json"], "train", dataset, root, modality="us", val_fold=3, max_epochs=1).run()
    evaluate = {"modality": "us", "val_fold": 3, "spatial_size": None, "backbone": None}  # taken from the model
    bundle_workflow(["train.json", "evaluate.json"], "eval", dataset, root, **evaluate).run()
    return root


@pytest.fixture(scope="module")
def external(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("external")
    write_external_set(folder)
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in INTERNAL}


def test_training_on_every_fold_but_one_and_its_evaluation(trained):
    settings = json.loads((trained / "models" / "us" / SETTINGS_FILE).read_text())
    assert settings == {"modality": "us", "backbone": "cbam_resnet50", "spatial_size": 32}
    metrics = json.loads((trained / "runs" / "us" / "metrics.json").read_text())
    assert metrics["spatial_size"] == 32 and metrics["backbone"] == "cbam_resnet50"  # from the model, not 300
    assert metrics["data"].startswith("validation split (no test split") and metrics["n_cases"] == 4
    assert not (trained / "runs" / "us" / "predictions_test.csv").exists()
    rows = list(csv.DictReader(open(trained / "runs" / "us" / "predictions_val.csv")))
    assert {row["case_id"] for row in rows} == {"c6", "c7", "c14", "c15"}  # fold 3
    for row in rows:
        expected = apply_temperature(float(row["prob_malignant"]), metrics["temperature"])
        assert float(row["prob_malignant_calibrated"]) == pytest.approx(expected)
        assert row["patient_id"] == "p" + row["case_id"][1:] and row["fold"] == "3"


def test_evaluate_a_trained_model_on_an_external_set(trained, external):
    """README's command, end to end: stored threshold and temperature, own folder, readers, lesions, patients."""
    internal = trained / "runs" / "us"
    before, stored = _digests(internal), json.loads((internal / "metrics.json").read_text())
    result = bundle_cli("evaluating", "--config_file", EXTERNAL_CONFIGS, "--bundle_root", str(trained),
                        "--dataset_dir", str(external), "--modality", "us", "--eval_name", "external_siteA",
                        "--reader_columns", "['birads']", "--lesion_column", "lesion_id", "--batch_size", "16",
                        "--num_workers", "0", cwd=external)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _digests(internal) == before  # the internal evaluation is untouched
    out = internal / "eval" / "external_siteA"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threshold"] == stored["threshold"] and metrics["temperature"] == stored["temperature"]
    assert (metrics["spatial_size"], metrics["backbone"]) == (32, "cbam_resnet50")
    assert metrics["counts"] == {"images": 32, "malignant": 10, "patients": 8}
    assert metrics["lesion_level"]["counts"] == {"lesions": 16, "malignant": 5, "patients": 8}
    assert "Obuchowski" in metrics["auc"]["method"] and "bootstrap of patients" in metrics["sensitivity"]["method"]
    assert set(metrics["calibration_error"]) == {"bins", "raw", "calibrated"}

    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 32 and list(rows[0])[:5] == ["case_id", "label", "prob_malignant", "prob_malignant_calibrated",
                                                     "decision"]
    manifest = {row["case_id"]: row for row in csv.DictReader(open(external / "manifest.csv"))}
    for row in rows:
        raw = float(row["prob_malignant"])
        assert float(row["prob_malignant_calibrated"]) == pytest.approx(apply_temperature(raw, stored["temperature"]))
        assert row["decision"] == ("malignant" if raw >= stored["threshold"] else "benign")
        for column in ("patient_id", "device", "birads", "lesion_id"):
            assert row[column] == manifest[row["case_id"]][column]

    table = (out / "table1.md").read_text()
    for text in ("per image", "per lesion", "| birads |", "| us vs birads |", "32 images", "16 lesions", "of 8 patients"):
        assert text in table, text
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["delong_tests"]["us vs birads"]["n_cases"] == 32
    assert comparison["lesion_level"]["delong_tests"]["us vs birads"]["n_cases"] == 16
    for figure in ("roc.png", "roc_all.png", "confusion_matrix.png"):
        assert (out / figure).stat().st_size > 1000

    wrong = bundle_cli("evaluating", "--config_file", EXTERNAL_CONFIGS, "--bundle_root", str(trained), "--dataset_dir",
                       str(external), "--modality", "us", "--eval_name", "x", "--backbone", "cbam_efficientnet_lite0",
                       cwd=external)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "--backbone cbam_efficientnet_lite0 contradicts" in wrong.stderr and "CBAM-ResNet-50" in wrong.stderr


def _preflight(trained: Path, external: Path, **change) -> None:
    arguments = {"manifest": str(external / "manifest.csv"), "modality": "us", "eval_part": None, "eval_name": "site",
                 "bundle_root": str(trained), "ckpt_dir": str(trained / "models" / "us"), "reader_columns": ["birads"],
                 "lesion_column": "lesion_id", **change}
    preflight_external(**arguments)


@pytest.mark.parametrize("change, message", [
    ({"eval_name": None}, "--eval_name None: name this evaluation"),
    ({"eval_name": "../us"}, "--eval_name '../us'"),
    ({"reader_columns": ["bi_rads"]}, "reader column(s) ['bi_rads'] not in the manifest; its columns are"),
    ({"lesion_column": "lesion"}, "--lesion_column 'lesion' is not a column"),
    ({"lesion_column": "device"}, "are views of one lesion but do not share one label"),
    ({"spatial_size": 300}, "spatial_size is 300 according to --spatial_size but 32 according to"),
    ({"eval_part": "val"}, "no case is in the 'val' part"),
    ({"ckpt_dir": "/nowhere"}, "no trained us model at /nowhere/model.pt"),
])
def test_external_evaluation_refuses_bad_input_in_one_line(trained, external, change, message):
    _preflight(trained, external)  # the unchanged arguments pass
    with pytest.raises(SystemExit) as error:
        _preflight(trained, external, **change)
    assert str(error.value).startswith("error: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_records_missing_or_contradicting(trained, tmp_path):
    copy = tmp_path / "models" / "us"
    copy.mkdir(parents=True)
    (copy / "model.pt").write_bytes((trained / "models" / "us" / "model.pt").read_bytes())
    with pytest.raises(SystemExit, match="pass --spatial_size, the size it was trained with"):
        trained_model(str(tmp_path), "us", str(copy))  # no model_settings.json (trained before they existed)
    assert trained_model(str(tmp_path), "us", str(copy), spatial_size=32).backbone == "cbam_resnet50"
    with pytest.raises(SystemExit, match=r"runs/us/metrics.json is missing: evaluate the us model first"):
        trained_model(str(tmp_path), "us", str(copy), spatial_size=32, need_record=True)
    assert evaluation_folder(str(tmp_path), "us", "siteA").endswith("runs/us/eval/siteA")


def test_val_fold_partition_and_combined_manifests(tmp_path):
    first, second = write_tiny_crops(tmp_path / "a", folds=True), write_external_set(tmp_path / "b", patients=3)
    parts = {part: {item["case_id"] for item in load_datalist(str(first), "us", part, val_fold=1)}
             for part in ("train", "val")}
    assert parts["val"] == {"c2", "c3", "c10", "c11"} and len(parts["train"]) == 12
    assert load_datalist(str(first), "us", "test", val_fold=1) == []
    with pytest.raises(UserInputError, match="--fold .* or --val_fold"):
        load_datalist(str(first), "us", "train", fold=0, val_fold=1)

    both = load_datalist([str(first), str(second)], "us", None)
    assert len(both) == 16 + 12
    assert {Path(item["us"]).parent.parent for item in both} == {tmp_path / "a", tmp_path / "b"}  # each from its own folder
    with pytest.raises(UserInputError, match="is in both .*a/manifest.csv and .*a/manifest.csv"):
        load_datalist([str(first), str(first)], "us", None)

    rows = read_manifest_rows([str(first), str(second)])
    assert patient_of(rows["c0"], "c0") != patient_of({**rows["x0_0_0"], "patient_id": "p0"}, "x0_0_0")
    table = write_prediction_table(tmp_path / "p.csv", ["c0", "x0_0_0"], [0, 0], [0.2, 0.7], 0.5, 2.0, rows)
    written = list(csv.DictReader(open(table)))
    assert [row["manifest"] for row in written] == [str(first), str(second)]
    assert written[1]["device"] == "scanner A" and written[0]["device"] == "" and written[1]["decision"] == "malignant"


def test_any_reader_column_is_compared_with_every_model(tmp_path):
    """A declared reader column with some cases unscored, and reader_* columns, each tested against each model."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    ids = [f"c{i:02d}" for i in range(60)]
    for name, noise in (("us", 1.0), ("ct", 1.5)):
        folder = tmp_path / name
        folder.mkdir()
        probabilities = 1 / (1 + np.exp(-(2 * labels - 1 + rng.normal(0, noise, 60))))
        write_prediction_table(folder / "predictions_test.csv", ids, labels, probabilities, 0.5, None)
        (folder / "metrics.json").write_text(json.dumps({"threshold": 0.5, "threshold_rule": "fixed"}))
    rows = [{"case_id": case, "patient_id": f"p{i // 2}", "reader_us": f"{0.3 + 0.4 * label:.1f}",
             "radiologist_birads": "" if i % 10 == 0 else ("3", "4b")[label]} for i, (case, label) in enumerate(zip(ids, labels))]
    with (tmp_path / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = write_comparison({"us": tmp_path / "us", "ct": tmp_path / "ct"}, tmp_path / "manifest.csv", tmp_path / "r",
                             reader_columns_declared=["radiologist_birads"]).read_text()
    for row in ("| us vs ct |", "| us vs reader_us |", "| ct vs reader_us |", "| us vs radiologist_birads |",
                "| ct vs radiologist_birads |", "| radiologist_birads (6 not scored) |", "60 images (manifest rows), 30 malignant, of 30 patients"):
        assert row in table, row
    tests = json.loads((tmp_path / "r" / "comparison.json").read_text())["delong_tests"]
    assert tests["us vs radiologist_birads"]["n_cases"] == 54 and "Obuchowski" in tests["us vs reader_us"]["method"]


def test_the_internal_evaluation_points_an_external_set_to_its_config(external):
    with pytest.raises(SystemExit, match=r"no case is in the 'val' part .* use configs/evaluate_external.json with --eval_name"):
        preflight(str(external / "manifest.csv"), "us", None, ("val", "test"))
