"""CTVolume geometry and the SimpleITK (LPS) <-> RAS conversion."""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastFusionLib.ct.volume import CTVolume, from_sitk, to_sitk


def _lps_image(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # k, j, i
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((-100.0, -50.0, 30.0))
    image.SetDirection(direction)
    return image, array


def test_from_sitk_keeps_voxel_positions_in_ras():
    image, array = _lps_image()
    volume = from_sitk(image)
    np.testing.assert_allclose(volume.spacing, (0.8, 0.9, 2.5))
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        ras = volume.ijk_to_ras_points(np.array(ijk, float))
        np.testing.assert_allclose(ras, lps * [-1, -1, 1])
        assert volume.hu[ijk[2], ijk[1], ijk[0]] == array[ijk[2], ijk[1], ijk[0]]


def test_flipped_input_is_reoriented_to_canonical_and_values_follow_positions():
    image, _ = _lps_image(direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))
    volume = from_sitk(image)
    rotation = volume.ijk_to_ras[:3, :3] / volume.spacing
    np.testing.assert_allclose(rotation, np.diag([-1, -1, 1]), atol=1e-12)  # i->L, j->P, k->S
    for ijk in [(0, 0, 0), (5, 4, 3)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        new_ijk = np.rint(volume.ras_to_ijk(lps * [-1, -1, 1])).astype(int)
        assert volume.hu[new_ijk[2], new_ijk[1], new_ijk[0]] == image[ijk]


def test_to_sitk_round_trip_and_point_mapping():
    image, _ = _lps_image()
    volume = from_sitk(image)
    back = from_sitk(to_sitk(volume))
    np.testing.assert_array_equal(back.hu, volume.hu)
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras)
    points = np.array([[1.5, 2.0, 0.5], [0, 0, 0]])
    np.testing.assert_allclose(volume.ras_to_ijk(volume.ijk_to_ras_points(points)), points)
    assert volume.contains_ijk([5.4, 4.4, 3.4]) and not volume.contains_ijk([6.0, 0, 0])


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="3 dimensions"):
        CTVolume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(ValueError, match="4x4"):
        CTVolume(np.zeros((2, 2, 2)), np.eye(3))


def test_patient_view_is_built_once_and_maps_indices_both_ways():
    """Localization and its check figure share one view of the voxels in [superior, posterior, left] order."""
    hu = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # [k, j, i]
    matrix = np.array([[0.0, 0.0, -2.0, 10.0], [0.0, -0.5, 0.0, 5.0], [-1.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    volume = CTVolume(hu, matrix)  # i runs inferior, j posterior, k toward the patient's left
    view = volume.patient_view
    assert view is volume.patient_view and view.shape == (4, 3, 2)
    assert view.voxel_axes == (0, 1, 2) and view.flips == (True, False, False)  # only i runs backwards
    np.testing.assert_array_equal(view.unview(view.hu), hu)
    ijk = np.array([[1.0, 2.0, 0.5], [3.0, 0.0, 1.0]])
    np.testing.assert_allclose(view.to_ijk(view.from_ijk(ijk)), ijk)
    superior = volume.ijk_to_ras_points(view.to_ijk(np.array([1.0, 0, 0])))[2] - volume.ijk_to_ras_points(view.to_ijk(np.zeros(3)))[2]
    assert superior > 0  # the first patient axis runs superior
