"""The patient's body on chest CT: voxels above about -500 HU, the table and air left out, lungs filled in."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from BreastFusionLib.ct.volume import CTVolume

BODY_HU = -500.0


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def _fill_slice_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes (lungs, bowel gas) axial slice by slice; ``mask`` is in patient order."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(~mask, structure=in_plane)
    border = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    holes = (labels > 0) & ~np.isin(labels, border)
    return mask | holes


def bounding_box(mask: np.ndarray, margin: np.ndarray | None = None) -> tuple[slice, ...]:
    """Slices around the True voxels of a non-empty mask, widened by ``margin`` voxels per axis."""
    margin = np.zeros(mask.ndim, int) if margin is None else margin
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - int(margin[axis]), 0), min(int(present[-1]) + int(margin[axis]) + 1, mask.shape[axis])))
    return tuple(box)


def body_in_patient_order(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """Body mask of a patient-order array [superior, posterior, left] (largest component, holes filled per slice)."""
    body = largest_component(hu > threshold_hu)
    if body.any():
        box = bounding_box(body)
        body[box] = _fill_slice_holes(body[box])
    return body


def body_mask(volume: CTVolume, threshold_hu: float = BODY_HU) -> np.ndarray:
    """Body voxels (same shape as ``volume.hu``): largest 3-D component above ``threshold_hu``, holes filled per slice.

    The table, air and skin markers not touching the body are left out; lungs and bowel gas are filled in.
    """
    view = volume.patient_view
    return np.ascontiguousarray(view.unview(body_in_patient_order(view.hu, threshold_hu)))
