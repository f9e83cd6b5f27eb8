"""The MONAI bundle runs end to end on tiny synthetic crops: train, resume, evaluate, CLI run ids, errors."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, write_tiny_crops
from conftest import bundle_cli as _bundle_cli, bundle_overrides as _overrides, bundle_workflow as _workflow

import torch
from monai.bundle import ckpt_export

from BreastFusionLib import precision


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crops")
    write_tiny_crops(folder)
    return folder


def test_fusion_trains_resumes_and_evaluates(dataset, tmp_path):
    train = _workflow(["train.json"], "train", dataset, tmp_path, max_epochs=1)
    train.run()
    train.finalize()
    ckpt_dir = tmp_path / "models" / "fusion"
    assert (ckpt_dir / "model.pt").is_file()
    assert len(list(ckpt_dir.glob("resume_*.pt"))) == 1

    # a second run with more epochs resumes from the saved epoch instead of starting again,
    # remembering the best epoch so far (a worse epoch after the resume does not replace model.pt)
    first_best = train.evaluator.state.best_metric
    resumed = _workflow(["train.json"], "train", dataset, tmp_path, max_epochs=2)
    resumed.run()
    assert resumed.evaluator.state.best_metric >= first_best
    assert resumed.evaluator.state.best_metric_epoch in (1, 2)
    history = list(csv.DictReader(open(tmp_path / "runs" / "fusion" / "loss_history.csv")))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert all(float(row["val_loss"]) > 0 and 0 <= float(row["val_auc"]) <= 1 for row in history)

    evaluate = _workflow(["train.json", "evaluate.json"], "eval", dataset, tmp_path)
    evaluate.run()
    out = tmp_path / "runs" / "fusion"
    predictions = list(csv.DictReader(open(out / "predictions_test.csv")))
    assert len(predictions) == 4 and all(0 <= float(p["prob_malignant"]) <= 1 for p in predictions)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["auc"]["value"] <= 1 and "threshold" in metrics
    for figure in ("roc.png", "loss_curves.png", "confusion_matrix.png"):
        assert (out / figure).stat().st_size > 1000

    infer = _workflow(["inference.json"], "infer", dataset, tmp_path, spatial_size=32, batch_size=4, num_workers=0)
    infer.run()
    assert len(list(csv.DictReader(open(out / "predictions.csv")))) == 16

    # TorchScript export through MONAI gives the eager model's output
    exported = tmp_path / "model.ts"
    ckpt_export("network_def", filepath=str(exported), ckpt_file=str(ckpt_dir / "model.pt"),
                meta_file=str(CONFIGS / "metadata.json"), config_file=str(CONFIGS / "inference.json"))
    eager = infer.parser.get_parsed_content("network").eval()
    image = torch.rand(2, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(exported))(image), eager(image))


@pytest.mark.parametrize("modality", ["us", "ct"])
def test_single_modality_models_train_and_export(dataset, tmp_path, modality):
    workflow = _workflow(["train.json"], "train", dataset, tmp_path, modality=modality, max_epochs=1)
    workflow.run()
    checkpoint = tmp_path / "models" / modality / "model.pt"
    assert checkpoint.is_file()
    exported = tmp_path / f"{modality}.ts"
    ckpt_export("network_def", filepath=str(exported), ckpt_file=str(checkpoint), meta_file=str(CONFIGS / "metadata.json"),
                config_file=str(CONFIGS / "inference.json"), modality=modality)
    eager = workflow.parser.get_parsed_content("network").eval()
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(exported))(image), eager(image))


@pytest.mark.parametrize("amp", [None, False])
def test_amp_trains_in_bf16_on_a_cpu_with_native_bf16(dataset, tmp_path, monkeypatch, amp):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # the bf16 path on any CPU
    monkeypatch.delenv(precision.ENVIRONMENT_VARIABLE, raising=False)
    override = {} if amp is None else {"amp": amp}  # None: the default, read from the CPU
    workflow = _workflow(["train.json"], "train", dataset, tmp_path, modality="us", max_epochs=1, **override)
    dtypes = {"train": set(), "validate": set()}
    stem = workflow.parser.get_parsed_content("network").backbone.conv1
    stem.register_forward_hook(lambda module, _, output: dtypes["train" if module.training else "validate"].add(output.dtype))
    workflow.run()
    expected = torch.float32 if amp is False else torch.bfloat16
    assert dtypes == {"train": {expected}, "validate": {expected}}
    assert not workflow.trainer.amp  # MONAI's own amp (fp16 autocast + GradScaler) is for CUDA only
    history = list(csv.DictReader(open(tmp_path / "runs" / "us" / "loss_history.csv")))
    assert all(math.isfinite(float(row[key])) for row in history for key in ("train_loss", "val_loss"))
    assert (tmp_path / "models" / "us" / "model.pt").is_file()


def test_cli_training_and_evaluating_run_ids(dataset, tmp_path):
    train = _bundle_cli("training", "--config_file", str(CONFIGS / "train.json"), *_overrides(dataset, tmp_path,
                        modality="us"), cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    files = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'evaluate.json'}']"
    evaluate = _bundle_cli("evaluating", "--config_file", files, *_overrides(dataset, tmp_path, modality="us"),
                           cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert (tmp_path / "runs" / "us" / "metrics.json").is_file()


def test_missing_checkpoint_and_bad_manifest_fail_before_any_work(dataset, tmp_path):
    files = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'evaluate.json'}']"
    result = _bundle_cli("evaluating", "--config_file", files, *_overrides(dataset, tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert "no trained fusion model at" in result.stderr and "Traceback" not in result.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.csv").write_text("case_id,label\nc1,maybe\n")
    result = _bundle_cli("training", "--config_file", str(CONFIGS / "train.json"), *_overrides(bad, tmp_path),
                         cwd=tmp_path)
    assert result.returncode != 0
    assert "manifest.csv" in result.stderr and "Traceback" not in result.stderr


def test_two_process_ddp_training_with_gloo(dataset, tmp_path):
    """multi_gpu_train.json on CPU: torchrun, 2 processes, gloo backend, one short epoch."""
    files = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    command = ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle",
               "run", "training", "--config_file", files, *_overrides(dataset, tmp_path, modality="us")]
    result = subprocess.run([sys.executable, *command], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "models" / "us" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in state)  # saved unwrapped, loadable without DDP
    assert len(list(csv.DictReader(open(tmp_path / "runs" / "us" / "loss_history.csv")))) == 1  # rank 0 only


def test_mlflow_tracking_logs_metrics(dataset, tmp_path):
    pytest.importorskip("mlflow")
    import sqlite3

    database = tmp_path / "mlruns.db"
    train = _workflow(["train.json"], "train", dataset, tmp_path, max_epochs=1, modality="us",
                      tracking="mlflow", tracking_uri=f"sqlite:///{database}")
    train.run()
    train.finalize()
    keys = {key for (key,) in sqlite3.connect(database).execute("select key from metrics")}
    assert {"train_loss", "val_auc", "val_loss"} <= keys


def test_off_centre_training_reads_context_crops(dataset, tmp_path):
    from PIL import Image

    plain = _workflow(["train.json"], "train", dataset, tmp_path / "plain", modality="us", off_centre=0.25)
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the datalist's UserInputError
        plain.parser.get_parsed_content("train#datalist")
    assert "has no us_context for the us model (off-centre training needs context crops" in str(error.value.__cause__)
    rows = list(csv.DictReader(open(dataset / "manifest.csv")))
    folder = tmp_path / "context"
    (folder / "crops").mkdir(parents=True)
    for row in rows:
        for key in ("us", "ct"):
            crop = np.asarray(Image.open(dataset / row[f"{key}_image"]))
            Image.fromarray(np.pad(crop, 20, mode="reflect")).save(folder / row[f"{key}_image"])  # twice the side
            row[f"{key}_context"] = row[f"{key}_image"]
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    workflow = _workflow(["train.json"], "train", folder, tmp_path, off_centre=0.25, crop_scale=0.25)
    batch = next(iter(workflow.parser.get_parsed_content("train#dataloader")))
    assert batch["image"].shape[1:] == (2, 32, 32)  # windows of 0.75-1.25 crop sides, from 80-pixel context crops
