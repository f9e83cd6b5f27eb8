"""Loading breast ultrasound images: PNG/JPEG/BMP/TIFF (8- or 16-bit, grey or colour) and DICOM.

Every loader returns a ``USImage``: pixels as float32 in [0, 1], (rows, cols) for grey images
or (rows, cols, 3) for colour ones (colour is kept so that overlay removal can see Doppler boxes
and coloured calipers), and the pixel spacing in mm when the file records it. DICOM images may be
single- or multi-frame (one frame is chosen), MONOCHROME1/2, RGB or YBR (converted to RGB).
Nothing from the DICOM header other than geometry is kept, so no patient identifier leaves here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.misc import is_dicom

from BreastFusionLib.errors import UserInputError

# DICOM ultrasound region units: 3 = cm.
_CM_UNITS = 3


@dataclass
class USImage:
    """A 2D ultrasound image in [0, 1] and its pixel spacing (row, col) in mm, ``None`` when unknown."""

    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    def grey(self) -> np.ndarray:
        """The image as grey levels (ITU-R 601 luma for colour images)."""
        if self.pixels.ndim == 2:
            return self.pixels
        return (self.pixels[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


def _to_unit_range(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixels to [0, 1]: 8-bit by 255, wider data by its stored bit depth."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.integer):
        low = min(int(array.min()), 0)
        shifted = array.astype(np.int64) - low
        bits = max(8, int(np.ceil(np.log2(int(shifted.max()) + 1))))
        return (shifted / float(2**bits - 1)).astype(np.float32)
    array = array.astype(np.float32)
    if array.min() >= 0 and array.max() <= 1:
        return array
    span = float(array.max() - array.min())
    return (array - array.min()) / span if span > 0 else np.zeros_like(array)


def _check_2d(pixels: np.ndarray, path: Path) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise UserInputError(f"{path}: not a 2D ultrasound image (pixel array of shape {pixels.shape})")
    if min(pixels.shape[:2]) < 8:
        raise UserInputError(f"{path}: image of {pixels.shape[0]}x{pixels.shape[1]} pixels is too small")
    if pixels.ndim == 3 and np.allclose(pixels[..., 0], pixels[..., 1]) and np.allclose(pixels[..., 0], pixels[..., 2]):
        pixels = pixels[..., 0]
    return pixels


def _load_picture(path: Path) -> USImage:
    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                picture = picture.convert("RGB" if picture.mode != "1" else "L")
            pixels = np.asarray(picture)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise UserInputError(f"{path}: not a readable image file ({error})") from None
    return USImage(_check_2d(_to_unit_range(pixels), path))


def _dicom_spacing(dataset: pydicom.Dataset) -> tuple[float, float] | None:
    regions = dataset.get("SequenceOfUltrasoundRegions")
    if regions:
        region = regions[0]
        if region.get("PhysicalUnitsXDirection") == _CM_UNITS and region.get("PhysicalUnitsYDirection") == _CM_UNITS:
            return float(region.PhysicalDeltaY) * 10.0, float(region.PhysicalDeltaX) * 10.0
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in dataset:
            row, col = (float(v) for v in dataset.get(keyword))
            return row, col
    return None


def _decode_frame(dataset: pydicom.Dataset, index: int | None) -> np.ndarray:
    """One frame as RGB or grey; pydicom 3 decodes and converts YBR itself, pydicom 2 (3D Slicer 5.8) needs help."""
    try:
        from pydicom.pixels import pixel_array
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import convert_color_space

        pixels = dataset.pixel_array
        pixels = pixels[index] if index is not None else pixels
        interpretation = str(dataset.get("PhotometricInterpretation", ""))
        return convert_color_space(pixels, interpretation, "RGB") if interpretation.startswith("YBR") else pixels
    return pixel_array(dataset, index=index)


def _load_dicom(path: Path, frame: int | None) -> USImage:
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable DICOM file ({error})") from None
    if "PixelData" not in dataset:
        raise UserInputError(f"{path}: the DICOM file holds no image (no pixel data)")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frame is not None and not (0 <= frame < frames):
        raise UserInputError(f"{path}: frame {frame} asked for, the file has {frames} frame(s)")
    index = (frame if frame is not None else frames // 2) if frames > 1 else None
    try:
        pixels = _decode_frame(dataset, index)
    except Exception as error:  # pydicom raises many types for undecodable pixel data
        raise UserInputError(f"{path}: the DICOM pixel data cannot be decoded ({type(error).__name__}: {error})") from None
    pixels = _to_unit_range(pixels)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        pixels = 1.0 - pixels
    return USImage(_check_2d(pixels, path), _dicom_spacing(dataset))


def load_us_image(path: str | Path, frame: int | None = None) -> USImage:
    """Load a US image file; DICOM multi-frame files give ``frame`` (default: the middle frame)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"US image not found: {path}")
    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: the file is empty")
    if is_dicom(path) or path.suffix.lower() in (".dcm", ".dicom"):
        return _load_dicom(path, frame)
    return _load_picture(path)


def load_lesion_mask(paths: list[str | Path], image_shape: tuple[int, int]) -> np.ndarray:
    """The lesion mask of one image: the OR of one or more mask files (BUSI ships several per image)."""
    mask = np.zeros(image_shape, dtype=bool)
    for path in paths:
        layer = load_us_image(path).grey() > 0.5
        if layer.shape != tuple(image_shape):
            raise UserInputError(f"{path}: mask of {layer.shape[0]}x{layer.shape[1]} pixels does not match "
                                 f"the image's {image_shape[0]}x{image_shape[1]}")
        mask |= layer
    if not mask.any():
        raise UserInputError(f"{', '.join(str(p) for p in paths)}: the lesion mask is empty")
    return mask


def write_us_png(array: np.ndarray, path: Path) -> None:
    """Write a US frame (rows, cols) or (rows, cols, 3|4) as a PNG that ``load_us_image`` reads back at full depth.

    8-bit data stays 8-bit; wider integers become 16-bit PNG (shifted when signed); float data
    is scaled to 16 bits over its own range. Colour stays colour so overlay removal can see it.
    """
    pixels = np.asarray(array)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise UserInputError(f"a US frame must be (rows, cols) or (rows, cols, 3|4), got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        return
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(pixels.dtype, np.integer) and low >= 0 and high <= 255:
        Image.fromarray(np.ascontiguousarray(pixels.astype(np.uint8))).save(path)
        return
    if np.issubdtype(pixels.dtype, np.integer):
        scaled = values - min(low, 0.0)
    else:
        scaled = (values - low) / (high - low) * 65535.0 if high > low else np.zeros_like(values)
    wide = np.clip(np.round(scaled), 0, 65535).astype(np.uint16)
    if wide.ndim == 3:  # PIL writes no 16-bit colour PNG: keep colour at 8 bits
        eight = np.round(wide / max(float(wide.max()), 1.0) * 255.0).astype(np.uint8)
        Image.fromarray(np.ascontiguousarray(eight[..., :3])).save(path)
        return
    Image.fromarray(np.ascontiguousarray(wide)).save(path)
