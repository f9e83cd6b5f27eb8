"""MONAI transforms for training and inference: one code path, no train/serve skew.

Prepared crops (US and CT, 8-bit grayscale PNG, 300x300; see ``cohort.prepare``) are loaded,
scaled to [0, 1], resized to the network's ``spatial_size`` and, for the fusion model, stacked as
channels (US first, then CT) into the single ``image`` tensor the networks take.

Training adds the paper's augmentation (section 1.4): rotation, horizontal and vertical flips,
random crop, and a random intensity ("channel") shift. Off-centre training (``off_centre`` > 0)
reads each case's context crop (same centre, twice the side; ``cohort.prepare --context``) and cuts
from it a crop-sized window moved by up to ``off_centre`` x the crop side along each axis, so the
lesion is not always in the middle and the network (and its heat maps) must find it. Inference on in-memory crops uses
``inference_transforms``, which quantises to 8 bits exactly like the PNG files used in training
and then runs the same ``preprocessing`` as training and evaluation.
"""

from __future__ import annotations

import math

import numpy as np
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Lambdad,
    RandFlipd,
    RandRotated,
    RandShiftIntensityd,
    RandSpatialCropd,
    Resized,
    ScaleIntensityRanged,
)

MODALITY_KEYS = {"us": ("us",), "ct": ("ct",), "fusion": ("us", "ct")}
IMAGE_KEY = "image"
LABEL_KEY = "label"


def modality_keys(modality: str) -> tuple[str, ...]:
    """The crop keys a model of ``modality`` ("us", "ct" or "fusion") reads, in channel order."""
    if modality not in MODALITY_KEYS:
        raise ValueError(f"modality must be one of {sorted(MODALITY_KEYS)}, got {modality!r}")
    return MODALITY_KEYS[modality]


def quantize_to_8bit(crop: np.ndarray) -> np.ndarray:
    """A [0, 1] crop rounded to the 256 grey levels it has once saved as an 8-bit PNG."""
    return np.round(np.clip(crop, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def _load(keys: tuple[str, ...]) -> list:
    return [
        LoadImaged(keys=keys, reader="PILReader", reverse_indexing=False, image_only=True),
        EnsureChannelFirstd(keys=keys, channel_dim="no_channel"),
        ScaleIntensityRanged(keys=keys, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
    ]


def _stack(keys: tuple[str, ...]) -> list:
    stack = [ConcatItemsd(keys=keys, name=IMAGE_KEY, dim=0), DeleteItemsd(keys=keys)]
    return stack + [EnsureTyped(keys=IMAGE_KEY, dtype=np.float32, track_meta=False)]


def preprocessing(modality: str, spatial_size: int) -> list:
    """Resize each channel-first [0, 1] crop to ``spatial_size`` and stack them into ``image``."""
    keys = modality_keys(modality)
    return [Resized(keys=keys, spatial_size=(spatial_size, spatial_size), mode="bilinear", anti_aliasing=True)]


def off_centre_window(modality: str, spatial_size: int, off_centre: float) -> list:
    """Context crops -> ``spatial_size`` windows moved by up to ``off_centre`` x the side, independently per modality.

    The context crop is resized to twice ``spatial_size`` (the scale of the ordinary crop after
    ``preprocessing``); its central part of (1 + 2 ``off_centre``) sides holds every allowed window.
    """
    if not 0 < off_centre <= 0.5:
        raise ValueError(f"off_centre must be in (0, 0.5] (a fraction of the crop side), got {off_centre}")
    keys = modality_keys(modality)
    reach = int(round(spatial_size * (1 + 2 * off_centre)))
    steps = [Resized(keys=keys, spatial_size=(2 * spatial_size, 2 * spatial_size), mode="bilinear", anti_aliasing=True),
             CenterSpatialCropd(keys=keys, roi_size=(reach, reach))]
    return steps + [RandSpatialCropd(keys=key, roi_size=(spatial_size, spatial_size), random_size=False) for key in keys]


def augmentation(modality: str, spatial_size: int, crop_fraction: float = 0.9) -> list:
    """The paper's augmentation, applied independently to each modality's crop."""
    keys = modality_keys(modality)
    roi = max(1, int(round(spatial_size * crop_fraction)))
    return [
        RandRotated(keys=keys, range_x=math.pi / 12, prob=0.5, padding_mode="zeros"),
        RandFlipd(keys=keys, spatial_axis=1, prob=0.5),
        RandFlipd(keys=keys, spatial_axis=0, prob=0.5),
        RandSpatialCropd(keys=keys, roi_size=(roi, roi), random_size=False),
        Resized(keys=keys, spatial_size=(spatial_size, spatial_size), mode="bilinear"),
        RandShiftIntensityd(keys=keys, offsets=0.1, prob=0.5),
    ]


def train_transforms(modality: str, spatial_size: int = 300, off_centre: float = 0.0) -> Compose:
    """Crop files (context crop files when ``off_centre`` > 0) -> augmented ``image`` tensor (and ``label``) for training."""
    keys = modality_keys(modality)
    resize = off_centre_window(modality, spatial_size, off_centre) if off_centre else preprocessing(modality, spatial_size)
    return Compose(_load(keys) + resize + augmentation(modality, spatial_size) + _stack(keys))


def eval_transforms(modality: str, spatial_size: int = 300) -> Compose:
    """Crop files -> ``image`` tensor for validation, evaluation and batch inference."""
    keys = modality_keys(modality)
    return Compose(_load(keys) + preprocessing(modality, spatial_size) + _stack(keys))


def inference_transforms(modality: str, spatial_size: int = 300) -> Compose:
    """In-memory [0, 1] 2D crops -> ``image`` tensor, identical to ``eval_transforms`` on saved PNGs."""
    keys = modality_keys(modality)
    to_png_levels = Lambdad(keys=keys, func=quantize_to_8bit)
    channel_first = EnsureChannelFirstd(keys=keys, channel_dim="no_channel")
    return Compose([to_png_levels, channel_first] + preprocessing(modality, spatial_size) + _stack(keys))
