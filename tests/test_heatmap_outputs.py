"""What a user sees of the heat maps: panels over the crop with a context view, flat maps named, hit rates stated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from BreastFusionLib.crop import CropBox, LesionCrop
from BreastFusionLib.inference.loaded_bundle import LoadedBundle, LoadedModel
from BreastFusionLib.inference.case import CaseResult, ModelResult
from BreastFusionLib.inference.heatmaps import to_image
from BreastFusionLib.inference.outputs import (CONTEXT_PX, blend, map_lines, heatmap_figure, write_outputs)

CROP = 300


def _case(tmp_path: Path, flat: bool = False) -> tuple[CaseResult, LoadedBundle]:
    """A US-only case of a 600x800 image whose 150-pixel crop square lies near a corner, with made-up maps."""
    rng = np.random.default_rng(0)
    image = rng.random((600, 800)).astype(np.float32)
    box = CropBox(center_row=100.0, center_col=650.0, side_rows=150.0, side_cols=150.0)
    crop = LesionCrop(pixels=rng.random((CROP, CROP)).astype(np.float32), box=box)
    rows, cols = np.mgrid[0:CROP, 0:CROP]
    gradcam = np.zeros((CROP, CROP), np.float32) if flat else np.exp(-((rows - 100) ** 2 + (cols - 200) ** 2) / 800.0)
    attention = 0.45 + 0.1 * rows / CROP
    crop_maps = {"attention": attention.astype(np.float32), "gradcam": gradcam.astype(np.float32)}
    maps = {kind: to_image(m, box, image.shape) for kind, m in crop_maps.items()}
    model = ModelResult(0.2, 0.5, "benign", None, 0.2, 0.5, 1.0)
    result = CaseResult({"us": model}, {"us": crop}, {"us": image}, None, {"us": {"us": maps}}, {"us": {"us": crop_maps}},
                        {"us": 0})
    checkpoint = tmp_path / "models" / "us" / "model.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    loaded = LoadedModel("us", None, 0.5, 1.0, 224, checkpoint, "0" * 64, "cbam_efficientnet_lite0")
    return result, LoadedBundle(tmp_path, "0.1.0", {"us": loaded})


def test_each_map_is_drawn_over_its_whole_crop_beside_a_small_context_view(tmp_path):
    result, _ = _case(tmp_path)
    picture = np.asarray(heatmap_figure(result, "us"))
    context_width = CONTEXT_PX  # the 800-pixel-wide image shrinks to the context size
    band = picture.shape[0] - CROP  # the title band above each map panel
    assert 30 <= band <= 60 and picture.shape[1] == context_width + 2 * (CROP + 6)
    crop, maps = result.crops["us"].pixels, result.crop_heatmaps["us"]["us"]
    gradcam_panel = picture[band:, context_width + 6 + CROP + 6:][:, :CROP]
    np.testing.assert_array_equal(gradcam_panel, blend(crop, maps["gradcam"]))  # the crop fills the panel, 1:1
    attention_panel = picture[band:, context_width + 6:][:, :CROP]
    assert attention_panel.shape == (CROP, CROP, 3) and attention_panel.std() > 0
    context = picture[: 200, :context_width]
    yellow = (context[..., 0] > 200) & (context[..., 1] > 200) & (context[..., 2] < 60)
    rows, cols = np.nonzero(yellow)
    # the crop square (rows 25..175, cols 575..725 of 600x800) at a quarter scale, under the title band
    assert cols.min() == pytest.approx(575 / 4, abs=2) and cols.max() == pytest.approx(725 / 4, abs=2)
    assert rows.max() - rows.min() == pytest.approx(150 / 4, abs=2)


def test_titles_name_the_class_and_say_when_a_map_is_flat():
    assert map_lines("fusion", "gradcam", np.zeros((4, 4), np.float32), "benign") == [
        "fusion model: Grad-CAM", "flat: no evidence for benign"]
    assert map_lines("us", "gradcam", np.eye(4, dtype=np.float32), "malignant")[1] == "evidence for malignant"
    assert map_lines("us", "attention", np.eye(4, dtype=np.float32), "malignant") == ["us model: attention",
                                                                                     "features, either class"]
    assert map_lines("us", "attention", np.zeros((4, 4), np.float32), None)[1] == "flat"


def test_result_json_and_report_state_the_map_its_class_flatness_and_measured_hit_rate(tmp_path):
    result, bundle = _case(tmp_path / "bundle", flat=True)
    measured = {"data": "BUSI, 645 cases", "maps": {"us": {"gradcam": {
        "centred": {"hit_rate": 0.81, "ci95": [0.78, 0.84], "centre": 0.69, "mcnemar_p_vs_centre": 1e-9},
        "displaced": {"hit_rate": 0.8, "ci95": [0.77, 0.83], "centre": 0.2, "mcnemar_p_vs_centre": 1e-40}}}}}
    (bundle.root / "runs" / "us").mkdir(parents=True)
    (bundle.root / "runs" / "us" / "pointing_game.json").write_text(json.dumps(measured))
    out = tmp_path / "out"
    record = write_outputs(result, bundle, out)
    info = record["heatmap_info"]["us"]["us"]
    assert info["gradcam"]["explains"] == "benign" and info["gradcam"]["flat"] is True
    assert info["gradcam"]["hit_rate"]["crops"]["displaced"]["hit_rate"] == 0.8
    assert info["attention"]["explains"] is None and info["attention"]["hit_rate"] is None
    assert json.loads((out / "result.json").read_text())["heatmap_info"] == record["heatmap_info"]
    html = (out / "report.html").read_text()
    assert "flat: no evidence for this class" in html and "Grad-CAM for benign" in html
    assert "displaced: 80% [77%-83%] (crop centre 20%)" in html and "BUSI, 645 cases" in html
    assert "not measured for this model" in html  # attention has no saved pointing game here
    assert Image.open(out / "us_overlay.png").size[1] > CROP
