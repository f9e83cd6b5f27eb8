"""Writing a CTVolume as a DICOM CT series (pydicom), with made-up patient identity tags.

The synthetic patient gets a realistic but fictitious name, ID and birth date, so that tests can
check that no identifier ever reaches a log, report or exported crop. Pixel data are stored as
unsigned 16-bit with RescaleIntercept -1024, as many scanners do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from BreastFusionLib.ct.volume import LPS_TO_RAS, CTVolume

INTERCEPT = -1024


def fake_identity(case_id: str) -> dict[str, str]:
    """Fictitious identity tags for a synthetic patient (what a real DICOM would carry)."""
    number = sum(ord(c) for c in case_id)
    return {"PatientName": f"DOE^JANE{number:04d}", "PatientID": f"MRN{number:07d}",
            "PatientBirthDate": f"19{60 + number % 30}0{1 + number % 9}1{number % 9}", "PatientSex": "F"}


def write_ct_series(volume: CTVolume, folder: str | Path, case_id: str) -> Path:
    """Write one axial DICOM file per slice into ``folder`` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series = (generate_uid(entropy_srcs=[case_id, part]) for part in ("study", "series"))
    spacing = volume.spacing
    direction_lps = LPS_TO_RAS @ volume.ijk_to_ras[:3, :3] @ np.diag(1.0 / spacing)
    orientation = [float(v) for v in (*direction_lps[:, 0], *direction_lps[:, 1])]
    rows, cols = volume.hu.shape[1:]
    for k in range(volume.hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[case_id, "slice", str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        for keyword, value in fake_identity(case_id).items():
            setattr(ds, keyword, value)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.SeriesDescription, ds.BodyPartExamined = "CT", "CHEST SYNTHETIC", "CHEST"
        ds.PatientPosition, ds.SeriesNumber, ds.InstanceNumber = "HFS", 1, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        position = LPS_TO_RAS @ volume.ijk_to_ras_points(np.array([0.0, 0.0, float(k)]))
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.ImageOrientationPatient = [round(v, 6) for v in orientation]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = INTERCEPT, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        stored = np.clip(volume.hu[k].astype(np.int32) - INTERCEPT, 0, 4095).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"slice{k:04d}.dcm", enforce_file_format=True)
    return folder
