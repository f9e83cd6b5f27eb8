"""The bundle's project-specific MONAI transforms; the transform lists themselves are in the bundle's configs.

Prepared crops (US and CT, 8-bit grayscale PNG, 300x300; see ``cohort.prepare``) are loaded, scaled
to [0, 1], resized to the network's ``spatial_size`` and, for the fusion model, stacked as channels
(US first, then CT) into the single ``image`` tensor the networks take. Those steps, and the paper's
augmentation (section 1.4), are listed as ``_target_`` entries in ``monai_bundle/configs/train.json``
and ``inference.json`` (``transform_config`` reads them for Python callers and for serving).

The steps MONAI does not have are here:

- ``QuantizeTo8Bitd``: in-memory [0, 1] crops (Slicer, ``breastfusion predict``) rounded to the 256
  grey levels of the PNG files used in training, so serving sees exactly what training saw;
- ``OffCentreContextd``: off-centre training (``off_centre`` > 0) reads each case's context crop (same
  centre, twice the side; ``cohort.prepare --context``); this keeps the part of it from which a
  ``RandSpatialCropd`` per modality then cuts a crop-sized window moved by up to ``off_centre`` x the
  crop side along each axis, so the lesion is not always in the middle; with ``crop_scale`` s > 0 a
  ``RandZoomd`` first zooms the context crop by a random factor (``context_zoom_range``), so the window
  spans (1 - s) to (1 + s) crop sides (a square) and the lesion fills a varying part of it;
- ``StackModalitiesd``: the modality crops -> one float32 ``image`` tensor.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import CenterSpatialCropd, ConcatItemsd, DeleteItemsd, EnsureTyped, MapTransform, Resized

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


class _Steps(MapTransform):
    """A fixed sequence of deterministic MONAI transforms applied as one step."""

    steps: tuple = ()

    def __call__(self, data):
        for step in self.steps:
            data = step(data)
        return data


class QuantizeTo8Bitd(MapTransform):
    """In-memory [0, 1] crops -> the grey levels of the 8-bit PNG crops that training reads (``quantize_to_8bit``)."""

    def __call__(self, data):
        data = dict(data)
        for key in self.key_iterator(data):
            data[key] = quantize_to_8bit(data[key])
        return data


class OffCentreContextd(_Steps):
    """Context crops -> their central part holding every window moved by up to ``off_centre`` x the crop side.

    The context crop is resized to twice ``spatial_size`` (the scale of the ordinary crop after
    resizing to ``spatial_size``); its central part of (1 + 2 ``off_centre``) crop sides holds every
    allowed window, which a ``RandSpatialCropd`` of ``spatial_size`` then picks.
    """

    def __init__(self, keys, spatial_size: int, off_centre: float) -> None:
        if not 0 < off_centre <= 0.5:
            raise ValueError(f"off_centre must be in (0, 0.5] (a fraction of the crop side), got {off_centre}")
        super().__init__(keys)
        reach = int(round(spatial_size * (1 + 2 * off_centre)))
        self.steps = (Resized(keys=keys, spatial_size=(2 * spatial_size, 2 * spatial_size), mode="bilinear",
                              anti_aliasing=True),
                      CenterSpatialCropd(keys=keys, roi_size=(reach, reach)))


def context_zoom_range(crop_scale: float, off_centre: float) -> tuple[float, float]:
    """The zoom factors of the context crop for windows of (1 - ``crop_scale``) to (1 + ``crop_scale``) crop sides.

    Zooming the context crop by z and cutting a crop-sized window is cutting a window of 1/z crop sides
    and resizing it. The zoomed-out context (twice the crop side x z) must still hold every window
    moved by up to ``off_centre`` x the side, or padding would enter it. ``crop_scale`` 0: (1, 1), no zoom.
    """
    if not crop_scale:
        return 1.0, 1.0
    if not 0 < off_centre <= 0.5:
        raise ValueError(f"crop_scale needs off_centre in (0, 0.5] (training on context crops), got {off_centre}")
    widest = 2 / (1 + 2 * off_centre) - 1  # a (1 + widest)-side window moved by off_centre fits in the context
    if not 0 < crop_scale <= widest + 1e-9:
        raise ValueError(f"crop_scale must be in (0, {widest:.3g}] with off_centre {off_centre} "
                         f"(the widest window must fit in the context crop), got {crop_scale}")
    return 1 / (1 + crop_scale), 1 / (1 - crop_scale)


class StackModalitiesd(_Steps):
    """The modality crops (``keys``, in channel order: US first) -> one float32 ``image`` tensor; the crops are dropped."""

    def __init__(self, keys) -> None:
        super().__init__(keys)
        self.steps = (ConcatItemsd(keys=keys, name=IMAGE_KEY, dim=0), DeleteItemsd(keys=keys),
                      EnsureTyped(keys=IMAGE_KEY, dtype=np.float32, track_meta=False))
