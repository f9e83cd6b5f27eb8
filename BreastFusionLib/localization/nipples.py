"""Nipples on chest CT, and a mass proposal at a reported clock position and distance from the nipple.

A nipple is found as the most anterior skin point (body surface at about -500 HU) of each breast.
Everything runs on a coarse (about 2.5 mm) body mask and its *anterior height map* (for each axial
slice and left-right column, the most anterior body voxel), then refines the apex at full
resolution. Axes are read from ``ijk_to_ras``, so any axis-aligned volume works, not only the
canonical orientation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import SIDES, ClockPosition, clock_direction, clock_from_point
from BreastFusionLib.localization.parsing import format_clock

BODY_HU = -500.0
COARSE_MM = (3.0, 2.5, 2.5)  # target coarse voxel size along (superior, posterior, left)
MIDLINE_MARGIN_MM = 20.0  # the apex search skips this band around the midline (cleavage, sternum)
LATERAL_FRACTION = 0.9  # ... and the outer 10% of the half-width (arms, lateral skin markers)
APEX_RADIUS_MM = 4.0  # skin points this close to the apex are averaged
FULL_PROMINENCE_MM = 25.0  # breast protruding this much above the midline chest wall -> confidence 1
LOG_BALL_GAIN = 0.925  # scale-normalized LoG at the centre of a ball of radius sqrt(3) sigma, per HU of contrast
FULL_CONTRAST_HU = 100.0  # blob contrast giving full strength
SKIN_MARGIN_MM = 5.0  # mass centres are looked for at least this deep under the skin (skin and nipple are blob-like too)


@dataclass
class NippleResult:
    """Nipple of one breast; ``point_ras`` and ``ijk`` are None when it was not found."""

    side: str
    found: bool
    point_ras: np.ndarray | None
    ijk: np.ndarray | None
    confidence: float
    message: str


@dataclass
class MassProposal:
    """A proposed mass centre with a 0..1 score and a sentence describing it."""

    point_ras: np.ndarray
    ijk: np.ndarray
    score: float
    message: str


@dataclass
class _Canonical:
    """The volume's array seen in canonical order [superior, posterior, left] without copying."""

    hu: np.ndarray
    voxel_axes: tuple[int, int, int]  # voxel axis (0=i, 1=j, 2=k) behind each canonical axis
    flips: tuple[bool, bool, bool]
    spacing: np.ndarray  # mm along the canonical axes

    def view(self, array: np.ndarray) -> np.ndarray:
        """Any array shaped like ``volume.hu`` seen in canonical order."""
        view = np.transpose(array, [2 - v for v in self.voxel_axes])
        return view[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def unview(self, array: np.ndarray) -> np.ndarray:
        """Inverse of ``view``: a canonical-order array back in the order of ``volume.hu``."""
        unflipped = array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.transpose(unflipped, np.argsort([2 - v for v in self.voxel_axes]))

    def to_ijk(self, index: np.ndarray) -> np.ndarray:
        """Continuous canonical indices (s, p, l), shape (..., 3) -> the volume's voxel indices (i, j, k)."""
        index = np.asarray(index, dtype=float)
        ijk = np.empty_like(index)
        for axis, (voxel_axis, flip) in enumerate(zip(self.voxel_axes, self.flips)):
            ijk[..., voxel_axis] = self.hu.shape[axis] - 1 - index[..., axis] if flip else index[..., axis]
        return ijk


def _canonical(volume: CTVolume) -> _Canonical:
    voxel_axes, flips = volume.patient_axes()
    canonical = _Canonical(volume.hu, voxel_axes, flips, volume.spacing[list(voxel_axes)])
    canonical.hu = canonical.view(volume.hu)
    return canonical


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def _fill_slice_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes (lungs, bowel gas) axial slice by slice; ``mask`` is in canonical order."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(~mask, structure=in_plane)
    border = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    holes = (labels > 0) & ~np.isin(labels, border)
    return mask | holes


def _bounding_box(mask: np.ndarray, margin: np.ndarray | None = None) -> tuple[slice, ...]:
    """Slices around the True voxels of a non-empty mask, widened by ``margin`` voxels per axis."""
    margin = np.zeros(mask.ndim, int) if margin is None else margin
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - int(margin[axis]), 0), min(int(present[-1]) + int(margin[axis]) + 1, mask.shape[axis])))
    return tuple(box)


def _body(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """Body mask of a canonical-order array (largest component, holes filled per slice)."""
    body = _largest_component(hu > threshold_hu)
    if body.any():
        box = _bounding_box(body)
        body[box] = _fill_slice_holes(body[box])
    return body


def body_mask(volume: CTVolume, threshold_hu: float = BODY_HU) -> np.ndarray:
    """Body voxels (same shape as ``volume.hu``): largest 3-D component above ``threshold_hu``, holes filled per slice.

    The table, air and skin markers not touching the body are left out; lungs and bowel gas are filled in.
    """
    canonical = _canonical(volume)
    return np.ascontiguousarray(canonical.unview(_body(canonical.hu, threshold_hu)))


@dataclass
class _Surface:
    """Coarse body and its anterior height map, in canonical order."""

    steps: tuple[int, int, int]
    spacing: np.ndarray  # coarse voxel size (superior, posterior, left)
    body: np.ndarray
    has_body: np.ndarray  # [s, l]: the column holds body
    anterior: np.ndarray  # [s, l]: coarse posterior index of the most anterior body voxel
    lung_mm2: np.ndarray  # [s]: air area enclosed by the body per slice


def _surface(canonical: _Canonical, threshold_hu: float) -> _Surface:
    steps = tuple(max(1, round(target / size)) for target, size in zip(COARSE_MM, canonical.spacing))
    coarse = canonical.hu[:: steps[0], :: steps[1], :: steps[2]] > threshold_hu
    body = _largest_component(coarse)
    has_body = body.any(axis=1)
    anterior = body.argmax(axis=1)
    posterior = body.shape[1] - 1 - body[:, ::-1].argmax(axis=1)
    row_has_body = body.any(axis=2)
    right_edge = body.argmax(axis=2)
    left_edge = body.shape[2] - 1 - body[:, :, ::-1].argmax(axis=2)
    rows = np.arange(body.shape[1])[None, :, None]
    cols = np.arange(body.shape[2])[None, None, :]
    enclosed = (
        ~body
        & has_body[:, None, :]
        & row_has_body[:, :, None]
        & (rows > anterior[:, None, :])
        & (rows < posterior[:, None, :])
        & (cols > right_edge[:, :, None])
        & (cols < left_edge[:, :, None])
    )
    spacing = canonical.spacing * steps
    lung_mm2 = enclosed.sum(axis=(1, 2)) * spacing[1] * spacing[2]
    return _Surface(steps, spacing, body, has_body, anterior, lung_mm2)


def _refine_apex(
    canonical: _Canonical, surface: _Surface, coarse_apex: tuple[int, int, int], threshold_hu: float
) -> tuple[np.ndarray, str | None]:
    """Sub-voxel apex (canonical index) and the volume edge ("lower"/"upper") its skin reaches, if any.

    The apex is the centroid of the full-resolution skin points near the most anterior one. The skin
    reaches an edge when the edge slice, near the apex, is as anterior as the apex (within 1 mm).
    """
    shape = np.array(canonical.hu.shape)
    centre = np.array(coarse_apex) * surface.steps
    half = np.ceil(15.0 / canonical.spacing).astype(int)
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + np.array(surface.steps), shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    dense = canonical.hu[box] > threshold_hu
    coarse_index = [np.minimum(np.arange(a, b) // s, n - 1) for a, b, s, n in zip(low, high, surface.steps, surface.body.shape)]
    labels, _ = ndimage.label(dense)
    keep = np.unique(labels[surface.body[np.ix_(*coarse_index)] & dense])
    dense = np.isin(labels, keep[keep > 0])
    has_body = dense.any(axis=1)
    if not has_body.any():
        return centre.astype(float), None
    anterior = np.where(has_body, dense.argmax(axis=1), np.iinfo(np.int32).max)
    top = anterior.min()
    s_idx, l_idx = np.nonzero(anterior == top)
    nearest = np.argmin((s_idx - (centre[0] - low[0])) ** 2 + (l_idx - (centre[2] - low[2])) ** 2)
    apex = np.array([s_idx[nearest], top, l_idx[nearest]], float)
    s_all, l_all = np.nonzero(has_body)
    points = np.stack([s_all, anterior[s_all, l_all], l_all], axis=1).astype(float)
    close = np.linalg.norm((points - apex) * canonical.spacing, axis=1) <= APEX_RADIUS_MM
    s_mean, l_mean = points[close][:, 0].mean(), points[close][:, 2].mean()
    window = slice(max(int(apex[2] - 10.0 / canonical.spacing[2]), 0), int(apex[2] + 10.0 / canonical.spacing[2]) + 1)
    tolerance = max(1, round(1.0 / canonical.spacing[1]))
    edge = None
    if low[0] == 0 and anterior[0, window].min() - top <= tolerance:
        edge = "lower"
    elif high[0] == shape[0] and anterior[-1, window].min() - top <= tolerance:
        edge = "upper"
    # Sub-voxel depth: where the column through the centroid crosses the threshold.
    column = canonical.hu[low[0] + int(round(s_mean)), low[1] :, low[2] + int(round(l_mean))].astype(float)
    depth = float(top)
    if 0 < top < column.size and column[top - 1] <= threshold_hu < column[top]:
        depth = top - 1 + (threshold_hu - column[top - 1]) / (column[top] - column[top - 1])
    return np.array([s_mean, depth, l_mean]) + low, edge


def _find_one(canonical: _Canonical, surface: _Surface, side: str, threshold_hu: float, volume: CTVolume) -> NippleResult:
    spacing = surface.spacing
    n_slices, n_cols = surface.has_body.shape
    slices_with_lung = surface.lung_mm2 >= 0.25 * surface.lung_mm2.max() if surface.lung_mm2.max() > 1000 else np.ones(n_slices, bool)
    usable = surface.has_body & slices_with_lung[:, None]
    if not usable.any():
        return NippleResult(side, False, None, None, 0.0, f"{side} nipple not found: no body surface in the volume")
    cols = np.arange(n_cols)
    first = np.where(usable.any(axis=1), usable.argmax(axis=1), 0)
    last = np.where(usable.any(axis=1), n_cols - 1 - usable[:, ::-1].argmax(axis=1), 0)
    rows = usable.any(axis=1)
    midline = float(np.median((first[rows] + last[rows]) / 2.0))
    half_width = float(np.median((last[rows] - first[rows]) / 2.0))
    lateral = (cols - midline) * (1.0 if side == "left" else -1.0)  # canonical columns run toward the patient's left
    in_side = (lateral * spacing[2] >= MIDLINE_MARGIN_MM) & (lateral <= LATERAL_FRACTION * half_width)
    height = np.where(usable & in_side[None, :], -surface.anterior * spacing[1], -np.inf)
    if not np.isfinite(height).any():
        return NippleResult(side, False, None, None, 0.0, f"{side} nipple not found: no body surface on the patient's {side} side")
    s, l = np.unravel_index(np.argmax(height), height.shape)
    apex, edge = _refine_apex(canonical, surface, (s, int(surface.anterior[s, l]), l), threshold_hu)
    last_slice = canonical.hu.shape[0] - 1
    if edge is not None:
        return NippleResult(
            side, False, None, None, 0.0,
            f"{side} nipple outside the field of view: the breast keeps rising toward the {edge} edge of the volume",
        )
    between = slice(min(l, int(round(midline))), max(l, int(round(midline))) + 1)
    medial_floor = np.min(np.where(surface.has_body[s, between], -surface.anterior[s, between] * spacing[1], np.inf))
    prominence = float(height[s, l] - medial_floor)
    confidence = min(1.0, max(prominence, 0.0) / FULL_PROMINENCE_MM)
    notes = []
    edge_mm = min(apex[0], last_slice - apex[0]) * canonical.spacing[0]
    if edge_mm < 15.0:
        confidence *= 0.5
        notes.append(f"only {edge_mm:.0f} mm from the edge of the volume")
    if lateral[l] * spacing[2] < MIDLINE_MARGIN_MM + 2 * spacing[2] or lateral[l] > LATERAL_FRACTION * half_width - 2:
        confidence *= 0.5
        notes.append("at the border of the searched breast region")
    if prominence < 10.0:
        notes.append("the breast barely protrudes, check the point")
    ijk = canonical.to_ijk(apex)
    message = f"{side} nipple at the most anterior skin point of the breast, {prominence:.0f} mm in front of the midline chest wall"
    if notes:
        message += " (" + "; ".join(notes) + ")"
    return NippleResult(side, True, volume.ijk_to_ras_points(ijk), ijk, round(float(confidence), 3), message)


def find_nipples(volume: CTVolume, threshold_hu: float = BODY_HU) -> dict[str, NippleResult]:
    """Nipple of each breast ("right", "left") as the most anterior skin point, or found=False with a reason."""
    canonical = _canonical(volume)
    surface = _surface(canonical, threshold_hu)
    return {side: _find_one(canonical, surface, side, threshold_hu, volume) for side in SIDES}


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
    canonical = _canonical(volume)
    sector = canonical.view(np.broadcast_to(sector, volume.hu.shape))
    region = np.zeros(canonical.hu.shape, bool)
    slices = np.flatnonzero(sector.any(axis=(1, 2)))
    if slices.size:
        slab = slice(slices[0], slices[-1] + 1)  # the body is only needed on the slices the sector crosses
        region[slab] = sector[slab] & _body(canonical.hu[slab], BODY_HU)
    return np.ascontiguousarray(canonical.unview(region))


def _breast_zone(hu: np.ndarray, region: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Region voxels ``SKIN_MARGIN_MM`` under the skin and in front of the chest wall (first lung or bone), canonical order."""
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
    canonical = _canonical(volume)
    spacing = canonical.spacing
    region_c = canonical.view(region)
    columns = _bounding_box(region_c.any(axis=1, keepdims=True))
    zone = np.zeros(region_c.shape, bool)
    zone[columns[0], :, columns[2]] = _breast_zone(canonical.hu[columns[0], :, columns[2]], region_c[columns[0], :, columns[2]], spacing)
    if not zone.any():
        raise UserInputError(f"the region at {where} holds no tissue under the skin")
    box = _bounding_box(zone, np.ceil(2.0 * max(radii_mm) / math.sqrt(3.0) / spacing))
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
