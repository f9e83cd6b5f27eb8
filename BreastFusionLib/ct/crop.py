"""The CT lesion crop: the axial slice through the lesion point, soft-tissue window, square, 300x300.

Window: level 40 HU, width 400 HU (-160 .. 240 HU mapped to 0 .. 1), the usual soft-tissue window
in which fat, fibroglandular tissue and a mass are told apart. The crop square follows the same
rule as the US crop (``crop.square_crop_box``), in millimetres, so that both modalities show the
lesion at the same lesion-to-crop ratio; near the volume edge the crop is padded with air (0).
The lesion size comes from ``lesion_diameter_mm`` (e.g. measured on US); without it a 20 mm
lesion is assumed. ``three_plane=True`` stacks the axial, coronal and sagittal crops as 3 channels.
"""

from __future__ import annotations

import numpy as np

from BreastFusionLib.crop import (DEFAULT_LESION_FRACTION, DEFAULT_OUT_SIZE, LesionCrop, extract_square_crop,
                                  square_crop_box)
from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError

SOFT_TISSUE_WINDOW = (40.0, 400.0)
DEFAULT_LESION_DIAMETER_MM = 20.0


def apply_window(hu: np.ndarray, window: tuple[float, float] = SOFT_TISSUE_WINDOW) -> np.ndarray:
    """Map Hounsfield units to [0, 1] with a (level, width) window."""
    level, width = window
    return np.clip((np.asarray(hu, dtype=np.float32) - (level - width / 2.0)) / width, 0.0, 1.0)


def _plane_crop(plane: np.ndarray, center: tuple[float, float], spacing: tuple[float, float],
                diameter_mm: float, lesion_fraction: float | None, out_size: int):
    half = (diameter_mm / 2.0 / spacing[0], diameter_mm / 2.0 / spacing[1])
    lesion_box = (center[0] - half[0] + 0.5, center[1] - half[1] + 0.5,
                  center[0] + half[0] + 0.5, center[1] + half[1] + 0.5)
    box = square_crop_box(lesion_box, plane.shape, spacing, lesion_fraction=lesion_fraction)
    return extract_square_crop(plane, box, out_size, pad_value=0.0), box


def ct_axial_crop(volume: CTVolume, point_ras: np.ndarray, lesion_diameter_mm: float | None = None,
                  lesion_fraction: float | None = DEFAULT_LESION_FRACTION, out_size: int = DEFAULT_OUT_SIZE,
                  window: tuple[float, float] = SOFT_TISSUE_WINDOW, three_plane: bool = False,
                  context: bool = False) -> LesionCrop:
    """Windowed square crop centred on ``point_ras`` (RAS mm) on its axial slice (or three planes).

    ``context``: also the axial context crop (same centre, twice the side and the pixels) for off-centre training.
    """
    diameter = float(lesion_diameter_mm or DEFAULT_LESION_DIAMETER_MM)
    if diameter <= 0:
        raise UserInputError(f"lesion diameter must be > 0 mm, got {lesion_diameter_mm}")
    i, j, k = volume.ras_to_ijk(np.asarray(point_ras, dtype=float))
    if not volume.contains_ijk((i, j, k)):
        ni, nj, nk = volume.shape_ijk
        raise UserInputError(f"lesion point {tuple(np.round(point_ras, 1))} (RAS mm) lies outside the CT volume "
                             f"(voxel {i:.0f},{j:.0f},{k:.0f} of {ni}x{nj}x{nk})")
    si, sj, sk = volume.spacing
    slice_index = int(np.clip(np.round(k), 0, volume.hu.shape[0] - 1))
    windowed = apply_window(volume.hu[slice_index], window)
    axial, box = _plane_crop(windowed, (j, i), (sj, si), diameter, lesion_fraction, out_size)
    pixels = axial
    if three_plane:
        row_i, row_j = int(np.clip(np.round(i), 0, volume.hu.shape[2] - 1)), int(np.clip(np.round(j), 0, volume.hu.shape[1] - 1))
        superior_row = volume.hu.shape[0] - 1 - k
        coronal, _ = _plane_crop(apply_window(volume.hu[::-1, row_j, :], window), (superior_row, i), (sk, si),
                                 diameter, lesion_fraction, out_size)
        sagittal, _ = _plane_crop(apply_window(volume.hu[::-1, :, row_i], window), (superior_row, j), (sk, sj),
                                  diameter, lesion_fraction, out_size)
        pixels = np.stack([axial, coronal, sagittal], axis=-1)
    wider = extract_square_crop(windowed, box.scaled(2), 2 * out_size, pad_value=0.0) if context else None
    return LesionCrop(pixels=np.clip(pixels, 0.0, 1.0).astype(np.float32), box=box, slice_index=slice_index,
                      context=None if wider is None else np.clip(wider, 0.0, 1.0).astype(np.float32))
