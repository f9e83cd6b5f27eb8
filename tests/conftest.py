"""Shared test helpers: real data (skipping cleanly when it is absent) and a tiny learnable crops cohort."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_data(name: str) -> Path:
    """Path of a real dataset file or folder under ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def write_tiny_crops(folder: Path, cases: int = 16) -> Path:
    """A prepared crops manifest whose benign crops hold a bright round blob and malignant ones a
    dark bar (learnable in one or two epochs); splits give each part benign/malignant pairs."""
    rng = np.random.default_rng(0)
    (folder / "crops").mkdir(parents=True)
    rows = []
    for index in range(cases):
        label = index % 2
        for modality in ("us", "ct"):
            crop = rng.normal(100, 20, (40, 40))
            if label:
                crop[10:30, 18:22] = 10
            else:
                yy, xx = np.mgrid[:40, :40]
                crop[(yy - 20) ** 2 + (xx - 20) ** 2 < 60] = 230
            Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(folder / "crops" / f"c{index}_{modality}.png")
        rows.append({"case_id": f"c{index}", "patient_id": f"p{index}", "label": ("benign", "malignant")[label],
                     "us_image": f"crops/c{index}_us.png", "ct_image": f"crops/c{index}_ct.png",
                     "split": ("train", "train", "val", "test")[(index // 2) % 4], "prepared": "crops"})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
