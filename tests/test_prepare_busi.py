"""The BUSI importer on a small copy of real BUSI files: conflicts, masks, groups, folds, crops."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from BreastFusionLib.cohort.manifest import load_manifest

BUSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "BUSI"
SCRIPT = Path(__file__).resolve().parents[1] / "training" / "prepare_busi.py"
IMAGES = {"benign": (433, 3, 320, 100, 1, 2, 4), "malignant": (145, 1, 2, 3, 53), "normal": (1,)}


@pytest.fixture(scope="module")
def mini_busi(tmp_path_factory):
    if not BUSI.is_dir():
        pytest.skip("BUSI is not available (../shared/data/BUSI)")
    root = tmp_path_factory.mktemp("busi")
    for label, numbers in IMAGES.items():
        (root / label).mkdir()
        for number in numbers:
            for path in BUSI.glob(f"{label}/{label} ({number})*.png"):
                shutil.copy(path, root / label / path.name)
    shutil.copy(BUSI / "near_duplicates.csv", root / "near_duplicates.csv")
    return root


def test_importer_handles_conflicts_masks_groups_and_folds(mini_busi, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(SCRIPT), str(mini_busi), str(out), "--folds", "3"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "import_report.json").read_text())
    assert report["excluded_label_conflict"] == ["benign/benign (433).png", "malignant/malignant (145).png"]
    assert report["excluded_normal"] == 1 and report["cases"] == {"benign": 6, "malignant": 4}
    raw = {case["case_id"]: case for case in load_manifest(out / "raw_manifest.csv")}
    assert raw["busi_benign_3"]["group"] and raw["busi_benign_3"]["group"] == raw["busi_benign_320"]["group"]
    assert raw["busi_benign_3"]["fold"] == raw["busi_benign_320"]["fold"]
    multi = np.asarray(Image.open(raw["busi_benign_100"]["us_mask"])) > 0  # two mask files OR-ed
    parts = [np.asarray(Image.open(p).convert("L")) > 127 for p in sorted(mini_busi.glob("benign/benign (100)_mask*.png"))]
    assert len(parts) == 2 and np.array_equal(multi, parts[0] | parts[1])
    crops = load_manifest(out / "manifest.csv")
    assert len(crops) == 10 and all(Image.open(c["us_image"]).size == (300, 300) for c in crops)


def test_importer_names_a_wrong_folder(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 1 and "near_duplicates.csv not found" in result.stderr and "Traceback" not in result.stderr


def test_whole_image_crops_and_their_box_blanked_copy(mini_busi, tmp_path):
    out, blanked = tmp_path / "whole", tmp_path / "blanked"
    result = subprocess.run([sys.executable, str(SCRIPT), str(mini_busi), str(out), "--folds", "3", "--lesion-fraction", "none",
                             "--keep-overlays"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "import_report.json").read_text())["lesion_fraction"] is None
    bench = SCRIPT.parent / "bench_busi.py"
    result = subprocess.run([sys.executable, str(bench), "blank", "--dataset", str(out), "--out", str(blanked), "--shape", "box"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((blanked / "blank_report.json").read_text())
    assert report["lesion_fraction"] is None and report["cases"] == 10
    assert 0.0 < report["mean_blanked_fraction_of_crop"] < 0.25  # lesion-scaled crops put the box at ~25% of the crop
    assert report["mean_lesion_fraction_left_visible"] == 0.0  # the box covers the whole lesion
    result = subprocess.run([sys.executable, str(bench), "blank", "--dataset", str(out), "--out", str(tmp_path / "center"),
                             "--shape", "center"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "center" / "blank_report.json").read_text())
    assert report["mean_blanked_fraction_of_crop"] == 0.36 and 0.0 <= report["mean_lesion_fraction_left_visible"] <= 1.0


def test_a_bad_lesion_fraction_is_named(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path / "out"), "--lesion-fraction", "2"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "lesion fraction must be in (0, 1] or 'none', got '2'" in result.stderr
