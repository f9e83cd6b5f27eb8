"""CT loading (DICOM series, NIfTI, NRRD) with its error messages, and the CT lesion crop."""

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from BreastFusionLib.ct.crop import apply_window, ct_axial_crop
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.ct.volume import CTVolume, to_sitk
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.synthetic.dicom import write_ct_series

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def volume() -> CTVolume:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 200, size=(12, 40, 50)).astype(np.int16)
    matrix = np.diag([-0.8, -0.8, 2.5, 1.0])
    matrix[:3, 3] = (20.0, 16.0, -30.0)
    return CTVolume(hu, matrix)


def test_dicom_series_nifti_and_nrrd_load_the_same_volume(volume, tmp_path):
    write_ct_series(volume, tmp_path / "dicom", "case1")
    for path in (tmp_path / "volume.nii.gz", tmp_path / "volume.nrrd"):
        sitk.WriteImage(to_sitk(volume), str(path))
    for source in (tmp_path / "dicom", tmp_path / "dicom" / "slice0003.dcm", tmp_path / "volume.nii.gz", tmp_path / "volume.nrrd"):
        loaded = load_ct(source)
        assert np.array_equal(loaded.hu, volume.hu), source
        assert np.allclose(loaded.ijk_to_ras, volume.ijk_to_ras, atol=1e-4), source


def test_folder_with_other_modalities_and_several_ct_series(volume, tmp_path):
    write_ct_series(volume, tmp_path / "dicom", "case1")
    for path in sorted((tmp_path / "dicom").glob("*.dcm"))[:2]:  # a PET series of two slices beside the CT
        ds = pydicom.dcmread(path)
        ds.Modality, ds.SeriesInstanceUID = "PT", "1.2.3.4"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(tmp_path / "dicom" / f"pet_{path.name}")
    assert load_ct(tmp_path / "dicom").hu.shape == volume.hu.shape  # the PET series is ignored
    write_ct_series(volume, tmp_path / "other", "case2")
    for path in (tmp_path / "other").glob("*.dcm"):
        shutil.copy(path, tmp_path / "dicom" / f"b_{path.name}")
    with pytest.raises(UserInputError, match="holds 2 CT series; choose one with series_uid"):
        load_ct(tmp_path / "dicom")


def test_missing_slice_is_located(volume, tmp_path):
    write_ct_series(volume, tmp_path / "dicom", "case1")
    (tmp_path / "dicom" / "slice0005.dcm").unlink()
    with pytest.raises(UserInputError, match=r"uneven slice spacing: 5.00 mm between slice0004.dcm .* and slice0006.dcm"):
        load_ct(tmp_path / "dicom")


@pytest.mark.parametrize("kept_bytes, message", [
    (None, "belongs to the CT series but its image cannot be read"),  # cut in the pixel data
    (200, "ends before its series UID"),  # cut in the header
])
def test_a_truncated_slice_is_named_not_reported_as_a_gap(volume, tmp_path, kept_bytes, message):
    write_ct_series(volume, tmp_path / "dicom", "case1")
    victim = tmp_path / "dicom" / "slice0005.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[: kept_bytes or len(data) // 2])
    with pytest.raises(UserInputError, match=rf"slice0005.dcm: .*{message} \(truncated or damaged\?\)"):
        load_ct(tmp_path / "dicom")


def test_bad_inputs_are_named(volume, tmp_path):
    write_ct_series(volume, tmp_path / "pet", "case1")
    for path in (tmp_path / "pet").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.Modality = "PT"
        ds.save_as(path)
    Image.new("L", (32, 32)).save(tmp_path / "us.png")
    sitk.WriteImage(sitk.Image(32, 32, sitk.sitkInt16), str(tmp_path / "flat.nii.gz"))
    (tmp_path / "broken.nii.gz").write_bytes(b"not a volume")
    (tmp_path / "empty").mkdir()
    write_ct_series(CTVolume(volume.hu[:1], volume.ijk_to_ras), tmp_path / "single", "case3")
    cases = {"pet": r"no CT series found \(only \['PT'\] series\)", "us.png": "not a CT volume",
             "flat.nii.gz": "a 2D image of size", "broken.nii.gz": "not a readable volume file",
             "empty": "no DICOM image series", "single": "a single slice: a 2D image is not a CT volume",
             "absent": "CT not found"}
    for name, message in cases.items():
        with pytest.raises(UserInputError, match=message):
            load_ct(tmp_path / name)


def test_ct_crop_is_centred_windowed_padded_and_three_plane():
    hu = np.full((20, 60, 60), -100, np.int16)
    hu[8:13, 25:35, 25:35] = 60  # a mass of 10 voxels = 10 mm at 1 mm spacing
    volume = CTVolume(hu, np.diag([-1.0, -1.0, 2.0, 1.0]))
    centre = volume.ijk_to_ras_points(np.array([29.5, 29.5, 10.0]))
    crop = ct_axial_crop(volume, centre, lesion_diameter_mm=10, out_size=40)
    assert crop.slice_index == 10 and crop.pixels.shape == (40, 40)
    assert np.isclose(crop.pixels[20, 20], apply_window(np.array(60.0)), atol=0.01)
    assert np.isclose(crop.pixels[1, 1], apply_window(np.array(-100.0)), atol=0.01)  # lesion is half the crop
    edge = ct_axial_crop(volume, volume.ijk_to_ras_points(np.array([0.0, 0.0, 10.0])), lesion_diameter_mm=80, out_size=40)
    assert edge.pixels.shape == (40, 40) and edge.pixels[0, 0] == 0.0  # padded beyond the 60 mm image
    planes = ct_axial_crop(volume, centre, lesion_diameter_mm=10, out_size=40, three_plane=True)
    assert planes.pixels.shape == (40, 40, 3) and np.allclose(planes.pixels[20, 20], apply_window(np.array(60.0)), atol=0.01)
    with pytest.raises(UserInputError, match="lies outside the CT volume"):
        ct_axial_crop(volume, np.array([500.0, 0.0, 0.0]))


@pytest.mark.skipif(not (SHARED / "CT-ACRIN-FLT-Breast_013").is_dir(), reason="real CT data not available")
def test_real_dicom_series_equals_its_nifti():
    dicom = load_ct(SHARED / "CT-ACRIN-FLT-Breast_013" / "dicom")
    nifti = load_ct(SHARED / "CT-ACRIN-FLT-Breast_013" / "ct.nii.gz")
    assert dicom.hu.shape == (49, 512, 512) and np.array_equal(dicom.hu, nifti.hu)
    assert np.allclose(dicom.ijk_to_ras, nifti.ijk_to_ras, atol=1e-3)
    assert np.allclose(dicom.spacing, (1.3671875, 1.3671875, 4.0))
