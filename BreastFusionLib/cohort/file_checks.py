"""Cheap checks that a manifest's files are what they claim to be, before any work starts.

Pictures (PNG, JPEG, BMP, TIFF) are opened and verified by Pillow; DICOM files must carry the
DICM marker and pixel data; CT volume files must have a readable header with 3 dimensions.
DICOM folders are checked when loaded (``ct.io``), where series selection and slice gaps are
reported. Each check returns ``None`` or a sentence saying what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.misc import is_dicom
import SimpleITK as sitk
from PIL import Image, UnidentifiedImageError

from BreastFusionLib.ct.io import VOLUME_SUFFIXES


def image_problem(path: Path) -> str | None:
    """Why a 2D image file (US image, mask or prepared crop) cannot be used, or None."""
    if path.is_dir():
        return "is a folder, not an image file"
    if path.stat().st_size == 0:
        return "the file is empty"
    if is_dicom(path):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        return None if "Rows" in dataset else "DICOM file without an image"
    try:
        with Image.open(path) as picture:
            picture.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return f"not a readable image ({error})"
    return None


def ct_problem(path: Path) -> str | None:
    """Why a CT path (DICOM folder, DICOM file, volume file or prepared 2D crop) cannot be used, or None."""
    if path.is_dir():
        return None if any(path.iterdir()) else "the DICOM folder is empty"
    if path.stat().st_size == 0:
        return "the file is empty"
    name = path.name.lower()
    if not any(name.endswith(suffix) for suffix in VOLUME_SUFFIXES):
        return image_problem(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return "not a readable volume file"
    if reader.GetDimension() != 3:
        return f"a {reader.GetDimension()}D image is not a CT volume"
    return None
