"""How crops and heat maps are shown: 8-bit grey PNGs, and the display window of a heat map.

One place for what the report, the command line, the cohort crops and the 3D Slicer panel all
show (numpy and Pillow only, so the Slicer panel can use it without torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> 8-bit grey levels (as the training crops are saved)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_grey_png(image: np.ndarray, path: str | Path) -> Path:
    """Save a [0, 1] image (a crop) as an 8-bit PNG; returns the path."""
    Image.fromarray(to_uint8(image)).save(path)
    return Path(path)


def display_stretch(heat: np.ndarray, crop_map: np.ndarray) -> tuple[np.ndarray, float, float]:
    """An attention map stretched for display from its (min, max) inside the crop to [0, 1], with that range.

    Attention values are sigmoid gates, often all near 0.5; drawn as they are they tint the whole crop
    evenly. The saved maps keep the raw values; only the display is stretched, and its title says from what.
    """
    low, high = float(crop_map.min()), float(crop_map.max())
    if high <= low:
        return np.zeros_like(heat), low, high
    return np.clip((heat - low) / (high - low), 0.0, 1.0), low, high


def heatmap_window(kind: str, image_map: np.ndarray) -> tuple[float, float]:
    """(low, high) display window of a heat map saved in image coordinates (0 outside the crop).

    Grad-CAM maps are already scaled to [0, 1]; attention is shown over its range inside the crop,
    as in the report's overlays (``display_stretch``). A flat map gets a window that shows nothing.
    """
    if kind != "attention":
        return 0.0, 1.0
    inside = image_map[image_map > 0]
    if inside.size == 0:
        return 0.0, 1.0
    _, low, high = display_stretch(inside, inside)
    return low, high if high > low else low + 1.0



def hit_rate_text(measured: dict | None) -> str:
    """How often maps of one kind peaked on the lesion in the pointing game saved with the bundle (per crop
    set, with its 95% interval and the crop centre's rate), or that it was not measured."""
    if not measured:
        return "not measured for this model"
    parts = [f"{crops}: {row['hit_rate']:.0%} [{row['ci95'][0]:.0%}-{row['ci95'][1]:.0%}] (crop centre {row['centre']:.0%})"
             for crops, row in measured["crops"].items()]
    return f"{'; '.join(parts)}; {measured['data']}"


def heatmap_caption(info: dict | None) -> str:
    """What the panel says under a heat map, from its ``result.json`` ``heatmap_info`` entry: what the map
    is, "flat: no evidence for <class>" when it has no maximum, and its measured hit rate."""
    if not info:
        return "No description of this map in result.json (written by an older BreastFusion)."
    lines = [info["map"]]
    if info.get("flat") and info.get("explains"):
        lines.append(f"Flat: no evidence for {info['explains']}.")
    lines.append(f"Peak on the lesion (pointing game): {hit_rate_text(info.get('hit_rate'))}.")
    if not info.get("hit_rate"):
        lines.append("Do not read the peak as the lesion's position.")
    return "\n".join(lines)
