"""How crops and heat maps are shown: 8-bit grey PNGs, and what is said about a heat map.

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


def ensemble_text(spread: dict | None) -> str:
    """An ensemble's uncertainty in words, from its result.json ``ensemble`` entry; "" for a single model."""
    if not spread:
        return ""
    low, high = spread["range"]
    return (f"{spread['members']} models: {low:.2f}-{high:.2f} (SD {spread['sd']:.2f}); "
            f"{spread['agreeing']} of {spread['members']} on the decision's side of the threshold")


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
