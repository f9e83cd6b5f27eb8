"""Training and inference share one preprocessing path, listed in the bundle's configs; augmentation is seeded and reproducible."""

import hashlib
import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from BreastFusionLib import transform_config
from BreastFusionLib.crop import CropBox, LesionCrop
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.case import model_input
from BreastFusionLib.transform_config import (
    REPOSITORY_CONFIGS,
    eval_transforms,
    inference_transforms,
    serving_config,
    train_transforms,
)
from BreastFusionLib.transforms import OffCentreContextd, context_zoom_range, modality_keys, quantize_to_8bit

# sha256 (first 16 hex digits) of the images the transforms gave on ``synthetic_crops`` when they were
# built in Python (transforms.py before the configs listed them, commit 373374b): the configs' lists
# give exactly the same tensors. Training: seed 5, three successive draws.
PINNED = {
    "eval-us": "73344a371fbd51a3", "inference-us": "73344a371fbd51a3", "train-us": "85b545c625a14f47",
    "train-off-centre-us": "d937f189e692d1de",
    "eval-ct": "f89b924effcee9d7", "inference-ct": "f89b924effcee9d7", "train-ct": "f6f5722c6cd9b3de",
    "train-off-centre-ct": "875fb6e36dfabcd4",
    "eval-fusion": "c9db98a91aec8b95", "inference-fusion": "c9db98a91aec8b95", "train-fusion": "dc4ac7087b9daeda",
    "train-off-centre-fusion": "3646146744bbf136",
}
SHARED_IDS = ("image_keys", "loading", "resizing", "stacking")


@pytest.fixture()
def crops(tmp_path):
    rng = np.random.default_rng(1)
    us, ct = rng.random((40, 40)).astype(np.float32), rng.random((40, 40)).astype(np.float32)
    us[:5, :] = 1.0  # an asymmetric mark to catch transposed loading
    paths = {}
    for name, crop in (("us", us), ("ct", ct)):
        paths[name] = str(tmp_path / f"{name}.png")
        Image.fromarray((quantize_to_8bit(crop) * 255).round().astype(np.uint8)).save(paths[name])
    return {"us": us, "ct": ct}, paths


@pytest.mark.parametrize("modality, channels", [("us", 1), ("ct", 1), ("fusion", 2)])
def test_file_and_in_memory_paths_give_the_same_tensor(crops, modality, channels):
    arrays, paths = crops
    from_files = eval_transforms(modality, spatial_size=32)({**paths, "label": 1})
    in_memory = inference_transforms(modality, spatial_size=32)(dict(arrays))
    assert from_files["image"].shape == (channels, 32, 32)
    torch.testing.assert_close(from_files["image"], in_memory["image"], atol=1e-6, rtol=0)
    assert from_files["label"] == 1
    assert not any(key in from_files for key in modality_keys(modality))


def test_us_comes_first_in_the_fusion_stack_and_orientation_is_kept(crops):
    arrays, paths = crops
    image = eval_transforms("fusion", spatial_size=40)(dict(paths))["image"]
    torch.testing.assert_close(image[0], torch.from_numpy(quantize_to_8bit(arrays["us"])), atol=1e-6, rtol=0)
    assert image[0, :5].mean() == pytest.approx(1.0)  # rows stay rows (no PIL transpose)


def test_augmentation_is_seeded_and_changes_the_image(crops):
    _, paths = crops
    first = train_transforms("fusion", spatial_size=32).set_random_state(seed=7)(dict(paths))["image"]
    again = train_transforms("fusion", spatial_size=32).set_random_state(seed=7)(dict(paths))["image"]
    other = train_transforms("fusion", spatial_size=32).set_random_state(seed=8)(dict(paths))["image"]
    plain = eval_transforms("fusion", spatial_size=32)(dict(paths))["image"]
    torch.testing.assert_close(first, again)
    assert first.shape == plain.shape == (2, 32, 32)
    assert not torch.allclose(first, other) and not torch.allclose(first, plain)


def test_unknown_modality_is_rejected():
    with pytest.raises(ValueError, match="modality must be one of"):
        modality_keys("mri")


def lesion_windows(folder, crop_scale: float = 0.0, draws: int = 100):
    """Training windows (32 pixels) cut from a context crop whose crop (its central half) holds a centred
    lesion of half the crop side."""
    context = np.zeros((120, 120), np.uint8)
    context[45:75, 45:75] = 255
    Image.fromarray(context).save(folder / "context.png")
    transform = train_transforms("us", spatial_size=32, off_centre=0.25, crop_scale=crop_scale).set_random_state(seed=0)
    return [transform({"us": str(folder / "context.png"), "label": 0})["image"][0].numpy() for _ in range(draws)]


def test_off_centre_training_moves_the_lesion_within_a_quarter_of_the_side(tmp_path):
    centres = []
    for image in lesion_windows(tmp_path):
        assert image.shape == (32, 32)
        rows, cols = np.nonzero(image > 0.5)
        centres.append((rows.mean(), cols.mean()))
    offsets = np.abs(np.asarray(centres) - 15.5)
    assert offsets.max() <= 0.25 * 32 + 2  # a quarter of the side (+ the paper augmentation's small crop)
    assert np.mean(offsets.max(axis=1) > 4) > 0.5  # most windows move the lesion well off the centre


def test_crop_scale_varies_the_lesion_to_crop_ratio_within_its_bounds(tmp_path):
    # lesion side in the window: 16 pixels (half of 32) x zoom (1/1.25 .. 1/0.75) x 32/29 (the paper's 0.9 crop)
    plain, jittered = ([np.sqrt((image > 0.5).sum()) for image in lesion_windows(tmp_path, scale)] for scale in (0, 0.25))
    assert all(image.shape == (32, 32) for image in lesion_windows(tmp_path, 0.25, draws=5))
    assert 16 * 0.8 * 32 / 29 - 1.5 <= min(jittered) and max(jittered) <= 16 / 0.75 * 32 / 29 + 1.5
    assert max(plain) - min(plain) < 3.5 < 6 < max(jittered) - min(jittered)  # rotation alone: a few pixels


def test_crop_scale_outside_the_context_or_without_it_is_rejected():
    assert context_zoom_range(0.0, 0.0) == (1.0, 1.0)  # off: no zoom
    assert context_zoom_range(0.25, 0.25) == pytest.approx((0.8, 4 / 3))
    with pytest.raises(ValueError, match="needs off_centre"):
        context_zoom_range(0.25, 0.0)
    with pytest.raises(ValueError, match=r"crop_scale must be in \(0, 0.333\]"):
        context_zoom_range(0.4, 0.25)  # a 1.4-side window moved by a quarter side leaves the 2-side context


def synthetic_crops(folder):
    """Random [0, 1] crops and context crops, and their 8-bit PNG files."""
    rng = np.random.default_rng(3)
    arrays = {name: rng.random(shape).astype(np.float32) for name, shape in
              (("us", (40, 40)), ("ct", (40, 40)), ("us_context", (80, 80)), ("ct_context", (80, 80)))}
    arrays["us"][:5, :] = 1.0  # asymmetric marks: a transposed or flipped result changes the hash
    arrays["ct"][:, :7] = 0.0
    paths = {}
    for name, crop in arrays.items():
        paths[name] = str(folder / f"{name}.png")
        Image.fromarray((quantize_to_8bit(crop) * 255).round().astype(np.uint8)).save(paths[name])
    return arrays, paths


def digest(images) -> str:
    sha = hashlib.sha256()
    for image in images:
        array = np.asarray(image)
        sha.update(str((array.shape, array.dtype)).encode())
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:16]


@pytest.mark.parametrize("modality", ["us", "ct", "fusion"])
def test_the_configs_give_the_same_tensors_as_the_python_built_transforms(tmp_path, modality):
    arrays, paths = synthetic_crops(tmp_path)
    keys = modality_keys(modality)
    files, contexts = {k: paths[k] for k in keys}, {k: paths[f"{k}_context"] for k in keys}
    found = {
        f"eval-{modality}": digest([eval_transforms(modality, 32)({**files, "label": 1})["image"]]),
        f"inference-{modality}": digest([inference_transforms(modality, 32)({k: arrays[k] for k in keys})["image"]]),
    }
    for name, transform, data in (("train", train_transforms(modality, 32), files),
                                  ("train-off-centre", train_transforms(modality, 32, off_centre=0.25), contexts)):
        transform.set_random_state(seed=5)
        found[f"{name}-{modality}"] = digest([transform({**data, "label": 1})["image"] for _ in range(3)])
    assert found == {key: value for key, value in PINNED.items() if key.endswith(f"-{modality}")}


def test_a_user_overrides_one_transform_as_in_model_zoo_bundles(tmp_path):
    """``--resizing#0#spatial_size [48,48]`` and ``--train#augmentation#4#spatial_size [40,40]`` reach those transforms."""
    _, paths = synthetic_crops(tmp_path)
    parser = ConfigParser()
    parser.read_config(str(REPOSITORY_CONFIGS / "train.json"))
    parser.update({"modality": "fusion", "spatial_size": 32, "resizing#0#spatial_size": [48, 48],
                   "train#augmentation#4#spatial_size": [40, 40], "train#augmentation#0#prob": 0.0})
    crops = {"us": paths["us"], "ct": paths["ct"]}
    assert parser.get_parsed_content("validate#preprocessing")(dict(crops))["image"].shape == (2, 48, 48)
    train = parser.get_parsed_content("train#preprocessing")
    assert train.transforms[4].prob == 0.0  # the rotation (loading: 3 steps, resizing: 1)
    assert train(dict(crops))["image"].shape == (2, 40, 40)


def test_training_and_inference_configs_define_the_same_preprocessing():
    train, inference = (json.loads((REPOSITORY_CONFIGS / name).read_text()) for name in ("train.json", "inference.json"))
    assert {key: train[key] for key in SHARED_IDS} == {key: inference[key] for key in SHARED_IDS}


def test_serving_reads_the_bundles_own_inference_config(tmp_path, crops):
    arrays, _ = crops
    assert serving_config(None) == serving_config(tmp_path) == REPOSITORY_CONFIGS / "inference.json"
    (tmp_path / "inference.json").write_text(json.dumps({"spatial_size": 300}))  # no transforms listed (older bundle)
    assert serving_config(tmp_path) == REPOSITORY_CONFIGS / "inference.json"
    config = json.loads((REPOSITORY_CONFIGS / "inference.json").read_text())
    config["resizing"][0]["mode"] = "nearest"
    (tmp_path / "inference.json").write_text(json.dumps(config))
    assert serving_config(tmp_path) == tmp_path / "inference.json"
    lesion = {"us": LesionCrop(arrays["us"], CropBox(20, 20, 40, 40))}
    own, repository = model_input("us", lesion, 32, tmp_path), model_input("us", lesion, 32)
    assert own.shape == repository.shape == (1, 1, 32, 32) and not torch.equal(own, repository)


def test_off_centre_outside_half_the_side_is_rejected():
    with pytest.raises(ValueError, match="off_centre must be in"):
        OffCentreContextd(keys=("us",), spatial_size=32, off_centre=0.7)


def test_serving_without_any_inference_config_says_what_to_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(transform_config, "REPOSITORY_CONFIGS", tmp_path / "not_installed")
    with pytest.raises(UserInputError, match="copy monai_bundle/configs/inference.json into the bundle's configs/"):
        serving_config(tmp_path)
