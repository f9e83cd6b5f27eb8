"""The CT volume type shared by loading, localization, cropping and the Slicer module.

``CTVolume.hu`` is indexed ``[k, j, i]`` (slice, row, column) like ``slicer.util.arrayFromVolume``;
``CTVolume.ijk_to_ras`` maps voxel index ``(i, j, k, 1)`` to RAS millimetres like a Slicer volume
node's IJKToRAS matrix. Loaders return volumes in the *canonical orientation*: voxel axes aligned
with the patient, i toward the patient's left, j toward posterior, k toward superior (DICOM's
LPS order, as an axial HFS series is stored). So ``hu[k]`` is an axial slice shown in the
radiological convention: anterior at the top, the patient's right on the left of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import SimpleITK as sitk

# Diagonal that turns LPS physical coordinates into RAS (and back: it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class CTVolume:
    """A CT volume in Hounsfield units with its voxel-to-patient (RAS) geometry."""

    hu: np.ndarray
    ijk_to_ras: np.ndarray

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"a CT volume needs 3 dimensions, got an array of shape {self.hu.shape}")
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=float)
        if self.ijk_to_ras.shape != (4, 4):
            raise ValueError(f"ijk_to_ras must be 4x4, got {self.ijk_to_ras.shape}")

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along (i, j, k)."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along (i, j, k)."""
        k, j, i = self.hu.shape
        return i, j, k

    def ras_to_ijk(self, points_ras: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (i, j, k) of RAS points, shape (..., 3)."""
        points = np.asarray(points_ras, dtype=float)
        inverse = np.linalg.inv(self.ijk_to_ras)
        return points @ inverse[:3, :3].T + inverse[:3, 3]

    def ijk_to_ras_points(self, points_ijk: np.ndarray) -> np.ndarray:
        """RAS millimetres of voxel indices (i, j, k), shape (..., 3)."""
        points = np.asarray(points_ijk, dtype=float)
        return points @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def patient_axes(self) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
        """Voxel axis (0=i, 1=j, 2=k) running toward superior, posterior and left, and whether it runs backwards.

        The canonical orientation gives ``((2, 1, 0), (False, False, False))``. Raises ``ValueError``
        for a volume whose voxel axes do not follow the patient axes (more than 45 degrees oblique).
        """
        rotation = self.ijk_to_ras[:3, :3]
        ras_axis = np.abs(rotation).argmax(axis=0)  # RAS axis followed by each voxel axis
        if sorted(ras_axis.tolist()) != [0, 1, 2]:
            raise ValueError("the CT volume is too oblique: its voxel axes do not follow the patient axes")
        axes, flips = [], []
        for ras, wanted_sign in ((2, 1.0), (1, -1.0), (0, -1.0)):  # superior, posterior, left
            voxel_axis = int(np.flatnonzero(ras_axis == ras)[0])
            axes.append(voxel_axis)
            flips.append(bool(np.sign(rotation[ras, voxel_axis]) != wanted_sign))
        return tuple(axes), tuple(flips)

    @cached_property
    def patient_view(self) -> "PatientView":
        """The voxels seen in patient order [superior, posterior, left] (computed once per volume)."""
        voxel_axes, flips = self.patient_axes()
        view = PatientView(voxel_axes, flips, tuple(self.shape_ijk[v] for v in voxel_axes), self.spacing[list(voxel_axes)])
        view.hu = view.view(self.hu)
        return view

    def contains_ijk(self, ijk: np.ndarray) -> bool:
        """True when a continuous voxel index lies inside the volume (voxel centres -0.5 .. n-0.5)."""
        ijk = np.asarray(ijk, dtype=float)
        upper = np.array(self.shape_ijk, dtype=float) - 0.5
        return bool(np.all(ijk >= -0.5) and np.all(ijk <= upper))


@dataclass
class PatientView:
    """A volume's array seen in patient order [superior, posterior, left] (the canonical order), without copying.

    Localization and its check figure work in this order whatever order the array is stored in;
    ``CTVolume.patient_view`` builds it once per volume. ``hu`` is the volume's voxels in this order.
    """

    voxel_axes: tuple[int, int, int]  # voxel axis (0=i, 1=j, 2=k) behind each patient axis
    flips: tuple[bool, bool, bool]
    shape: tuple[int, int, int]  # (superior, posterior, left) voxel counts
    spacing: np.ndarray  # mm along the patient axes
    hu: np.ndarray | None = None

    def view(self, array: np.ndarray) -> np.ndarray:
        """Any array shaped like the volume's ``hu``, in patient order (a view, no copy)."""
        view = np.transpose(array, [2 - v for v in self.voxel_axes])
        return view[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def unview(self, array: np.ndarray) -> np.ndarray:
        """Inverse of ``view``: a patient-order array back in the order of the volume's ``hu``."""
        unflipped = array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.transpose(unflipped, np.argsort([2 - v for v in self.voxel_axes]))

    def to_ijk(self, index: np.ndarray) -> np.ndarray:
        """Continuous patient-order indices (s, p, l), shape (..., 3) -> the volume's voxel indices (i, j, k)."""
        index = np.asarray(index, dtype=float)
        ijk = np.empty_like(index)
        for axis, (voxel_axis, flip) in enumerate(zip(self.voxel_axes, self.flips)):
            ijk[..., voxel_axis] = self.shape[axis] - 1 - index[..., axis] if flip else index[..., axis]
        return ijk

    def from_ijk(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (i, j, k), shape (..., 3) -> patient-order indices (s, p, l); inverse of ``to_ijk``."""
        ijk = np.asarray(ijk, dtype=float)
        index = np.empty_like(ijk)
        for axis, (voxel_axis, flip) in enumerate(zip(self.voxel_axes, self.flips)):
            index[..., axis] = self.shape[axis] - 1 - ijk[..., voxel_axis] if flip else ijk[..., voxel_axis]
        return index


def from_sitk(image: sitk.Image) -> CTVolume:
    """Convert a SimpleITK image (LPS physical space) into a canonical-orientation CTVolume."""
    if image.GetDimension() != 3:
        raise ValueError(f"a CT volume needs 3 dimensions, got a {image.GetDimension()}-D image")
    oriented = sitk.DICOMOrient(image, "LPS")
    hu = sitk.GetArrayFromImage(oriented)
    direction = np.array(oriented.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(oriented.GetSpacing(), dtype=float)
    origin = np.array(oriented.GetOrigin(), dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    matrix[:3, 3] = LPS_TO_RAS @ origin
    return CTVolume(hu=hu, ijk_to_ras=matrix)


def to_sitk(volume: CTVolume) -> sitk.Image:
    """Convert a CTVolume into a SimpleITK image (LPS physical space) for writing NIfTI/NRRD/DICOM."""
    image = sitk.GetImageFromArray(volume.hu)
    spacing = volume.spacing
    direction_lps = LPS_TO_RAS @ volume.ijk_to_ras[:3, :3] @ np.diag(1.0 / spacing)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in direction_lps.ravel()))
    image.SetOrigin(tuple(float(o) for o in LPS_TO_RAS @ volume.ijk_to_ras[:3, 3]))
    return image


def canonical(volume: CTVolume) -> CTVolume:
    """The same voxels in the canonical orientation that the loaders return (e.g. for a 3D Slicer node's array)."""
    return from_sitk(to_sitk(volume))
