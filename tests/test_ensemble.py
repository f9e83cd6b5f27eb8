"""A cross-validation ensemble as one model: built by the bundle's ``ensembling`` run, evaluated on an external
set and served like a single model, with its members' spread as the uncertainty in result.json, the report and
the panel's text."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, TINY_SIZE, bundle_cli, bundle_workflow, write_external_set, write_tiny_crops
from PIL import Image

from BreastFusionLib.bundle.ensemble import write_ensemble
from BreastFusionLib.cli import main
from BreastFusionLib.display import ensemble_text
from BreastFusionLib.inference.calibration import apply_temperature
from BreastFusionLib.inference.heatmaps import HeatMaps
from BreastFusionLib.inference.loaded_bundle import load_bundle
from BreastFusionLib.networks import EnsembleClassifier, build_classifier, record_member_probabilities

MEMBER_FOLDS = (2, 3)  # each member validates on its fold and trains on the three others


def _train_member(dataset: Path, root: Path, fold: int) -> None:
    bundle_workflow(["train.json"], "train", dataset, root, modality="us", val_fold=fold, max_epochs=1).run()
    evaluate = {"modality": "us", "val_fold": fold, "spatial_size": None, "backbone": None}
    bundle_workflow(["train.json", "evaluate.json"], "eval", dataset, root, **evaluate).run()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crops")
    write_tiny_crops(folder, folds=True)
    return folder


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, dataset) -> Path:
    """Two members trained with --val_fold 2 and 3, joined by ``python -m monai.bundle run ensembling``."""
    root = tmp_path_factory.mktemp("ensemble")
    torch.manual_seed(0)
    for fold in MEMBER_FOLDS:
        _train_member(dataset, root / "members" / f"fold_{fold}", fold)
    result = bundle_cli("ensembling", "--config_file", str(CONFIGS / "ensemble.json"), "--bundle_root", str(root),
                        "--modality", "us", "--dataset_dir", str(dataset), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _member_predictions(root: Path) -> dict[str, float]:
    """Each validation case's calibrated probability from the member that validated on it."""
    pooled = {}
    for fold in MEMBER_FOLDS:
        for row in csv.DictReader(open(root / "members" / f"fold_{fold}" / "runs" / "us" / "predictions_val.csv")):
            pooled[row["case_id"]] = float(row["prob_malignant_calibrated"])
    return pooled


def test_ensembling_pools_the_members_out_of_fold_predictions(ensemble):
    record = json.loads((ensemble / "models" / "us" / "ensemble.json").read_text())
    assert record["members"] == ["members/fold_2", "members/fold_3"]
    assert (record["backbone"], record["spatial_size"]) == ("cbam_resnet50", TINY_SIZE)
    metrics = json.loads((ensemble / "runs" / "us" / "metrics.json").read_text())
    assert metrics["ensemble"] and metrics["temperature"] == 1.0 and metrics["n_cases"] == 8
    assert "pooled out-of-fold" in metrics["data"]
    assert [m["folder"] for m in metrics["members"]] == ["fold_2", "fold_3"]
    rows = list(csv.DictReader(open(ensemble / "runs" / "us" / "predictions_oof.csv")))
    pooled = _member_predictions(ensemble)
    assert {row["case_id"] for row in rows} == set(pooled)
    for row in rows:  # the members' calibrated probabilities, as each member's own evaluation wrote them
        assert float(row["prob_malignant"]) == pytest.approx(pooled[row["case_id"]], abs=1e-6)
        assert row["decision"] == ("malignant" if float(row["prob_malignant"]) >= metrics["threshold"] else "benign")
        assert row["patient_id"] == "p" + row["case_id"][1:]
    assert 0 <= metrics["calibration_error"]["calibrated"] <= 1
    assert (ensemble / "runs" / "us" / "roc.png").stat().st_size > 1000


def test_ensemble_output_is_the_mean_of_calibrated_member_probabilities():
    torch.manual_seed(1)
    members = [build_classifier("us").eval() for _ in range(3)]
    temperatures = [0.5, 1.0, 2.5]
    network = EnsembleClassifier(members, temperatures).eval()
    image = torch.rand(2, 1, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        with record_member_probabilities(network) as calls:
            output = network(image)
        expected = torch.stack([torch.softmax(m(image) / t, dim=1) for m, t in zip(members, temperatures)])
    torch.testing.assert_close(torch.softmax(output, dim=1), expected.mean(0))
    assert [len(c) for c in calls] == [1, 1, 1]
    torch.testing.assert_close(torch.stack([c[0] for c in calls]), expected)
    with pytest.raises(ValueError, match="one temperature per member"):
        EnsembleClassifier(members, [1.0])


def test_ensemble_heat_maps_are_the_mean_of_its_members_maps():
    torch.manual_seed(2)
    member = build_classifier("us").eval().requires_grad_(False)
    image = torch.rand(1, 1, TINY_SIZE, TINY_SIZE)
    single = HeatMaps(member, "us", "cbam_resnet50")(image, ["us"], class_index=1)["us"]
    twins = EnsembleClassifier([member, copy.deepcopy(member)], [1.0, 1.0])
    twins = HeatMaps(twins, "us", "cbam_resnet50")(image, ["us"], class_index=1)["us"]
    for kind in ("attention", "gradcam"):  # two equal members: the member's own map
        torch.testing.assert_close(twins[kind], single[kind], atol=1e-5, rtol=0)


def test_an_ensemble_bundle_is_evaluated_on_an_external_set_with_the_same_command(ensemble, tmp_path):
    external = tmp_path / "external"
    write_external_set(external)
    configs = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'evaluate_external.json'}']"
    arguments = ["--config_file", configs, "--dataset_dir", str(external), "--modality", "us", "--eval_name", "siteA",
                 "--batch_size", "16", "--num_workers", "0"]
    for root in (ensemble, *(ensemble / "members" / f"fold_{fold}" for fold in MEMBER_FOLDS)):
        result = bundle_cli("evaluating", *arguments, "--bundle_root", str(root), cwd=external)
        assert result.returncode == 0, result.stderr[-3000:]
    out = ensemble / "runs" / "us" / "eval" / "siteA"
    metrics = json.loads((out / "metrics.json").read_text())
    stored = json.loads((ensemble / "runs" / "us" / "metrics.json").read_text())
    assert metrics["threshold"] == stored["threshold"] and metrics["counts"]["images"] == 32
    members = [{row["case_id"]: float(row["prob_malignant_calibrated"]) for row in
                csv.DictReader(open(ensemble / "members" / f"fold_{fold}" / "runs" / "us" / "eval" / "siteA" / "predictions.csv"))}
               for fold in MEMBER_FOLDS]
    for row in csv.DictReader(open(out / "predictions.csv")):
        mean = np.mean([member[row["case_id"]] for member in members])
        assert float(row["prob_malignant"]) == pytest.approx(mean, abs=2e-3)  # the members' calibrated mean


def test_an_ensemble_bundle_predicts_with_its_members_spread(ensemble, tmp_path, capsys):
    rng = np.random.default_rng(0)
    image = tmp_path / "us.png"
    Image.fromarray(rng.integers(40, 200, (160, 200), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["predict", "--bundle", str(ensemble), "--models", "us", "--us", str(image), "--us-box", "60,40,140,120",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "result.json").read_text())
    entry = record["models"]["us"]
    spread = entry["ensemble"]
    assert spread["members"] == 2 and len(spread["member_probabilities"]) == 2
    assert entry["probability"] == pytest.approx(np.mean(spread["member_probabilities"]), abs=1e-5)
    assert spread["range"] == [min(spread["member_probabilities"]), max(spread["member_probabilities"])]
    side = [p >= entry["threshold"] for p in spread["member_probabilities"]]
    assert spread["agreeing"] == sum(s == (entry["decision"] == "malignant") for s in side)
    checkpoints = record["model"]["checkpoints"]["us"]
    assert checkpoints["file"] == "models/us/ensemble.json"
    assert [m["file"] for m in checkpoints["members"]] == [f"members/fold_{f}/models/us/model.pt" for f in MEMBER_FOLDS]
    assert record["heatmap_info"]["us"]["us"]["gradcam"]["explains"] == entry["decision"]
    text = ensemble_text(spread)
    assert text.startswith("2 models: ") and f"{spread['agreeing']} of 2 on the decision's side" in text
    assert escape(text) in (out / "report.html").read_text() and f"  ensemble of {text}" in printed


def test_a_single_model_has_no_ensemble_entry(tiny_bundle, tmp_path):
    image = tmp_path / "us.png"
    Image.fromarray(np.full((120, 120), 90, np.uint8)).save(image)
    assert main(["predict", "--bundle", str(tiny_bundle), "--models", "us", "--us", str(image), "--us-box",
                 "30,30,90,90", "--out", str(tmp_path / "out"), "--no-heatmaps"]) == 0
    entry = json.loads((tmp_path / "out" / "result.json").read_text())["models"]["us"]
    assert entry["ensemble"] is None and ensemble_text(entry["ensemble"]) == ""


def test_ensembling_refuses_members_that_validated_on_the_same_cases(ensemble, tmp_path):
    root = tmp_path / "twice"
    for name in ("a", "b"):
        shutil.copytree(ensemble / "members" / "fold_2", root / "members" / name)
    with pytest.raises(SystemExit, match="both validated on case") as error:
        write_ensemble(str(root), "us")
    assert "\n" not in str(error.value)
    shutil.rmtree(root / "members" / "b")
    with pytest.raises(SystemExit, match="needs at least 2 trained us members"):
        write_ensemble(str(root), "us")
    with pytest.raises(SystemExit, match="manifest not found"):
        write_ensemble(str(ensemble), "us", str(tmp_path / "nowhere.csv"))


def test_a_missing_member_is_named_when_the_ensemble_is_loaded(ensemble, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ensemble, copy)
    (copy / "members" / "fold_3" / "models" / "us" / "model.pt").unlink()
    with pytest.raises(Exception, match=r"member\(s\) without models/us/model.pt: .*fold_3"):
        load_bundle(copy, ["us"])
