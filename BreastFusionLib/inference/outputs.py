"""Write one prediction to a folder: result.json, crops, heat maps (.npy), overlays (PNG) and report.html.

``result.json`` follows a fixed schema read by the 3D Slicer module (docs/INFERENCE.md). Nothing
identifying is written: no patient name, ID or date, no input file path; only pixels, geometry and
model outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from BreastFusionLib.crop import CropBox
from BreastFusionLib.display import display_stretch, save_grey_png, to_uint8
from BreastFusionLib.inference.bundle import Bundle
from BreastFusionLib.inference.case import HEATMAP_KINDS, CaseResult
from BreastFusionLib.inference.report_html import write_report_html
from BreastFusionLib.localization.parsing import format_clock

DISCLAIMER = "Research use only. Not for clinical diagnosis."
MIN_PANEL_ROWS = 256
# matplotlib's "jet" colour map as its piecewise-linear (position, value) control points, so that
# serving needs no plotting library (3D Slicer does not bundle matplotlib).
JET = {"red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
       "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
       "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0))}


def jet(values: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of the jet colour map for values in [0, 1] (blue = low, red = high)."""
    clipped = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(clipped, *zip(*JET[channel])) for channel in ("red", "green", "blue")], axis=-1)


def blend(grey: np.ndarray, heat: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """An RGB uint8 overlay of a [0, 1] heat map (jet) on a grey image; weak values stay transparent."""
    colour = jet(heat)
    alpha = strength * np.clip(heat, 0.0, 1.0)[..., None]
    rgb = np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2) * (1 - alpha) + colour * alpha
    return to_uint8(rgb)


def _panel(rgb: np.ndarray, box: CropBox, title: str) -> Image.Image:
    picture = Image.fromarray(rgb)
    scale = max(1.0, MIN_PANEL_ROWS / rgb.shape[0])
    if scale > 1:
        picture = picture.resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(picture)
    top, left = (box.center_row - box.side_rows / 2 + 0.5) * scale, (box.center_col - box.side_cols / 2 + 0.5) * scale
    draw.rectangle([left, top, left + box.side_cols * scale, top + box.side_rows * scale], outline=(255, 255, 0), width=2)
    draw.rectangle([0, 0, 8 + 7 * len(title), 16], fill=(0, 0, 0))
    draw.text((4, 2), title, fill=(255, 255, 255))
    return picture


def overlay_image(result: CaseResult, key: str) -> Image.Image:
    """Side by side: the image with the crop box, then each model's attention (stretched) and Grad-CAM for ``key``."""
    grey, box = result.images[key], result.crops[key].box
    panels = [_panel(np.repeat(to_uint8(grey)[..., None], 3, axis=2), box, f"{key.upper()} crop box")]
    for model, branches in result.heatmaps.items():
        if key not in branches:
            continue
        for kind in HEATMAP_KINDS:
            heat, title = branches[key][kind], f"{model} model: {kind}"
            if kind == "attention":
                heat, low, high = display_stretch(heat, result.crop_heatmaps[model][key][kind])
                title += f" {low:.2f}-{high:.2f}"
            panels.append(_panel(blend(grey, heat), box, title))
    canvas = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), panels[0].height), (255, 255, 255))
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + 4
    return canvas


def _localization(result: CaseResult) -> dict | None:
    location = result.location
    if location is None:
        return None
    return {
        "side": location.side,
        "clock": format_clock(location.clock_hour) if location.clock_hour is not None else None,
        "distance_mm": round(float(location.distance_mm), 1) if location.distance_mm is not None else None,
        "point_ras": [round(float(v), 2) for v in location.point_ras],
        "nipple_ras": None if location.nipple_ras is None else [round(float(v), 2) for v in location.nipple_ras],
        "ct_slice_index": int(result.crops["ct"].slice_index),
    }


def write_outputs(result: CaseResult, bundle: Bundle, out_dir: str | Path) -> dict:
    """Write every output file of ``result`` into ``out_dir``; returns the result.json record."""
    out = Path(out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    crops, overlays, heatmaps = {}, {}, {}
    for key, crop in result.crops.items():
        crops[key] = f"{key}_crop.png"
        save_grey_png(crop.pixels, out / crops[key])
    for model, branches in result.heatmaps.items():
        for key, maps in branches.items():
            for kind in HEATMAP_KINDS:
                name = f"maps/{model}_{key}_{kind}.npy"
                np.save(out / name, maps[kind].astype(np.float32))
                heatmaps.setdefault(model, {}).setdefault(key, {})[kind] = name
    for key in result.crops:
        overlays[key] = f"{key}_overlay.png"
        overlay_image(result, key).save(out / overlays[key])
    record = {
        "models": {name: {"probability": round(r.probability, 6), "threshold": round(r.threshold, 6),
                          "decision": r.decision, "missing_modality": r.missing_modality}
                   for name, r in result.models.items()},
        "localization": _localization(result),
        "crops": crops,
        "heatmaps": heatmaps,
        "overlays": overlays,
        "model": {"bundle_version": bundle.version,
                  "checkpoints": {name: {"file": bundle.models[name].checkpoint.relative_to(bundle.root).as_posix(),
                                         "sha256": bundle.models[name].sha256, "backbone": bundle.models[name].backbone}
                                  for name in result.models}},
        "timings_s": result.timings_s,
        "disclaimer": DISCLAIMER,
    }
    (out / "result.json").write_text(json.dumps(record, indent=2))
    write_report_html(out / "report.html", record, result, bundle, out)
    return record
