"""Training and inference share one preprocessing path; augmentation is seeded and reproducible."""

import numpy as np
import pytest
import torch
from PIL import Image

from BreastFusionLib.transforms import (
    eval_transforms,
    inference_transforms,
    modality_keys,
    quantize_to_8bit,
    train_transforms,
)


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


def test_off_centre_training_moves_the_lesion_within_a_quarter_of_the_side(tmp_path):
    context = np.zeros((120, 120), np.uint8)  # a context crop: the 60-pixel crop is its central half
    context[45:75, 45:75] = 255  # a lesion of half the crop side, centred
    Image.fromarray(context).save(tmp_path / "context.png")
    transform = train_transforms("us", spatial_size=32, off_centre=0.25).set_random_state(seed=0)
    centres = []
    for _ in range(100):
        image = transform({"us": str(tmp_path / "context.png"), "label": 0})["image"][0].numpy()
        assert image.shape == (32, 32)
        rows, cols = np.nonzero(image > 0.5)
        centres.append((rows.mean(), cols.mean()))
    offsets = np.abs(np.asarray(centres) - 15.5)
    assert offsets.max() <= 0.25 * 32 + 2  # a quarter of the side (+ the paper augmentation's small crop)
    assert np.mean(offsets.max(axis=1) > 4) > 0.5  # most windows move the lesion well off the centre
    with pytest.raises(ValueError, match="off_centre must be in"):
        train_transforms("us", spatial_size=32, off_centre=0.7)
