"""Nipples on chest CT: the most anterior skin point (body surface at about -500 HU) of each breast.

Everything runs on a coarse (about 2.5 mm) body mask and its *anterior height map* (for each axial
slice and left-right column, the most anterior body voxel), then refines the apex at full
resolution. The work is done in patient order (``CTVolume.patient_view``), so any axis-aligned
volume works, not only the canonical orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from BreastFusionLib.ct.volume import CTVolume, PatientView
from BreastFusionLib.localization.body import BODY_HU, largest_component
from BreastFusionLib.localization.clock import SIDES

COARSE_MM = (3.0, 2.5, 2.5)  # target coarse voxel size along (superior, posterior, left)
MIDLINE_MARGIN_MM = 20.0  # the apex search skips this band around the midline (cleavage, sternum)
LATERAL_FRACTION = 0.9  # ... and the outer 10% of the half-width (arms, lateral skin markers)
APEX_RADIUS_MM = 4.0  # skin points this close to the apex are averaged
FULL_PROMINENCE_MM = 25.0  # breast protruding this much above the midline chest wall -> confidence 1


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
class _Surface:
    """Coarse body and its anterior height map, in canonical order."""

    steps: tuple[int, int, int]
    spacing: np.ndarray  # coarse voxel size (superior, posterior, left)
    body: np.ndarray
    has_body: np.ndarray  # [s, l]: the column holds body
    anterior: np.ndarray  # [s, l]: coarse posterior index of the most anterior body voxel
    lung_mm2: np.ndarray  # [s]: air area enclosed by the body per slice


def _surface(canonical: PatientView, threshold_hu: float) -> _Surface:
    steps = tuple(max(1, round(target / size)) for target, size in zip(COARSE_MM, canonical.spacing))
    coarse = canonical.hu[:: steps[0], :: steps[1], :: steps[2]] > threshold_hu
    body = largest_component(coarse)
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
    canonical: PatientView, surface: _Surface, coarse_apex: tuple[int, int, int], threshold_hu: float
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


def _find_one(canonical: PatientView, surface: _Surface, side: str, threshold_hu: float, volume: CTVolume) -> NippleResult:
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
    canonical = volume.patient_view
    surface = _surface(canonical, threshold_hu)
    return {side: _find_one(canonical, surface, side, threshold_hu, volume) for side in SIDES}
