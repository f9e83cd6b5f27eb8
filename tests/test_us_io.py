"""US loading (8/16-bit, RGB, DICOM single/multi-frame, YBR), masks, and the US lesion crop."""

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.us.crop import us_lesion_crop
from BreastFusionLib.us.io import USImage, load_lesion_mask, load_us_image, write_us_png


def write_dicom(path, frames: np.ndarray, photometric: str = "MONOCHROME2", spacing_cm: float | None = 0.01):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName, ds.Modality = "DOE^JANE", "US"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:3]
    colour = frames.ndim == 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if colour else 1), photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if spacing_cm:
        region = Dataset()
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = region.PhysicalDeltaY = spacing_cm
        ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = frames.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_png_8_bit_16_bit_and_rgb(tmp_path):
    grey = (np.arange(64 * 48) % 256).reshape(48, 64).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray((grey.astype(np.uint16) * 16)).save(tmp_path / "g16.png")  # 12-bit data in a 16-bit PNG
    rgb = np.stack([grey, grey, grey], -1)
    rgb[5:10, 5:10] = (255, 255, 0)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "grey_as_rgb.jpg", quality=100)
    assert np.allclose(load_us_image(tmp_path / "g.png").pixels, grey / 255)
    assert np.allclose(load_us_image(tmp_path / "g16.png").pixels, grey.astype(np.uint16) * 16 / 4095, atol=1e-4)
    colour = load_us_image(tmp_path / "c.png")
    assert colour.pixels.shape == (48, 64, 3) and colour.grey().shape == (48, 64)
    assert load_us_image(tmp_path / "grey_as_rgb.jpg").pixels.ndim == 2  # grey saved as RGB is grey


def test_dicom_multiframe_ybr_and_spacing(tmp_path):
    frames = np.stack([np.full((40, 50), value, np.uint8) for value in (10, 100, 200)])
    write_dicom(tmp_path / "cine.dcm", frames)
    image = load_us_image(tmp_path / "cine.dcm")
    assert np.allclose(image.pixels, 100 / 255) and image.pixel_spacing_mm == (0.1, 0.1)  # middle frame
    assert np.allclose(load_us_image(tmp_path / "cine.dcm", frame=2).pixels, 200 / 255)
    with pytest.raises(UserInputError, match="frame 5 asked for, the file has 3"):
        load_us_image(tmp_path / "cine.dcm", frame=5)
    ybr = np.zeros((1, 40, 50, 3), np.uint8)
    ybr[..., 0], ybr[..., 1], ybr[..., 2] = 120, 128, 128  # grey in YCbCr
    write_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL", spacing_cm=None)
    image = load_us_image(tmp_path / "ybr.dcm")
    assert image.pixels.ndim == 2 and abs(float(image.pixels.mean()) - 120 / 255) < 0.01
    assert image.pixel_spacing_mm is None


def test_bad_files_are_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    for name, message in (("empty.png", "the file is empty"), ("text.png", "not a readable image file"),
                          ("absent.png", "US image not found")):
        with pytest.raises(UserInputError, match=message) as error:
            load_us_image(tmp_path / name)
        assert name in str(error.value)
    Image.new("L", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(UserInputError, match="too small"):
        load_us_image(tmp_path / "tiny.png")


def test_masks_are_ored_and_checked(tmp_path):
    a, b = np.zeros((20, 30), np.uint8), np.zeros((20, 30), np.uint8)
    a[2:5, 2:5], b[10:12, 20:25] = 255, 255
    Image.fromarray(a).save(tmp_path / "m0.png")
    Image.fromarray(b).save(tmp_path / "m1.png")
    mask = load_lesion_mask([tmp_path / "m0.png", tmp_path / "m1.png"], (20, 30))
    assert mask.sum() == 9 + 10
    with pytest.raises(UserInputError, match="does not match"):
        load_lesion_mask([tmp_path / "m0.png"], (21, 30))
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "empty_mask.png")
    with pytest.raises(UserInputError, match="lesion mask is empty"):
        load_lesion_mask([tmp_path / "empty_mask.png"], (20, 30))


def test_us_crop_from_box_and_mask_agree_and_remove_marks():
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0.3, 0.6, (200, 300)).astype(np.float32)
    pixels[80:120, 130:170] = 0.05  # dark lesion
    pixels[66:75, 150], pixels[70, 146:155] = 1.0, 1.0  # a caliper cross above it
    mask = np.zeros(pixels.shape, bool)
    mask[80:120, 130:170] = True
    image = USImage(pixels)
    from_mask = us_lesion_crop(image, mask=mask, out_size=64)
    from_box = us_lesion_crop(image, box=(130, 80, 170, 120), out_size=64)
    assert np.allclose(from_mask.pixels, from_box.pixels)
    assert from_mask.pixels.shape == (64, 64) and from_mask.pixels[32, 32] < 0.15  # lesion centred
    kept = us_lesion_crop(image, mask=mask, out_size=64, clean_overlays=False)
    assert kept.pixels.max() > 0.9 and from_mask.pixels.max() < 0.8 and from_mask.overlay_pixels > 0
    with pytest.raises(UserInputError, match="outside the 300x200"):
        us_lesion_crop(image, box=(250, 10, 320, 40))
    with pytest.raises(UserInputError, match="needs a mask or a box"):
        us_lesion_crop(image)


@pytest.mark.parametrize("kind", ["grey8", "rgb8", "grey16", "float"])
def test_us_png_written_from_an_array_keeps_what_the_loader_needs(tmp_path, kind):
    rng = np.random.default_rng(0)
    arrays = {"grey8": rng.integers(0, 256, (40, 50), dtype=np.uint8),
              "rgb8": rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
              "grey16": rng.integers(0, 4096, (40, 50), dtype=np.uint16),
              "float": rng.random((40, 50)).astype(np.float32)}
    array = arrays[kind]
    write_us_png(array, tmp_path / "us.png")
    pixels = load_us_image(tmp_path / "us.png").pixels
    assert pixels.shape == array.shape
    if kind == "grey8":
        np.testing.assert_allclose(pixels, array / 255.0, atol=1e-6)
    else:  # order of grey levels kept
        flat_in, flat_out = array.reshape(-1).astype(float), pixels.reshape(-1)
        assert np.corrcoef(flat_in, flat_out)[0, 1] > 0.999
