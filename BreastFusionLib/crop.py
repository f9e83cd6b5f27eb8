"""Square lesion crops shared by the US and CT pipelines (paper section 1.3).

A crop is a square in millimetres (in pixels when the spacing is unknown) centred on the lesion,
either with a fixed lesion-to-crop ratio (``lesion_fraction``: the lesion's longer side divided by
the crop side; the same value for US and CT keeps the two modalities comparable), capped at the
largest square the image holds, or as large as the image allows. It is shifted to stay inside the
image and padded only where the image is too small for the lesion and its margin. Crops are resampled to ``out_size`` x ``out_size`` (300 in the paper).

Off-centre crops (so that a network, and its heat maps, cannot rely on the lesion being in the middle):
a *context crop* has the same centre and twice the side (``CropBox.scaled(2)``), so its central half is
the ordinary crop and training can cut windows from it whose lesion is off-centre
(the bundle's ``--off_centre``: ``train#off_centre_window`` in train.json); ``displaced_box`` moves a crop by a random offset
that keeps the lesion inside it (the pointing game's displaced-lesion test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFAULT_LESION_FRACTION = 0.5
DEFAULT_MARGIN = 0.15
DEFAULT_OUT_SIZE = 300


@dataclass(frozen=True)
class CropBox:
    """A square region of a 2D image: centre and side length, in (fractional) pixel units."""

    center_row: float
    center_col: float
    side_rows: float
    side_cols: float

    def to_image(self, crop_rows: np.ndarray, crop_cols: np.ndarray, out_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (row, col) coordinates of crop pixel coordinates in an ``out_size`` crop."""
        rows = self.center_row + ((np.asarray(crop_rows, float) + 0.5) / out_size - 0.5) * self.side_rows
        cols = self.center_col + ((np.asarray(crop_cols, float) + 0.5) / out_size - 0.5) * self.side_cols
        return rows, cols

    def to_crop(self, rows: np.ndarray, cols: np.ndarray, out_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Crop pixel coordinates of image (row, col) coordinates; inverse of ``to_image``."""
        crop_rows = ((np.asarray(rows, float) - self.center_row) / self.side_rows + 0.5) * out_size - 0.5
        crop_cols = ((np.asarray(cols, float) - self.center_col) / self.side_cols + 0.5) * out_size - 0.5
        return crop_rows, crop_cols

    def image_pixels_in_crop(self, image_shape: tuple[int, int], out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Crop coordinates (rows, cols) of every pixel of an image of ``image_shape``, and which pixels the crop covers."""
        crop_rows, crop_cols = self.to_crop(*np.mgrid[0 : image_shape[0], 0 : image_shape[1]], out_size)
        inside = (crop_rows >= -0.5) & (crop_rows <= out_size - 0.5) & (crop_cols >= -0.5) & (crop_cols <= out_size - 0.5)
        return crop_rows, crop_cols, inside

    def scaled(self, factor: float) -> "CropBox":
        """The square with the same centre and ``factor`` times the side (2: a context crop)."""
        return CropBox(self.center_row, self.center_col, self.side_rows * factor, self.side_cols * factor)


@dataclass
class LesionCrop:
    """A square lesion crop in [0, 1], where it came from in its source image, and notes for reports."""

    pixels: np.ndarray
    box: CropBox
    slice_index: int | None = None
    overlay_pixels: int = 0
    context: np.ndarray | None = None  # the context crop (``box.scaled(2)``, twice the pixels), when asked for


def _place(center: float, side: float, length: int) -> float:
    """Shift a 1D window of ``side`` pixels centred at ``center`` to lie within [-0.5, length-0.5]."""
    low, high = -0.5, length - 0.5
    if side >= high - low:
        return (low + high) / 2.0
    return float(np.clip(center, low + side / 2.0, high - side / 2.0))


def square_crop_box(
    lesion_box: tuple[float, float, float, float],
    image_shape: tuple[int, int],
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    lesion_fraction: float | None = DEFAULT_LESION_FRACTION,
    margin: float = DEFAULT_MARGIN,
) -> CropBox:
    """The square crop around ``lesion_box`` = (row0, col0, row1, col1) in pixels (inclusive-exclusive).

    ``lesion_fraction`` fixes the lesion-to-crop side ratio, as far as the image allows (a lesion
    too large for it gets the largest square that fits); ``None`` takes the largest square that
    fits in the image. Either way the crop keeps at least ``margin`` (a fraction of the lesion
    size) free on every side of the lesion, and is padded only when the image is too small for that.
    """
    row0, col0, row1, col1 = (float(v) for v in lesion_box)
    rows, cols = int(image_shape[0]), int(image_shape[1])
    if not (row1 > row0 and col1 > col0):
        raise ValueError(f"lesion box {lesion_box} is empty: it needs row0 < row1 and col0 < col1")
    if row1 <= 0 or col1 <= 0 or row0 >= rows or col0 >= cols:
        raise ValueError(f"lesion box {lesion_box} lies outside the image of {rows}x{cols} pixels")
    if lesion_fraction is not None and not (0 < lesion_fraction <= 1):
        raise ValueError(f"lesion_fraction must be in (0, 1], got {lesion_fraction}")
    spacing_row, spacing_col = (float(s) for s in pixel_spacing)
    lesion_mm = max((row1 - row0) * spacing_row, (col1 - col0) * spacing_col)
    minimum_mm = lesion_mm * (1.0 + 2.0 * margin)
    image_mm = min(rows * spacing_row, cols * spacing_col)
    wanted_mm = image_mm if lesion_fraction is None else min(lesion_mm / lesion_fraction, image_mm)
    side_mm = max(wanted_mm, minimum_mm)
    side_rows, side_cols = side_mm / spacing_row, side_mm / spacing_col
    center_row = _place((row0 + row1) / 2.0 - 0.5, side_rows, rows)
    center_col = _place((col0 + col1) / 2.0 - 0.5, side_cols, cols)
    return CropBox(center_row, center_col, side_rows, side_cols)


def displaced_box(box: CropBox, lesion_box: tuple[float, float, float, float], rng: np.random.Generator) -> CropBox:
    """``box`` moved by a random offset that keeps ``lesion_box`` (row0, col0, row1, col1) inside it.

    Each axis's new centre is uniform over the centres whose square still holds the whole lesion
    (padded, like every crop, where it leaves the image); the side is unchanged.
    """
    row0, col0, row1, col1 = (float(v) for v in lesion_box)
    centres = []
    for low, high, side in ((row0, row1, box.side_rows), (col0, col1, box.side_cols)):
        first, last = high - 0.5 - side / 2.0, low - 0.5 + side / 2.0  # lesion edges at -0.5 .. +0.5 of its pixels
        if first > last:
            raise ValueError(f"lesion box {lesion_box} does not fit in a crop of side {side:.1f} pixels")
        centres.append(float(rng.uniform(first, last)))
    return CropBox(centres[0], centres[1], box.side_rows, box.side_cols)


def extract_square_crop(
    image: np.ndarray, box: CropBox, out_size: int = DEFAULT_OUT_SIZE, pad_value: float = 0.0, order: int = 1
) -> np.ndarray:
    """Resample ``box`` of a 2D image (rows, cols) or (rows, cols, channels) to out_size x out_size.

    Pixels outside the image take ``pad_value``. Use ``order=0`` for masks and labels.
    """
    grid = np.arange(out_size, dtype=float)
    rows, cols = box.to_image(grid, grid, out_size)
    row_grid, col_grid = np.meshgrid(rows, cols, indexing="ij")
    image = np.asarray(image)
    if image.ndim == 2:
        return ndimage.map_coordinates(image.astype(np.float32), [row_grid, col_grid], order=order, cval=pad_value)
    if image.ndim == 3:
        channels = [extract_square_crop(image[..., c], box, out_size, pad_value, order) for c in range(image.shape[2])]
        return np.stack(channels, axis=-1)
    raise ValueError(f"a crop needs a 2D image (rows, cols[, channels]), got shape {image.shape}")


def lesion_box_from_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (row0, col0, row1, col1) of the non-zero pixels of a 2D lesion mask."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    if rows.size == 0:
        raise ValueError("the lesion mask is empty: no pixel marks the lesion")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
