"""A mass proposal on chest CT at a reported clock position and distance from the nipple.

The candidate region is the body under the clock sector (coronal plane through the nipple, as in
``clock.py``, any depth); inside it, under the skin and in front of the chest wall, the most
mass-like soft-tissue blob (multi-scale Laplacian of Gaussian) is scored by contrast and by how close
it lies to the reported position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.body import BODY_HU, body_in_patient_order, bounding_box
from BreastFusionLib.localization.clock import ClockPosition, clock_direction, clock_from_point
from BreastFusionLib.localization.parsing import format_clock

LOG_BALL_GAIN = 0.925  # scale-normalized LoG at the centre of a ball of radius sqrt(3) sigma, per HU of contrast
FULL_CONTRAST_HU = 100.0  # blob contrast giving full strength
SKIN_MARGIN_MM = 5.0  # mass centres are looked for at least this deep under the skin (skin and nipple are blob-like too)


@dataclass
class MassProposal:
    """A proposed mass centre with a 0..1 score and a sentence describing it."""

    point_ras: np.ndarray
    ijk: np.ndarray
    score: float
    message: str


def _ras_coordinate(volume: CTVolume, ras_axis: int) -> np.ndarray:
    """RAS coordinate ``ras_axis`` of every voxel, as a small array broadcastable to ``volume.hu``."""
    k, j, i = volume.hu.shape
    grids = (np.arange(i)[None, None, :], np.arange(j)[None, :, None], np.arange(k)[:, None, None])
    coordinate = np.full((1, 1, 1), volume.ijk_to_ras[ras_axis, 3])
    for voxel_axis, grid in enumerate(grids):
        factor = volume.ijk_to_ras[ras_axis, voxel_axis]
        if factor != 0.0:
            coordinate = coordinate + factor * grid
    return coordinate


def _coronal_offsets(volume: CTVolume, nipple_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nipple = np.asarray(nipple_ras, dtype=float)
    return _ras_coordinate(volume, 0) - nipple[0], _ras_coordinate(volume, 2) - nipple[2]


def candidate_region(
    volume: CTVolume,
    nipple_ras: np.ndarray,
    position: ClockPosition,
    tolerance_hours: float = 0.5,
    tolerance_mm: float = 10.0,
) -> np.ndarray:
    """Body voxels (any depth) within ``tolerance_mm`` of the reported distance and ``tolerance_hours`` of the clock hour.

    Distances and hours are read in the coronal plane through the nipple, as in ``clock.py``; close to
    the nipple (within ``tolerance_mm``) every hour is accepted.
    """
    dx, dz = _coronal_offsets(volume, nipple_ras)
    distance = np.hypot(dx, dz)
    hour = np.degrees(np.arctan2(-dx, dz)) / 30.0
    hour_error = np.abs((hour - position.hour + 6.0) % 12.0 - 6.0)
    sector = (np.abs(distance - position.distance_mm) <= tolerance_mm) & ((hour_error <= tolerance_hours) | (distance <= tolerance_mm))
    canonical = volume.patient_view
    sector = canonical.view(np.broadcast_to(sector, volume.hu.shape))
    region = np.zeros(canonical.hu.shape, bool)
    slices = np.flatnonzero(sector.any(axis=(1, 2)))
    if slices.size:
        slab = slice(slices[0], slices[-1] + 1)  # the body is only needed on the slices the sector crosses
        region[slab] = sector[slab] & body_in_patient_order(canonical.hu[slab], BODY_HU)
    return np.ascontiguousarray(canonical.unview(region))


def _breast_zone(hu: np.ndarray, region: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Region voxels ``SKIN_MARGIN_MM`` under the skin and in front of the chest wall (first lung or bone), patient order."""
    has_region = region.any(axis=1)
    skin = np.where(has_region, region.argmax(axis=1), 0)
    depth = np.arange(hu.shape[1])[None, :, None]
    below_skin = depth >= skin[:, None, :] + max(1, round(SKIN_MARGIN_MM / spacing[1]))
    wall_hit = below_skin & ((hu > 250) | (hu < BODY_HU)) & region
    wall = np.where(wall_hit.any(axis=1), wall_hit.argmax(axis=1), hu.shape[1])
    size = np.maximum(np.round(20.0 / spacing[[0, 2]]).astype(int), 1)
    wall = ndimage.minimum_filter(wall, size=tuple(size), mode="nearest")  # bridge the gaps between ribs
    zone = region & below_skin & (depth < wall[:, None, :])
    return zone if zone.any() else region & below_skin


def _laplacian_of_gaussian(image: np.ndarray, sigma_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Laplacian (per mm^2) of the image smoothed by a Gaussian of ``sigma_mm``, for anisotropic voxels."""
    sigma = tuple(sigma_mm / spacing)
    total = np.zeros(image.shape, np.float32)
    for axis in range(image.ndim):
        order = [0] * image.ndim
        order[axis] = 2
        total += ndimage.gaussian_filter(image, sigma, order=order) / spacing[axis] ** 2
    return total


def propose_mass(
    volume: CTVolume,
    nipple_ras: np.ndarray,
    position: ClockPosition,
    tolerance_hours: float = 0.5,
    tolerance_mm: float = 10.0,
    radii_mm: tuple[float, ...] = (3.0, 4.5, 6.5, 9.0, 12.0, 15.0),
) -> MassProposal:
    """Most mass-like soft-tissue blob (multi-scale LoG) in the candidate region, scored 0..1 by contrast and closeness."""
    region = candidate_region(volume, nipple_ras, position, tolerance_hours, tolerance_mm)
    where = f"{format_clock(position.hour)}, {position.distance_mm:g} mm from the {position.side} nipple"
    if not region.any():
        raise UserInputError(f"the region at {where} lies outside the body or outside the CT volume")
    canonical = volume.patient_view
    spacing = canonical.spacing
    region_c = canonical.view(region)
    columns = bounding_box(region_c.any(axis=1, keepdims=True))
    zone = np.zeros(region_c.shape, bool)
    zone[columns[0], :, columns[2]] = _breast_zone(canonical.hu[columns[0], :, columns[2]], region_c[columns[0], :, columns[2]], spacing)
    if not zone.any():
        raise UserInputError(f"the region at {where} holds no tissue under the skin")
    box = bounding_box(zone, np.ceil(2.0 * max(radii_mm) / math.sqrt(3.0) / spacing))
    image = np.clip(canonical.hu[box].astype(np.float32), -100.0, 150.0)  # air and lung look like fat: no edge blobs
    best_response = np.full(image.shape, -np.inf, np.float32)
    best_radius = np.zeros(image.shape, np.float32)
    for radius in radii_mm:
        sigma = radius / math.sqrt(3.0)
        response = -(sigma**2) * _laplacian_of_gaussian(image, sigma, spacing) / LOG_BALL_GAIN
        better = response > best_response
        best_response[better] = response[better]
        best_radius[better] = radius
    peak_size = tuple(np.maximum(np.round(5.0 / spacing).astype(int) | 1, 3))
    peaks = (best_response == ndimage.maximum_filter(best_response, size=peak_size)) & zone[box] & (best_response > 0)
    nipple = np.asarray(nipple_ras, dtype=float)
    target = nipple + position.distance_mm * clock_direction(position.hour)
    spread = max(tolerance_mm, position.distance_mm * math.radians(30.0 * tolerance_hours))
    offset = np.array([b.start for b in box])
    candidates = np.argwhere(peaks)
    if candidates.size == 0:
        ijks = canonical.to_ijk(np.argwhere(zone[box]) + offset)
        points = volume.ijk_to_ras_points(ijks)
        nearest = int(np.argmin(np.hypot(points[:, 0] - target[0], points[:, 2] - target[2])))
        return MassProposal(points[nearest], ijks[nearest], 0.0, f"no soft-tissue blob found at {where}: showing the closest tissue point")
    ijks = canonical.to_ijk(candidates + offset)
    points = volume.ijk_to_ras_points(ijks)
    contrast = best_response[tuple(candidates.T)]
    closeness = np.exp(-0.5 * (np.hypot(points[:, 0] - target[0], points[:, 2] - target[2]) / spread) ** 2)
    scores = np.clip(contrast / FULL_CONTRAST_HU, 0.0, 1.0) * closeness
    best = int(np.argmax(scores))
    found = clock_from_point(nipple, points[best], position.side)
    message = (
        f"proposed mass at the {format_clock(found.hour)} clock position, {found.distance_mm:.0f} mm from the {position.side} nipple, "
        f"{nipple[1] - points[best][1]:.0f} mm deep: a blob about {2 * best_radius[tuple(candidates[best])]:.0f} mm wide, "
        f"{contrast[best]:.0f} HU above its surroundings"
    )
    return MassProposal(points[best], ijks[best], round(float(scores[best]), 3), message)
