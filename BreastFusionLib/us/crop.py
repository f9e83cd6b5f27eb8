"""The US lesion crop: overlays removed, square around the lesion (mask or box), resized (paper 1.3)."""

from __future__ import annotations

import numpy as np

from BreastFusionLib.crop import (DEFAULT_LESION_FRACTION, DEFAULT_OUT_SIZE, LesionCrop, extract_square_crop,
                                  lesion_box_from_mask, square_crop_box)
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.us.io import USImage
from BreastFusionLib.us.overlays import remove_overlays


def box_from_xyxy(box: tuple[float, float, float, float], image_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """A user's (x0, y0, x1, y1) pixel box -> (row0, col0, row1, col1), checked against the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    rows, cols = image_shape
    if not (x0 < x1 and y0 < y1):
        raise UserInputError(f"lesion box {box} is empty: it needs x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > cols or y1 > rows:
        raise UserInputError(f"lesion box {box} lies outside the {cols}x{rows} (width x height) image")
    return y0, x0, y1, x1


def us_lesion_crop(image: USImage, mask: np.ndarray | None = None, box: tuple | None = None,
                   lesion_fraction: float | None = DEFAULT_LESION_FRACTION, out_size: int = DEFAULT_OUT_SIZE,
                   clean_overlays: bool = True, context: bool = False) -> LesionCrop:
    """Grey lesion crop of ``image`` located by ``mask`` (preferred) or ``box`` = (x0, y0, x1, y1) pixels.

    ``context``: also the context crop (same centre, twice the side and the pixels) for off-centre training.
    """
    if mask is not None:
        lesion_box = lesion_box_from_mask(mask)
    elif box is not None:
        lesion_box = box_from_xyxy(box, image.shape)
    else:
        raise UserInputError("the US lesion needs a mask or a box (x0,y0,x1,y1)")
    if clean_overlays:
        grey, overlays = remove_overlays(image.pixels)
        overlay_pixels = int(overlays.sum())
    else:
        grey, overlay_pixels = image.grey(), 0
    spacing = image.pixel_spacing_mm or (1.0, 1.0)
    crop_box = square_crop_box(lesion_box, image.shape, spacing, lesion_fraction=lesion_fraction)

    def crop(box, size: int) -> np.ndarray:
        return np.clip(extract_square_crop(grey, box, size, pad_value=0.0), 0.0, 1.0).astype(np.float32)

    return LesionCrop(pixels=crop(crop_box, out_size), box=crop_box, overlay_pixels=overlay_pixels,
                      context=crop(crop_box.scaled(2), 2 * out_size) if context else None)
