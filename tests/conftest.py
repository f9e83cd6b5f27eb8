"""Shared test helpers: real data (skipping cleanly when it is absent), a tiny learnable crops cohort and a tiny trained bundle."""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.data import DataLoader, Dataset
from PIL import Image

from BreastFusionLib.bundle.datalist import load_datalist
from BreastFusionLib.bundle.report import write_model_report
from BreastFusionLib.networks import build_classifier
from BreastFusionLib.transform_config import eval_transforms, train_transforms

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = Path(__file__).resolve().parents[1] / "monai_bundle" / "configs"
TINY_SIZE = 32
TINY = {"spatial_size": TINY_SIZE, "batch_size": 4, "num_workers": 0, "max_epochs": 2, "channels_last": False}


def real_data(name: str) -> Path:
    """Path of a real dataset file or folder under ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def _tiny_crop(rng: np.random.Generator, label: int, noise: float = 20.0, brightness: float = 100.0) -> Image.Image:
    """A 40x40 crop: a bright round blob (benign) or a dark bar (malignant) on noise."""
    crop = rng.normal(brightness, noise, (40, 40))
    if label:
        crop[10:30, 18:22] = 10
    else:
        yy, xx = np.mgrid[:40, :40]
        crop[(yy - 20) ** 2 + (xx - 20) ** 2 < 60] = 230
    return Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))


def _write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_tiny_crops(folder: Path, cases: int = 16, folds: bool = False) -> Path:
    """A prepared crops manifest whose benign crops hold a bright round blob and malignant ones a
    dark bar (learnable in one or two epochs); splits (or, with ``folds``, 4 folds) give each part
    benign/malignant pairs."""
    rng = np.random.default_rng(0)
    (folder / "crops").mkdir(parents=True)
    rows = []
    for index in range(cases):
        label = index % 2
        for modality in ("us", "ct"):
            _tiny_crop(rng, label).save(folder / "crops" / f"c{index}_{modality}.png")
        partition = {"fold": (index // 2) % 4} if folds else {"split": ("train", "train", "val", "test")[(index // 2) % 4]}
        rows.append({"case_id": f"c{index}", "patient_id": f"p{index}", "label": ("benign", "malignant")[label],
                     "us_image": f"crops/c{index}_us.png", "ct_image": f"crops/c{index}_ct.png",
                     **partition, "prepared": "crops"})
    return _write_csv(rows, folder / "manifest.csv")


def write_external_set(folder: Path, patients: int = 8) -> Path:
    """An external US set unlike the training crops (darker, noisier: another scanner): every row a test row,
    each patient with two lesions of two views each, a device column and radiologists' BI-RADS under
    another name (``birads``)."""
    rng = np.random.default_rng(1)
    (folder / "images").mkdir(parents=True)
    rows = []
    for patient in range(patients):
        for lesion in range(2):
            label = (patient + lesion) % 2 if patient % 3 else 0  # mixed patients and all-benign patients
            for view in range(2):
                name = f"x{patient}_{lesion}_{view}"
                _tiny_crop(rng, label, noise=30.0, brightness=80.0).save(folder / "images" / f"{name}.png")
                birads = ("4b", "5", "4a")[view + lesion] if label else ("2", "3", "4a")[(patient + view) % 3]
                rows.append({"case_id": name, "patient_id": f"site-{patient}", "label": ("benign", "malignant")[label],
                             "us_image": f"images/{name}.png", "lesion_id": f"L{lesion}",
                             "device": ("scanner A", "scanner B")[patient % 2], "birads": birads,
                             "split": "test", "prepared": "crops"})
    return _write_csv(rows, folder / "manifest.csv")


def _predictions(network, manifest: Path, modality: str, part: str, path: Path) -> None:
    items = load_datalist(str(manifest), modality, part)
    batch = next(iter(DataLoader(Dataset(items, eval_transforms(modality, TINY_SIZE)), batch_size=len(items))))
    with torch.no_grad():
        probabilities = torch.softmax(network(batch["image"]), dim=1)[:, 1]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "label", "prob_malignant"])
        writer.writerows([item["case_id"], item["label"], f"{p:.6f}"] for item, p in zip(items, probabilities.tolist()))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """US, CT and fusion models trained one epoch on ``write_tiny_crops``, in the bundle layout inference reads."""
    root = tmp_path_factory.mktemp("bundle")
    manifest = write_tiny_crops(tmp_path_factory.mktemp("crops"))
    torch.manual_seed(0)
    for modality in ("us", "ct", "fusion"):
        network = build_classifier(modality, modality_dropout=0.2 if modality == "fusion" else 0.0)
        train = load_datalist(str(manifest), modality, "train")
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        network.train()
        for batch in DataLoader(Dataset(train, train_transforms(modality, TINY_SIZE)), batch_size=len(train)):  # one epoch
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(batch["image"]), batch["label"]).backward()
            optimizer.step()
        network.eval()
        (root / "models" / modality).mkdir(parents=True)
        torch.save(network.state_dict(), root / "models" / modality / "model.pt")
        runs = root / "runs" / modality
        runs.mkdir(parents=True)
        for part in ("val", "test"):
            _predictions(network, manifest, modality, part, runs / f"predictions_{part}.csv")
        write_model_report(str(runs), modality)
    (root / "configs").mkdir()
    shutil.copy(CONFIGS / "metadata.json", root / "configs")
    config = json.loads((CONFIGS / "inference.json").read_text())
    (root / "configs" / "inference.json").write_text(json.dumps({**config, "spatial_size": TINY_SIZE}, indent=4))
    return root


def bundle_workflow(config_files, workflow_type, dataset: Path, root: Path, **override) -> ConfigWorkflow:
    """The bundle's ``config_files`` (names in monai_bundle/configs) as an initialized MONAI ConfigWorkflow, tiny sizes."""
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / name) for name in config_files],
        workflow_type=workflow_type,
        logging_file=str(CONFIGS / "logging.conf"),
        meta_file=str(CONFIGS / "metadata.json"),
        bundle_root=str(root),
        dataset_dir=str(dataset),
        **{**TINY, **override},
    )
    workflow.initialize()
    return workflow


def bundle_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)


def bundle_overrides(dataset: Path, root: Path, **extra) -> list[str]:
    """Command-line overrides ``--key value`` for a tiny one-epoch run (``extra`` added or replacing)."""
    pairs = {**TINY, "max_epochs": 1, "bundle_root": str(root), "dataset_dir": str(dataset), **extra}
    return [item for key, value in pairs.items() for item in (f"--{key}", str(value))]


def load_script(path: Path, name: str):
    """Import a script that is not part of a package (a training script, the Slicer worker) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_synthetic_module_inputs(case_dir: Path, folder: Path, seed: int = 7, location: str = "point") -> dict:
    """One synthetic case written to ``case_dir`` and, as the Slicer module would write it, to ``folder``
    (the CT lesion as the mass ``point`` or as side/clock/distance: ``location="clock"``). Returns the case row."""
    from BreastFusionLib.ct.io import load_ct
    from BreastFusionLib.serving.module_inputs import write_module_inputs
    from BreastFusionLib.synthetic.cohort import write_case
    from BreastFusionLib.synthetic.latent import sample_lesions

    row = write_case(sample_lesions(1, seed=seed)[0], case_dir)
    where = ({"point_ras": [float(v) for v in row["ct_point_ras"].split(",")]} if location == "point" else
             {"side": row["ct_side"], "clock": row["ct_clock"], "distance_mm": float(row["ct_distance_mm"])})
    write_module_inputs(folder, us_frame=np.asarray(Image.open(case_dir / row["us_image"])),
                        us_box=[float(v) for v in row["us_box"].split(",")], ct=load_ct(case_dir / row["ct_image"]),
                        lesion_diameter_mm=float(row["lesion_diameter_mm"]), **where)
    return row
