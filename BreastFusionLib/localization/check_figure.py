"""The check figure: a PNG to check a localization by eye: axial CT slice with nipples, candidate point and crop square,
and (with a region mask) a coronal view of the clock sector that was searched.

Both panels use the radiological convention whatever the array order of the volume: the patient's
right on the image's left, anterior at the top of the axial view, superior at the top of the coronal
view. Voxels are shown at their true aspect ratio. Drawn with matplotlib's Agg canvas (no pyplot, no
display, no global backend change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from BreastFusionLib.crop import CropBox
from BreastFusionLib.ct.crop import SOFT_TISSUE_WINDOW, apply_window
from BreastFusionLib.ct.volume import CTVolume, PatientView
from BreastFusionLib.localization.clock import clock_direction

NIPPLE_COLOURS = {"right": "#00c8ff", "left": "#ffb000"}
CANDIDATE_COLOUR = "#ff3030"


def _nipple_point(value) -> np.ndarray | None:
    """RAS point of a NippleResult (None when not found) or of a plain (x, y, z)."""
    if value is None:
        return None
    if hasattr(value, "found"):
        return None if not value.found or value.point_ras is None else np.asarray(value.point_ras, dtype=float)
    return np.asarray(value, dtype=float)


def _orientation_labels(axes, top: str, bottom: str) -> None:
    style = dict(transform=axes.transAxes, color="white", fontsize=13, fontweight="bold", ha="center", va="center")
    axes.text(0.03, 0.5, "R", **style)
    axes.text(0.97, 0.5, "L", **style)
    axes.text(0.5, 0.97, top, **style)
    axes.text(0.5, 0.03, bottom, **style)


def write_check_figure(
    volume: CTVolume,
    path: str | Path,
    nipples: dict,
    candidate_point_ras: np.ndarray | None = None,
    region_mask: np.ndarray | None = None,
    crop_box: CropBox | None = None,
    slice_index: int | None = None,
) -> Path:
    """Write the check figure to ``path`` (PNG) and return the path.

    ``nipples`` maps "right"/"left" to a ``NippleResult`` or an (x, y, z) RAS point; ``crop_box`` and
    ``slice_index`` are those of ``ct_axial_crop`` (``slice_index`` is a k index of ``volume.hu``);
    ``region_mask`` (shaped like ``volume.hu``, e.g. ``candidate_region``) adds the coronal panel.
    The axial slice goes through ``slice_index``, else the candidate point, else the nipples' level.
    """
    view = volume.patient_view
    points = {side: _nipple_point(nipples.get(side)) for side in ("right", "left")}
    indices = {side: view.from_ijk(volume.ras_to_ijk(p)) for side, p in points.items() if p is not None}
    candidate = None if candidate_point_ras is None else view.from_ijk(volume.ras_to_ijk(np.asarray(candidate_point_ras, float)))
    panels = 2 if region_mask is not None else 1
    figure = Figure(figsize=(6.5 * panels, 6.8), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axial = figure.add_subplot(1, panels, 1)
    _axial_panel(axial, volume, _axial_slice(view, slice_index, candidate, indices), indices, candidate, crop_box)
    if region_mask is not None:
        _coronal_panel(figure.add_subplot(1, 2, 2), volume, view.view(np.asarray(region_mask, bool)), indices, candidate)
    if indices or candidate is not None or crop_box is not None:
        axial.legend(loc="lower right", fontsize=7, framealpha=0.6)
    for axes in figure.axes:
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle("Research use only. Clock: 12 superior, 3 toward the patient's left, both breasts.",
                    fontsize=8, y=0.005, va="bottom")
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def _axial_slice(view: PatientView, slice_index: int | None, candidate, indices: dict) -> int:
    """The superior index of the axial panel: the crop's slice, else the candidate's, else the nipples' level."""
    n_s = view.shape[0]
    if slice_index is not None and view.voxel_axes[0] == 2:
        s = float(n_s - 1 - slice_index if view.flips[0] else slice_index)
    elif candidate is not None:
        s = candidate[0]
    elif indices:
        s = float(np.mean([index[0] for index in indices.values()]))
    else:
        s = (n_s - 1) / 2.0
    return int(np.clip(np.round(s), 0, n_s - 1))


def _axial_panel(axial, volume: CTVolume, s: int, indices: dict, candidate, crop_box: CropBox | None) -> None:
    """Axial slice ``s`` (anterior up, patient's right on the left) with the nipples, candidate and crop square."""
    view = volume.patient_view
    n_s, n_p, n_l = view.shape
    s_mm, p_mm, l_mm = view.spacing
    axial.imshow(apply_window(view.hu[s], SOFT_TISSUE_WINDOW), cmap="gray", vmin=0, vmax=1,
                 aspect=p_mm / l_mm, interpolation="bilinear")
    z_mm = volume.ijk_to_ras_points(view.to_ijk(np.array([s, 0.0, 0.0])))[2]
    axial.set_title(f"axial slice z = {z_mm:.1f} mm (RAS), soft-tissue window")
    for side, index in indices.items():
        off = (index[0] - s) * s_mm
        label = f"{side} nipple" + ("" if abs(off) < s_mm / 2 else f" ({abs(off):.0f} mm {'above' if off > 0 else 'below'} this slice)")
        axial.plot(index[2], index[1], "o", mfc="none", mec=NIPPLE_COLOURS[side], mew=2, ms=10, label=label)
    if candidate is not None:
        axial.plot(candidate[2], candidate[1], "+", color=CANDIDATE_COLOUR, mew=2, ms=14, label="candidate point")
    if crop_box is not None and view.voxel_axes[0] == 2:
        _draw_crop_box(axial, view, crop_box, s)
    axial.set_xlim(-0.5, n_l - 0.5)
    axial.set_ylim(n_p - 0.5, -0.5)
    _orientation_labels(axial, "A", "P")


def _coronal_panel(coronal, volume: CTVolume, region: np.ndarray, indices: dict, candidate) -> None:
    """Coronal slice (superior up) through the candidate or the searched sector, the sector tinted green,
    each nipple with its clock face."""
    view = volume.patient_view
    n_s, n_p, n_l = view.shape
    s_mm, p_mm, l_mm = view.spacing
    if candidate is not None:
        p = candidate[1]
    elif region.any():
        p = float(np.mean(np.nonzero(region.any(axis=(0, 2)))[0]))
    elif indices:
        p = float(np.mean([index[1] for index in indices.values()])) + 10.0 / p_mm
    else:
        p = (n_p - 1) / 2.0
    p = int(np.clip(np.round(p), 0, n_p - 1))
    coronal.imshow(apply_window(view.hu[::-1, p, :], SOFT_TISSUE_WINDOW), cmap="gray", vmin=0, vmax=1,
                   aspect=s_mm / l_mm, interpolation="bilinear")
    sector = region.any(axis=1)[::-1]
    if sector.any():
        tint = np.zeros(sector.shape + (4,), np.float32)
        tint[sector] = (0.2, 1.0, 0.3, 0.28)
        coronal.imshow(tint, aspect=s_mm / l_mm, interpolation="nearest")
        coronal.contour(sector.astype(float), levels=[0.5], colors="#33ff55", linewidths=1.0)
    y_mm = volume.ijk_to_ras_points(view.to_ijk(np.array([0.0, p, 0.0])))[1]
    coronal.set_title(f"coronal y = {y_mm:.1f} mm (RAS); green: searched clock sector")
    for side, index in indices.items():
        row = n_s - 1 - index[0]
        coronal.plot(index[2], row, "o", mfc="none", mec=NIPPLE_COLOURS[side], mew=2, ms=10)
        for hour in (12, 3, 6, 9):  # the clock face as the reader sees it, same for both breasts
            direction = clock_direction(hour)  # (x, 0, z) in RAS
            coronal.text(index[2] - 28.0 * direction[0] / l_mm, row - 28.0 * direction[2] / s_mm, str(hour),
                         color=NIPPLE_COLOURS[side], fontsize=8, ha="center", va="center")
    if candidate is not None:
        coronal.plot(candidate[2], n_s - 1 - candidate[0], "+", color=CANDIDATE_COLOUR, mew=2, ms=14)
    if indices:  # both breasts and some margin, not the whole field of view
        columns = [index[2] for index in indices.values()] + ([candidate[2]] if candidate is not None else [])
        margin = 90.0 / l_mm
        coronal.set_xlim(max(min(columns) - margin, -0.5), min(max(columns) + margin, n_l - 0.5))
    else:
        coronal.set_xlim(-0.5, n_l - 0.5)
    coronal.set_ylim(n_s - 0.5, -0.5)
    _orientation_labels(coronal, "S", "I")


def _draw_crop_box(axes, view: PatientView, box: CropBox, s: int) -> None:
    """The crop square of ``ct_axial_crop`` (rows j, columns i of ``hu[k]``) drawn on the patient-order axial view."""
    rows = box.center_row + np.array([-0.5, -0.5, 0.5, 0.5, -0.5]) * box.side_rows
    cols = box.center_col + np.array([-0.5, 0.5, 0.5, -0.5, -0.5]) * box.side_cols
    k = view.shape[0] - 1 - s if view.flips[0] else s
    corners = np.array([view.from_ijk(np.array([c, r, k])) for r, c in zip(rows, cols)])
    axes.plot(corners[:, 2], corners[:, 1], "-", color="#ffff40", lw=1.2, label="CT crop")
