"""Loading a chest CT: a DICOM folder (or one file of its series), NIfTI, NRRD or MetaImage.

The result is a ``CTVolume`` in the canonical orientation (see ``ct.volume``) in Hounsfield
units. DICOM folders are checked before the pixels are read: the CT series is chosen among the
series of the folder (other modalities such as PET or SEG are ignored), and a series with missing
slices, uneven spacing or mixed slice geometry is refused with a message saying where. Only
geometry is read from the headers: no patient identifier leaves this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.misc import is_dicom

from BreastFusionLib.ct.volume import CTVolume, from_sitk
from BreastFusionLib.errors import UserInputError

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
_GEOMETRY_TAGS = ["Modality", "ImageOrientationPatient", "ImagePositionPatient", "Rows", "Columns",
                  "PixelSpacing", "SeriesInstanceUID", "SeriesDescription"]
GAP_TOLERANCE = 1.5


def _header(path: str) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_GEOMETRY_TAGS)
    except (InvalidDicomError, OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable DICOM file ({error})") from None


def _series_files(folder: Path) -> dict[str, list[str]]:
    """Files of each CT series in ``folder``, by series UID (files sorted by GDCM along the slice normal)."""
    series = {}
    modalities = set()
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ():
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        modality = str(_header(files[0]).get("Modality", ""))
        modalities.add(modality or "unknown")
        if modality == "CT":
            series[uid] = files
    if not series:
        found = f"only {sorted(modalities)} series" if modalities else "no DICOM image series"
        raise UserInputError(f"{folder}: no CT series found ({found})")
    return series


def _check_no_damaged_slice(folder: Path, series: dict[str, list[str]], uid: str) -> None:
    """Name a DICOM file of the folder that GDCM left out of every series because it cannot be read
    (a truncated copy, say), instead of reporting the gap it leaves between its neighbours."""
    listed = {str(Path(f).resolve()) for files in series.values() for f in files}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and str(p.resolve()) not in listed):
        if path.name.upper() == "DICOMDIR" or not is_dicom(path):
            continue
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception as error:  # pydicom raises many types for a cut-off file
            raise UserInputError(f"{path}: a DICOM file of the CT folder cannot be read (truncated or damaged?): "
                                 f"{type(error).__name__}: {str(error).splitlines()[0][:160]}") from None
        found = str(header.get("SeriesInstanceUID", ""))
        if found == uid:
            raise UserInputError(f"{path}: belongs to the CT series but its image cannot be read (truncated or damaged?)")
        if not found:
            raise UserInputError(f"{path}: a DICOM file of the CT folder ends before its series UID (truncated or damaged?)")


def _check_series(files: list[str], folder: Path) -> None:
    """Refuse a series with mixed geometry, missing slices or uneven slice spacing, naming where."""
    headers = [_header(f) for f in files]
    if len(headers) < 2:
        raise UserInputError(f"{folder}: the CT series has a single slice: a 2D image is not a CT volume")
    first = headers[0]
    for path, header in zip(files, headers):
        for keyword in ("ImageOrientationPatient", "Rows", "Columns", "PixelSpacing"):
            if keyword not in header:
                raise UserInputError(f"{path}: DICOM slice lacks {keyword}; cannot place it in the volume")
            if not np.allclose(np.array(header.get(keyword), dtype=float), np.array(first.get(keyword), dtype=float), atol=1e-4):
                raise UserInputError(f"{folder}: mixed slice geometry: {Path(path).name} has {keyword} "
                                     f"{header.get(keyword)}, {Path(files[0]).name} has {first.get(keyword)}; "
                                     "several series mixed in one?")
    orientation = np.array(first.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([np.dot(normal, np.array(h.ImagePositionPatient, dtype=float)) for h in headers])
    steps = np.diff(positions)
    if np.any(np.abs(steps) < 1e-3):
        index = int(np.argmin(np.abs(steps)))
        raise UserInputError(f"{folder}: two slices at the same position ({Path(files[index]).name} and "
                             f"{Path(files[index + 1]).name}); several series mixed in one?")
    typical = float(np.median(np.abs(steps)))
    uneven = np.flatnonzero(np.abs(np.abs(steps) - typical) > (GAP_TOLERANCE - 1.0) * typical)
    if uneven.size:
        index = int(uneven[0])
        raise UserInputError(
            f"{folder}: uneven slice spacing: {abs(steps[index]):.2f} mm between {Path(files[index]).name} "
            f"(position {positions[index]:.1f} mm) and {Path(files[index + 1]).name} (position {positions[index + 1]:.1f} mm), "
            f"typical spacing {typical:.2f} mm: missing slices?")


def load_dicom_series(folder: str | Path, series_uid: str | None = None) -> CTVolume:
    """Load the CT series of a DICOM folder; ``series_uid`` picks one when the folder holds several."""
    folder = Path(folder)
    series = _series_files(folder)
    if series_uid is None and len(series) > 1:
        listing = "; ".join(f"{uid} ({len(files)} slices)" for uid, files in series.items())
        raise UserInputError(f"{folder}: holds {len(series)} CT series; choose one with series_uid: {listing}")
    uid = series_uid or next(iter(series))
    if uid not in series:
        raise UserInputError(f"{folder}: no CT series with UID {uid}; found {sorted(series)}")
    _check_no_damaged_slice(folder, series, uid)
    _check_series(series[uid], folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series[uid])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise UserInputError(f"{folder}: the CT series cannot be read ({str(error).strip().splitlines()[-1]})") from None
    return from_sitk(image)


def _load_volume_file(path: Path) -> CTVolume:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise UserInputError(f"{path}: not a readable volume file ({str(error).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise UserInputError(f"{path}: a {image.GetDimension()}D image of size {image.GetSize()} is not a CT volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise UserInputError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; a CT has one")
    return from_sitk(image)


def load_ct(path: str | Path, series_uid: str | None = None) -> CTVolume:
    """Load a CT from a DICOM folder, one DICOM file of a series, or a NIfTI/NRRD/MetaImage file."""
    path = Path(path)
    if path.is_dir():
        return load_dicom_series(path, series_uid)
    if not path.is_file():
        raise UserInputError(f"CT not found: {path}")
    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: the file is empty")
    if any(str(path).lower().endswith(suffix) for suffix in VOLUME_SUFFIXES):
        return _load_volume_file(path)
    if is_dicom(path):
        uid = str(_header(str(path)).get("SeriesInstanceUID", "")) or None
        return load_dicom_series(path.parent, series_uid or uid)
    raise UserInputError(f"{path}: not a CT volume; give a DICOM folder or a .nii/.nii.gz/.nrrd/.mha file")
