"""bf16 autocast vs fp32: run-time detection, the fp32 fallback and switch, agreement of probabilities and decisions."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SIZE, write_tiny_crops
from monai.data import DataLoader, Dataset

from BreastFusionLib import precision
from BreastFusionLib.bundle.datalist import load_datalist
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference import load_bundle
from BreastFusionLib.inference.calibration import apply_temperature
from BreastFusionLib.inference.heatmaps import MALIGNANT
from BreastFusionLib.inference.runtime import prepare_network, run_model, warm_up
from BreastFusionLib.transform_config import eval_transforms


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has native bf16, so that the bf16 path runs on any machine (oneDNN emulates it)."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "BF16_MIN_SIDE", 16)  # the tiny bundle's 32 px inputs too
    monkeypatch.delenv(precision.ENVIRONMENT_VARIABLE, raising=False)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """The tiny bundle's crops (same generator and seed), with their splits."""
    return write_tiny_crops(tmp_path_factory.mktemp("crops"))


def test_detection_reads_the_cpu_flags(monkeypatch):
    capabilities = {"avx512_bf16": False, "amx_bf16": False, "avx512_f": True}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert not precision.cpu_has_native_bf16()  # AVX-512 alone only emulates bf16: slower than fp32
    capabilities["avx512_bf16"] = True
    assert precision.cpu_has_native_bf16() == torch.backends.mkldnn.is_available()


def test_fp32_when_the_cpu_has_no_native_bf16_or_when_forced(monkeypatch, bf16_cpu):
    assert precision.autocast_dtype("cpu") == torch.bfloat16
    assert precision.autocast_dtype("cpu", "fp32") is None
    assert precision.autocast_dtype("cpu", image_side=8) is None  # small inputs: bf16 costs more than it saves
    monkeypatch.setenv(precision.ENVIRONMENT_VARIABLE, "fp32")
    assert precision.autocast_dtype("cpu") is None and not precision.mixed_precision_available("cpu")
    monkeypatch.setenv(precision.ENVIRONMENT_VARIABLE, "fp16")
    with pytest.raises(UserInputError, match="BREASTFUSION_PRECISION must be one of auto, fp32, got 'fp16'"):
        precision.autocast_dtype("cpu")
    monkeypatch.delenv(precision.ENVIRONMENT_VARIABLE)
    with pytest.raises(UserInputError, match="precision must be one of auto, fp32, got 'half'"):
        precision.autocast_dtype("cpu", "half")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.autocast_dtype("cpu") is None
    with precision.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")


def test_fp32_fallback_gives_the_fp32_model_output(tiny_bundle, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    model = load_bundle(tiny_bundle, ["us"]).models["us"]
    image = torch.rand(1, 1, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        expected = model.network(image)[0]
    logits, _, _ = run_model(model, image, ["us"], ())
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)  # channels_last: same values, other summation order


def _probabilities(model, images: torch.Tensor, precision_name: str) -> list[float]:
    with torch.no_grad(), precision.autocast("cpu", precision_name):
        logits = model.network(images).float()
    return [apply_temperature(float(p), model.temperature) for p in torch.softmax(logits, 1)[:, MALIGNANT]]


@pytest.mark.parametrize("modality", ["us", "ct", "fusion"])
def test_bf16_probabilities_within_001_of_fp32_and_no_test_decision_changes(tiny_bundle, crops, bf16_cpu, modality):
    model = load_bundle(tiny_bundle, [modality]).models[modality]
    prepare_network(model)  # channels_last, as in prediction
    threshold = apply_temperature(model.threshold, model.temperature)
    for split in ("train", "val", "test"):
        items = load_datalist(str(crops), modality, split)
        images = next(iter(DataLoader(Dataset(items, eval_transforms(modality, TINY_SIZE)), batch_size=len(items))))["image"]
        fp32, bf16 = _probabilities(model, images, "fp32"), _probabilities(model, images, "auto")
        assert max(abs(a - b) for a, b in zip(fp32, bf16)) <= 0.01
        if split == "test":  # the threshold was chosen on the validation split, so some val cases sit on it
            assert [p >= threshold for p in fp32] == [p >= threshold for p in bf16]


def test_bf16_heat_maps_follow_the_fp32_ones(tiny_bundle, bf16_cpu):
    model = load_bundle(tiny_bundle, ["fusion"]).models["fusion"]
    for branch in (model.network.us_branch, model.network.ct_branch):
        branch.attention_module().bn.weight.fill_(20.0)  # one epoch leaves the gate nearly constant (it starts at 0)
    torch.manual_seed(0)
    image = torch.rand(1, 2, 96, 96)  # a 3x3 last stage: the tiny bundle's 32 px gives constant 1x1 maps
    _, fp32, _ = run_model(model, image, ["us", "ct"], precision="fp32")
    _, bf16, _ = run_model(model, image, ["us", "ct"], precision="auto")
    for kind in ("attention", "gradcam"):
        for branch in ("us", "ct"):
            assert bf16[branch][kind].dtype == torch.float32 and bf16[branch][kind].shape == fp32[branch][kind].shape
            assert torch.allclose(bf16[branch][kind], fp32[branch][kind], atol=0.05)
    assert fp32["us"]["attention"].std() > 0.05 and fp32["ct"]["gradcam"].std() > 0.05  # maps that vary


def test_warm_up_runs_every_model_and_leaves_predictions_unchanged(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    image = torch.rand(1, 1, TINY_SIZE, TINY_SIZE)
    before, _, _ = run_model(bundle.models["us"], image, ["us"], ())
    seconds = warm_up(bundle)
    assert set(seconds) == {"us", "ct", "fusion"} and all(s > 0 for s in seconds.values())
    assert bundle.models["fusion"].heatmaps is not None  # Grad-CAM's hooks and kernels are ready too
    after, _, _ = run_model(bundle.models["us"], image, ["us"], ())
    assert torch.equal(before, after)
