"""CBAM-ResNet-50 and the US, CT, fusion classifiers: shapes, sizes, ImageNet transfer, freezing, export."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.networks import (
    CBAMResNet50,
    FusionClassifier,
    LateFusion,
    SingleModalityClassifier,
    build_classifier,
    load_imagenet_resnet50,
)
from BreastFusionLib.networks.cbam import max_mean


def torchvision_resnet50_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet-50 names and shapes, written out from its naming scheme."""
    generator = torch.Generator().manual_seed(seed)

    def tensor(*shape):
        return torch.randn(*shape, generator=generator)

    def batch_norm(prefix, channels):
        return {f"{prefix}.weight": tensor(channels), f"{prefix}.bias": tensor(channels),
                f"{prefix}.running_mean": tensor(channels), f"{prefix}.running_var": tensor(channels).abs() + 0.5,
                f"{prefix}.num_batches_tracked": torch.tensor(100)}

    state = {"conv1.weight": tensor(64, 3, 7, 7), **batch_norm("bn1", 64)}
    in_planes = 64
    for layer, (planes, blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3]), start=1):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            state[f"{prefix}.conv1.weight"] = tensor(planes, in_planes, 1, 1)
            state[f"{prefix}.conv2.weight"] = tensor(planes, planes, 3, 3)
            state[f"{prefix}.conv3.weight"] = tensor(planes * 4, planes, 1, 1)
            for index, channels in ((1, planes), (2, planes), (3, planes * 4)):
                state.update(batch_norm(f"{prefix}.bn{index}", channels))
            if block == 0:
                state[f"{prefix}.downsample.0.weight"] = tensor(planes * 4, in_planes, 1, 1)
                state.update(batch_norm(f"{prefix}.downsample.1", planes * 4))
            in_planes = planes * 4
    state["fc.weight"], state["fc.bias"] = tensor(1000, 2048), tensor(1000)
    return state


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50_torchvision_layout.pth"
    torch.save(torchvision_resnet50_state_dict(), path)
    return path


def count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("modality, channels", [("us", 1), ("ct", 1), ("fusion", 2)])
def test_output_shapes_at_300(modality, channels):
    model = build_classifier(modality).eval()
    with torch.no_grad():
        assert model(torch.rand(1, channels, 300, 300)).shape == (1, 2)


def test_parameter_counts_match_resnet50_and_the_cbam_paper():
    assert count(CBAMResNet50(in_channels=3, num_classes=1000, cbam=False)) == 25_557_032
    assert count(CBAMResNet50(in_channels=3, num_classes=1000)) == pytest.approx(28.09e6, rel=0.005)


def test_every_non_cbam_parameter_has_its_torchvision_name():
    ours = set(CBAMResNet50(in_channels=3, num_classes=1000).state_dict())
    torchvision = set(torchvision_resnet50_state_dict())
    assert {k for k in ours if ".cbam." not in k} == torchvision


def test_cbam_sits_after_bn3_before_the_residual_add():
    block = CBAMResNet50().layer1[0]
    calls = []
    for name in ("bn3", "cbam", "downsample"):
        getattr(block, name).register_forward_hook(lambda module, i, o, name=name: calls.append(name))
    block(torch.rand(1, 64, 8, 8))
    assert calls == ["bn3", "cbam", "downsample"]
    gate = block.cbam.spatial_gate
    assert torch.all(gate.bn.weight == 0)  # official init: the spatial gate starts as a constant 0.5


@pytest.mark.parametrize("dims", [[1], [2, 3]])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_cbam_max_mean_gradient_is_autograds_amax_and_mean(dims, memory_format):
    # integer values: many tied maxima, which share the gradient as with torch.amax
    x = torch.randint(0, 4, (2, 6, 5, 4)).double().contiguous(memory_format=memory_format).requires_grad_()
    maximum, average = max_mean(x, dims)
    assert torch.equal(maximum, torch.amax(x, dim=dims, keepdim=True))
    assert torch.equal(average, torch.mean(x, dim=dims, keepdim=True))
    weights = torch.randn_like(maximum), torch.randn_like(average)
    ours = torch.autograd.grad((maximum * weights[0]).sum() + (average * weights[1]).sum(), x)[0]
    autograd = torch.autograd.grad((torch.amax(x, dim=dims, keepdim=True) * weights[0]).sum()
                                   + (torch.mean(x, dim=dims, keepdim=True) * weights[1]).sum(), x)[0]
    torch.testing.assert_close(ours, autograd, rtol=0, atol=1e-12)


def test_imagenet_weights_load_by_name_and_are_the_ones_used(imagenet_file):
    state = torchvision_resnet50_state_dict()
    backbone = CBAMResNet50(in_channels=3)
    cbam_before = {k: v.clone() for k, v in backbone.state_dict().items() if ".cbam." in k}
    report = load_imagenet_resnet50(backbone, str(imagenet_file))
    loaded = backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(loaded[key], value, msg=key)
    for key, value in cbam_before.items():
        torch.testing.assert_close(loaded[key], value)
    assert report.skipped == ["fc.bias", "fc.weight"] and len(report.fresh) == len(cbam_before)


def test_one_channel_conv1_is_the_rgb_sum(imagenet_file):
    backbone = CBAMResNet50(in_channels=1)
    load_imagenet_resnet50(backbone, str(imagenet_file))
    expected = torchvision_resnet50_state_dict()["conv1.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(backbone.conv1.weight.detach(), expected)


def test_wrong_state_dict_names_the_missing_keys(tmp_path):
    state = {k: v for k, v in torchvision_resnet50_state_dict().items() if not k.startswith("layer3.")}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(UserInputError, match=r"missing keys \['layer3"):
        load_imagenet_resnet50(CBAMResNet50(), str(path))
    with pytest.raises(UserInputError, match="not found"):
        load_imagenet_resnet50(CBAMResNet50(), str(tmp_path / "absent.pth"))


def test_imagenet_download_failure_says_where_to_put_the_file(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserInputError, match="resnet50-11ad3fa6.pth.*copy that file into"):
        load_imagenet_resnet50(CBAMResNet50(), "imagenet")


def test_backbone_freeze_trains_only_head_and_cbam(imagenet_file):
    model = build_classifier("us", pretrained=str(imagenet_file), freeze="backbone")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head.") or ".cbam." in name for name in trainable)
    assert any(name.startswith("head.") for name in trainable)

    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.rand(4, 1, 64, 64)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen_norm_stats = {k for k in before if k.startswith("backbone.bn1.") or k.startswith("backbone.layer2.0.bn2.")}
    assert changed and not changed & frozen_norm_stats  # frozen BN running statistics do not move
    assert all(k.startswith("head.") or ".cbam." in k for k in changed)


def test_backbone_freeze_without_cbam_trains_the_head_only():
    model = build_classifier("ct", freeze="backbone", train_cbam=False)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.1.weight", "head.1.bias"}


def test_last_stage_freeze_also_trains_layer4():
    model = build_classifier("fusion", freeze="last_stage")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(name.startswith("us_branch.layer4.0.conv1.") for name in trainable)
    assert any(name.startswith("ct_branch.layer4.2.bn3.") for name in trainable) and "head.1.weight" in trainable
    assert all(name.startswith(("head.", "us_branch.layer4.", "ct_branch.layer4.")) or ".cbam." in name for name in trainable)
    model.train()
    assert model.us_branch.layer4[0].bn1.training and not model.us_branch.layer3[0].bn1.training


def test_fusion_gradients_reach_both_branches():
    model = FusionClassifier()
    model(torch.rand(2, 2, 64, 64)).sum().backward()
    for branch in (model.us_branch, model.ct_branch):
        assert branch.conv1.weight.grad is not None and branch.conv1.weight.grad.abs().sum() > 0


def test_a_missing_modality_is_an_all_zero_channel_and_drops_that_branch():
    torch.manual_seed(0)
    model = FusionClassifier().eval()
    image = torch.rand(2, 2, 64, 64)
    image[1, 1] = 0  # case 1 has no CT
    with torch.no_grad():
        logits = model(image)
        us_features = model.us_branch(image[1:, :1])
        expected = model.head(torch.cat([us_features, torch.zeros_like(us_features)], dim=1))
    torch.testing.assert_close(logits[1:], expected)


def test_modality_dropout_drops_one_modality_never_both():
    torch.manual_seed(0)
    model = FusionClassifier(modality_dropout=1.0).train()
    seen = []
    model.head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    model(torch.rand(16, 2, 32, 32) + 0.1)
    features = seen[0]
    us_zero = features[:, :2048].abs().sum(dim=1) == 0
    ct_zero = features[:, 2048:].abs().sum(dim=1) == 0
    assert torch.all(us_zero ^ ct_zero) and us_zero.any() and ct_zero.any()
    with pytest.raises(ValueError, match="modality_dropout"):
        FusionClassifier(modality_dropout=1.5)


def test_late_fusion_averages_probabilities():
    us, ct = SingleModalityClassifier().eval(), SingleModalityClassifier().eval()
    image = torch.rand(3, 2, 32, 32)
    with torch.no_grad():
        expected = (torch.softmax(us(image[:, :1]), 1) + torch.softmax(ct(image[:, 1:]), 1)) / 2
        torch.testing.assert_close(LateFusion(us, ct)(image), expected)


def test_torchscript_export_of_fusion_matches_eager(tmp_path):
    model = FusionClassifier().eval()
    image = torch.rand(2, 2, 64, 64)
    image[1, 0] = 0
    path = tmp_path / "fusion.ts"
    torch.jit.save(torch.jit.script(model), path)
    loaded = torch.jit.load(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image), model(image))


def test_unknown_modality_and_freeze_mode_are_rejected():
    with pytest.raises(ValueError, match="modality must be one of"):
        build_classifier("mri")
    with pytest.raises(UserInputError, match="freeze mode"):
        build_classifier("us", freeze="half")


def test_fusion_branches_start_from_single_models(tmp_path):
    us, ct = build_classifier("us"), build_classifier("ct")
    torch.save(us.state_dict(), tmp_path / "us.pt")
    torch.save(ct.state_dict(), tmp_path / "ct.pt")
    fusion = build_classifier("fusion", branches_from={"us": str(tmp_path / "us.pt"), "ct": str(tmp_path / "ct.pt")})
    for name, value in us.backbone.state_dict().items():
        assert torch.equal(fusion.us_branch.state_dict()[name], value)
    assert torch.equal(fusion.ct_branch.state_dict()["conv1.weight"], ct.backbone.state_dict()["conv1.weight"])
    torch.save(fusion.state_dict(), tmp_path / "fusion.pt")
    with pytest.raises(UserInputError, match="not a single-modality BreastFusion model"):
        build_classifier("fusion", branches_from={"us": str(tmp_path / "fusion.pt"), "ct": str(tmp_path / "ct.pt")})
