"""The shared square crop: geometry, padding, and the crop <-> image coordinate mapping."""

import numpy as np
import pytest

from BreastFusionLib.crop import extract_square_crop, lesion_box_from_mask, square_crop_box


def test_fixed_lesion_fraction_gives_square_in_mm_centred_on_lesion():
    box = square_crop_box((100, 100, 120, 140), (400, 400), pixel_spacing=(0.5, 1.0), lesion_fraction=0.5)
    # lesion: 20 rows * 0.5 mm = 10 mm, 40 cols * 1 mm = 40 mm -> crop side 80 mm
    assert box.side_rows == pytest.approx(160) and box.side_cols == pytest.approx(80)
    assert (box.center_row, box.center_col) == pytest.approx((109.5, 119.5))


def test_largest_square_fits_inside_image_and_contains_lesion():
    box = square_crop_box((10, 150, 30, 190), (120, 300), lesion_fraction=None)
    assert box.side_rows == pytest.approx(120)
    top, bottom = box.center_row - box.side_rows / 2, box.center_row + box.side_rows / 2
    left, right = box.center_col - box.side_cols / 2, box.center_col + box.side_cols / 2
    assert top >= -0.5 and bottom <= 119.5 and left >= -0.5 and right <= 299.5
    assert left <= 150 and right >= 190


def test_margin_is_kept_even_with_a_large_lesion_fraction():
    box = square_crop_box((0, 0, 100, 100), (1000, 1000), lesion_fraction=1.0, margin=0.1)
    assert box.side_rows == pytest.approx(120)


def test_crop_near_edge_is_shifted_inside_not_padded():
    image = np.arange(200 * 200, dtype=float).reshape(200, 200)
    box = square_crop_box((0, 0, 10, 10), (200, 200), lesion_fraction=0.25)
    crop = extract_square_crop(image, box, out_size=40, pad_value=-1)
    assert box.center_row == pytest.approx(19.5)  # shifted so the 40-px square starts at the edge
    assert (crop >= 0).all()


def test_crop_larger_than_image_is_padded_with_pad_value():
    image = np.ones((50, 50))
    box = square_crop_box((20, 20, 30, 30), (50, 50), lesion_fraction=0.1)
    crop = extract_square_crop(image, box, out_size=100, pad_value=-5.0, order=0)
    assert crop.shape == (100, 100)
    assert crop[50, 50] == 1.0 and crop[0, 0] == -5.0


def test_identity_crop_reproduces_image_and_maps_coordinates_back():
    rng = np.random.default_rng(0)
    image = rng.random((64, 64))
    box = square_crop_box((0, 0, 64, 64), (64, 64), lesion_fraction=1.0, margin=0.0)
    crop = extract_square_crop(image, box, out_size=64, order=1)
    np.testing.assert_allclose(crop, image, atol=1e-6)
    rows, cols = box.to_crop(*box.to_image(np.array([3.0, 40.0]), np.array([7.0, 63.0]), 64), 64)
    np.testing.assert_allclose(rows, [3, 40]) and np.testing.assert_allclose(cols, [7, 63])


def test_multichannel_crop_and_mask_box():
    mask = np.zeros((30, 40), bool)
    mask[5:9, 10:20] = True
    assert lesion_box_from_mask(mask) == (5, 10, 9, 20)
    rgb = np.zeros((30, 40, 3))
    crop = extract_square_crop(rgb, square_crop_box((5, 10, 9, 20), (30, 40)), out_size=16)
    assert crop.shape == (16, 16, 3)


@pytest.mark.parametrize(
    "box, message",
    [((10, 10, 10, 20), "empty"), ((500, 500, 510, 510), "outside the image")],
)
def test_bad_boxes_are_rejected_with_the_values(box, message):
    with pytest.raises(ValueError, match=message):
        square_crop_box(box, (100, 100))


def test_empty_mask_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        lesion_box_from_mask(np.zeros((4, 4), bool))


def test_fixed_fraction_is_capped_by_the_image_so_large_lesions_are_not_padded():
    box = square_crop_box((20, 20, 80, 80), (100, 100), lesion_fraction=0.5)
    assert box.side_rows == box.side_cols == 100  # 2 x 60 px would not fit: the whole image, no padding
    tight = square_crop_box((5, 5, 95, 95), (100, 100), lesion_fraction=0.5)
    assert tight.side_rows == pytest.approx(90 * 1.3)  # only the lesion plus its margin forces padding


def test_context_crop_holds_the_crop_in_its_central_half():
    from BreastFusionLib.us.crop import us_lesion_crop
    from BreastFusionLib.us.io import USImage

    rng = np.random.default_rng(0)
    image = USImage(rng.random((120, 160)).astype(np.float32))
    mask = np.zeros((120, 160), bool)
    mask[50:70, 60:90] = True
    crop = us_lesion_crop(image, mask=mask, out_size=40, clean_overlays=False, context=True)
    assert crop.context.shape == (80, 80) and crop.box.scaled(2).side_rows == 2 * crop.box.side_rows
    np.testing.assert_allclose(crop.context[20:60, 20:60], crop.pixels, atol=1e-6)  # same grid, same centre
    assert us_lesion_crop(image, mask=mask, out_size=40, clean_overlays=False).context is None


def test_displaced_box_keeps_the_lesion_inside_and_moves_the_centre():
    from BreastFusionLib.crop import displaced_box

    lesion = (100, 100, 120, 140)  # 20 x 40 pixels
    box = square_crop_box(lesion, (400, 400), lesion_fraction=0.5)  # 80 x 80, centred on the lesion
    rng = np.random.default_rng(0)
    moved = [displaced_box(box, lesion, rng) for _ in range(500)]
    for new in moved:
        assert (new.side_rows, new.side_cols) == (box.side_rows, box.side_cols)
        assert new.center_row - 40 <= 99.5 and new.center_row + 40 >= 119.5  # lesion rows 100..119 inside
        assert new.center_col - 40 <= 99.5 and new.center_col + 40 >= 139.5
    rows = [new.center_row for new in moved]
    assert min(rows) < box.center_row - 25 and max(rows) > box.center_row + 25  # up to (80 - 20) / 2 = 30 either way
    with pytest.raises(ValueError, match="does not fit"):
        displaced_box(box, (0, 0, 100, 10), rng)
