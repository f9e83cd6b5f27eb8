"""Write one prediction to a folder: result.json, crops, heat maps (.npy), overlays (PNG) and report.html.

``result.json`` follows a fixed schema read by the 3D Slicer module (docs/INFERENCE.md). Nothing
identifying is written: no patient name, ID or date, no input file path; only pixels, geometry and
model outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from BreastFusionLib.crop import CropBox
from BreastFusionLib.display import save_grey_png, to_uint8
from BreastFusionLib.inference.loaded_bundle import LoadedBundle
from BreastFusionLib.inference.case import CaseResult, ModelResult
from BreastFusionLib.inference.report_html import write_report_html
from BreastFusionLib.localization.parsing import format_clock

DISCLAIMER = "Research use only. Not for clinical diagnosis."
NAMES = {"us": "US", "ct": "CT"}
CLASS_NAMES = ("benign", "malignant")
CONTEXT_PX = 200  # the context view's longer side; map panels show the crop at its own pixels (300x300)
TITLE_FONT_PX, TITLE_LINE_PX, GAP = 16, 20, 6
POINTING_GAME_FILE = "pointing_game.json"  # written into runs/<model>/ by training/pointing_game*.py --save-in-bundle
MAP_DESCRIPTIONS = {
    "attention": "CBAM attention: where the last-stage features that CBAM's gates let through are strongest "
                 "(their magnitude), for either class (scaled 0-1 in the crop).",
    "gradcam": "Grad-CAM for {explained}, the model's decision: where features raised the {explained} score "
               "(last stage, scaled 0-1 in the crop).",
}
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


def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in scalable font at ``size`` pixels (Pillow >= 10.1 with FreeType), else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _titled(picture: Image.Image, lines: list[str]) -> Image.Image:
    """``picture`` under a white band holding ``lines`` of dark text (readable at the report's scale)."""
    font = _font(TITLE_FONT_PX)
    band = TITLE_LINE_PX * len(lines) + 6
    framed = Image.new("RGB", (picture.width, picture.height + band), (255, 255, 255))
    draw = ImageDraw.Draw(framed)
    for index, line in enumerate(lines):
        draw.text((3, 3 + index * TITLE_LINE_PX), line, fill=(20, 20, 20), font=font)
    framed.paste(picture, (0, band))
    return framed


def context_panel(grey: np.ndarray, box: CropBox, title: str) -> Image.Image:
    """The whole image, ``CONTEXT_PX`` on its longer side, with the crop square in yellow: where the maps come from."""
    scale = CONTEXT_PX / max(grey.shape)
    picture = Image.fromarray(to_uint8(grey)).convert("RGB").resize(
        (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))), Image.Resampling.BILINEAR)
    top, left = (box.center_row - box.side_rows / 2 + 0.5) * scale, (box.center_col - box.side_cols / 2 + 0.5) * scale
    ImageDraw.Draw(picture).rectangle([left, top, left + box.side_cols * scale, top + box.side_rows * scale],
                                      outline=(255, 255, 0), width=2)
    return _titled(picture, [title, "yellow: the crop"])


def map_panel(crop: np.ndarray, crop_map: np.ndarray, lines: list[str]) -> Image.Image:
    """One heat map over its crop, at the crop's own pixels, under its title ``lines``."""
    return _titled(Image.fromarray(blend(crop, crop_map)), lines)


def map_lines(model: str, kind: str, crop_map: np.ndarray, explained: str | None) -> list[str]:
    """Title lines of one map panel: the model and map, then what it shows (or that it is flat)."""
    if kind == "attention":
        return [f"{model} model: attention", "flat" if is_flat(crop_map) else "features, either class"]
    title = f"{model} model: Grad-CAM"
    if is_flat(crop_map):
        return [title, f"flat: no evidence for {explained}"]
    return [title, f"evidence for {explained}"]


def heatmap_figure(result: CaseResult, key: str) -> Image.Image:
    """For crop ``key``: a small context view (whole image, crop square), then one row per model of its maps over the crop."""
    context = context_panel(result.images[key], result.crops[key].box, f"{NAMES[key]} image")
    rows = []
    for model, branches in result.heatmaps.items():
        if key not in branches:
            continue
        explained = _explained(result, model)
        panels = [map_panel(result.crops[key].pixels, crop_map, map_lines(model, kind, crop_map, explained))
                  for kind, crop_map in result.crop_heatmaps[model][key].items()]
        rows.append(panels)
    heights = [max(p.height for p in row) for row in rows]
    width = context.width + max((sum(GAP + p.width for p in row) for row in rows), default=0)
    canvas = Image.new("RGB", (width, max(context.height, sum(heights) + GAP * (len(rows) - 1))), (255, 255, 255))
    canvas.paste(context, (0, 0))
    for index, row in enumerate(rows):
        x, y = context.width, sum(heights[:index]) + GAP * index
        for panel in row:
            canvas.paste(panel, (x + GAP, y))
            x += GAP + panel.width
    return canvas


def is_flat(crop_map: np.ndarray) -> bool:
    """A map without a maximum (all values equal inside the crop): for Grad-CAM, no evidence for the class it explains."""
    return bool(np.ptp(crop_map) <= 1e-6)


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


def measured_hit_rates(bundle: LoadedBundle, model: str) -> dict | None:
    """The pointing game of ``model`` saved in the bundle (``runs/<model>/pointing_game.json``), or None."""
    path = bundle.root / "runs" / model / POINTING_GAME_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _explained(result: CaseResult, model: str) -> str | None:
    """The class that ``model``'s Grad-CAM explains ("benign"/"malignant"), None without Grad-CAM."""
    index = result.heatmap_class.get(model)
    return None if index is None else CLASS_NAMES[index]


def heatmap_info(result: CaseResult, bundle: LoadedBundle) -> dict:
    """Per model, crop and kind: what the map shows, the class it explains, whether it is flat, its measured hit rate."""
    info = {}
    for model, branches in result.crop_heatmaps.items():
        measured = measured_hit_rates(bundle, model)
        explained = _explained(result, model)
        for key, maps in branches.items():
            for kind in maps:
                rates = (measured or {}).get("maps", {}).get(key, {}).get(kind)
                info.setdefault(model, {}).setdefault(key, {})[kind] = {
                    "map": MAP_DESCRIPTIONS[kind].format(explained=explained),
                    "explains": None if kind == "attention" else explained,
                    "flat": is_flat(maps[kind]),
                    "hit_rate": None if rates is None else {"data": measured["data"], "crops": rates}}
    return info


def ensemble_spread(result: ModelResult) -> dict | None:
    """An ensemble's uncertainty for result.json: its members' calibrated probabilities, their SD and range, and how
    many lie on the same side of the threshold as the ensemble's answer; None for a single model."""
    if not result.members:
        return None
    members = np.asarray(result.members, float)
    malignant = result.decision == "malignant"
    return {"members": int(members.size), "member_probabilities": [round(float(p), 6) for p in members],
            "sd": round(float(members.std(ddof=1)) if members.size > 1 else 0.0, 6),
            "range": [round(float(members.min()), 6), round(float(members.max()), 6)],
            "agreeing": int(np.sum((members >= result.threshold) == malignant))}


def _checkpoint_record(bundle: LoadedBundle, name: str) -> dict:
    model = bundle.models[name]
    record = {"file": model.checkpoint.relative_to(bundle.root).as_posix(), "sha256": model.sha256, "backbone": model.backbone}
    if model.members:
        record["members"] = [{"file": path.relative_to(bundle.root).as_posix(), "sha256": digest}
                             for path, digest in model.members]
    return record


def write_outputs(result: CaseResult, bundle: LoadedBundle, out_dir: str | Path) -> dict:
    """Write every output file of ``result`` into ``out_dir``; returns the result.json record."""
    out = Path(out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    crops, overlays, heatmaps = {}, {}, {}
    for key, crop in result.crops.items():
        crops[key] = f"{key}_crop.png"
        save_grey_png(crop.pixels, out / crops[key])
    for model, branches in result.heatmaps.items():
        for key, maps in branches.items():
            for kind, heat in maps.items():
                name = f"maps/{model}_{key}_{kind}.npy"
                np.save(out / name, heat.astype(np.float32))
                heatmaps.setdefault(model, {}).setdefault(key, {})[kind] = name
    for key in result.crops:
        overlays[key] = f"{key}_overlay.png"
        heatmap_figure(result, key).save(out / overlays[key])
    record = {
        "models": {name: {"probability": round(r.probability, 6), "threshold": round(r.threshold, 6),
                          "decision": r.decision, "missing_modality": r.missing_modality, "ensemble": ensemble_spread(r)}
                   for name, r in result.models.items()},
        "localization": _localization(result),
        "crops": crops,
        "heatmaps": heatmaps,
        "overlays": overlays,
        "heatmap_info": heatmap_info(result, bundle),
        "model": {"bundle_version": bundle.version,
                  "checkpoints": {name: _checkpoint_record(bundle, name) for name in result.models}},
        "timings_s": result.timings_s,
        "disclaimer": DISCLAIMER,
    }
    (out / "result.json").write_text(json.dumps(record, indent=2))
    write_report_html(out / "report.html", record, result, bundle, out)
    return record
