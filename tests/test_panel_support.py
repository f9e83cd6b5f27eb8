"""What the 3D Slicer panel computes, tested without Slicer: crop previews, heat-map captions and
the dependency rules (BreastFusionLib.previews, .display, .dependencies), all free of torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from BreastFusionLib import dependencies
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.display import heatmap_caption
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.previews import crop_previews

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "BreastFusion" / "Resources" / "requirements.txt"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from BreastFusionLib.synthetic.cohort import write_case
    from BreastFusionLib.synthetic.latent import sample_lesions

    folder = tmp_path_factory.mktemp("case")
    return folder, write_case(sample_lesions(1, seed=7)[0], folder)


def test_previews_are_the_crops_the_models_see(case, tmp_path):
    """Same crops as the worker's: the US frame through the PNG round trip, the CT made canonical first."""
    from BreastFusionLib.ct.crop import ct_axial_crop
    from BreastFusionLib.us.crop import us_lesion_crop
    from BreastFusionLib.us.io import load_us_image

    folder, row = case
    volume = load_ct(folder / row["ct_image"])
    flipped = type(volume)(hu=np.ascontiguousarray(volume.hu[:, :, ::-1]), ijk_to_ras=volume.ijk_to_ras.copy())
    flipped.ijk_to_ras[:3, 3] += flipped.ijk_to_ras[:3, 0] * (volume.hu.shape[2] - 1)
    flipped.ijk_to_ras[:3, 0] *= -1  # the node may hold the CT in another voxel order
    box = [float(v) for v in row["us_box"].split(",")]
    point = np.array([float(v) for v in row["ct_point_ras"].split(",")])
    frame = np.asarray(Image.open(folder / row["us_image"]))
    previews = crop_previews(tmp_path, us_frame=frame, us_box=box, ct=flipped, mass_point_ras=point)
    np.testing.assert_array_equal(previews["us"].pixels, us_lesion_crop(load_us_image(folder / row["us_image"]), box=tuple(box)).pixels)
    np.testing.assert_array_equal(previews["ct"].pixels, ct_axial_crop(volume, point).pixels)
    for preview in previews.values():
        assert np.asarray(Image.open(preview.png)).shape == (300, 300) and preview.note
    assert "overlay pixels removed" in previews["us"].note and "axial slice" in previews["ct"].note
    with pytest.raises(UserInputError, match="nothing to crop"):
        crop_previews(tmp_path, us_frame=frame)  # no box


def test_requirements_name_only_what_slicer_does_not_bundle():
    lines = dependencies.read_requirements(REQUIREMENTS)
    names = {dependencies.requirement_name(line) for line in lines}
    assert names == {"monai"}, lines  # numpy, scipy, SimpleITK, Pillow, pydicom come with Slicer >= 5.10; torch with the extension
    covered = set(dependencies.SLICER_BUNDLED) | {dependencies.FROM_PYTORCH_EXTENSION} | names
    assert set(dependencies.REQUIRED_IMPORTS.values()) == covered
    assert dependencies.requirement_name('monai[fire]>=1.5 ; python_version >= "3.10"') == "monai"
    assert dependencies.to_install(lines, ["monai", "scipy"]) == (lines, ["scipy"])  # scipy must come from Slicer


def test_constraints_pin_what_is_installed_and_versions_compare():
    import torch

    pins = dependencies.keep_installed_constraints().splitlines()
    assert f"torch=={dependencies.installed_version('torch')}" in pins and any(p.startswith("numpy==") for p in pins)
    assert "monai" not in " ".join(pins)  # what BreastFusion installs stays free to be chosen by pip
    assert dependencies.version_tuple("2.13.0+cpu") == (2, 13, 0) and dependencies.version_tuple("1.6.1rc1") == (1, 6, 1)
    assert dependencies.old_torch_warning() is None  # this environment's torch is a tested one
    assert torch.__version__.startswith("2.")
    assert dependencies.missing_distributions({"numpy": "numpy", "no_such_package_here": "nope"}) == ["nope"]


def test_what_the_panel_imports_needs_no_torch():
    """The Slicer GUI process imports these before (and without) torch, monai or plotting."""
    code = ("import sys\nimport BreastFusionLib.dependencies, BreastFusionLib.display, BreastFusionLib.previews, "
            "BreastFusionLib.serving.client, BreastFusionLib.serving.protocol, BreastFusionLib.localization.points, "
            "BreastFusionLib.localization.nipples, BreastFusionLib.synthetic.cohort\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai', 'matplotlib', 'sklearn'}))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_heat_map_caption_says_what_the_map_is_when_it_is_flat_and_its_measured_hit_rate():
    measured = {"data": "BUSI, 645 cases", "crops": {
        "centred": {"hit_rate": 0.81, "ci95": [0.78, 0.84], "centre": 0.69},
        "displaced": {"hit_rate": 0.8, "ci95": [0.77, 0.83], "centre": 0.2}}}
    entry = {"map": "Grad-CAM for benign, the model's decision.", "explains": "benign", "flat": True, "hit_rate": measured}
    lines = heatmap_caption(entry).splitlines()
    assert lines == ["Grad-CAM for benign, the model's decision.", "Flat: no evidence for benign.",
                     "Peak on the lesion (pointing game): centred: 81% [78%-84%] (crop centre 69%); "
                     "displaced: 80% [77%-83%] (crop centre 20%); BUSI, 645 cases."]
    unmeasured = heatmap_caption({"map": "CBAM attention.", "explains": None, "flat": True, "hit_rate": None})
    assert "Flat" not in unmeasured and "not measured for this model" in unmeasured and "Do not read the peak" in unmeasured
    assert "older BreastFusion" in heatmap_caption(None)
