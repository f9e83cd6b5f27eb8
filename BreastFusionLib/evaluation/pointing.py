"""The pointing game: does a heat map's maximum fall on the lesion, and more often than the crop centre does?

Everything is measured in the model's square crop (``out_size`` pixels a side). A map *hits* when its
maximum lies inside the lesion (strict), or within ``tolerance`` crop pixels of it (the original
pointing game, Zhang et al., ECCV 2016, allows 15 px). A flat map (no maximum) misses. The
**centre baseline** is a "map" that only marks the crop centre: lesion crops are centred on their
lesion, so it hits often, and a map that does not beat it shows no more than where the crop was
cut. Each map is compared with the centre on the same cases by the exact McNemar test (a two-sided
binomial test on the discordant cases); **chance** is the lesion's share of the crop area. Rates
come with Wilson 95% intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.stats import binomtest

from BreastFusionLib.crop import (DEFAULT_LESION_FRACTION, DEFAULT_OUT_SIZE, CropBox, LesionCrop, displaced_box,
                                  extract_square_crop, lesion_box_from_mask)
from BreastFusionLib.inference.case import model_input
from BreastFusionLib.inference.heatmaps import BRANCHES, HEATMAP_KINDS, crop_heatmaps
from BreastFusionLib.inference.runtime import run_model
from BreastFusionLib.us.crop import us_lesion_crop
from BreastFusionLib.us.io import USImage
from BreastFusionLib.us.overlays import remove_overlays

CENTRE = "centre"
TRUE_CLASS = "gradcam_true_class"  # Grad-CAM for the case's true class, beside the maps predict_case shows


def peak(heat: np.ndarray) -> tuple[int, int] | None:
    """Row, col of a map's maximum; None for a map without any signal (all values equal)."""
    heat = np.asarray(heat)
    if heat.max() <= heat.min():
        return None
    return tuple(int(v) for v in np.unravel_index(np.argmax(heat), heat.shape))


def wilson_interval(hits: list[bool]) -> tuple[float, float]:
    """Wilson score 95% interval of a hit rate."""
    interval = binomtest(int(sum(hits)), len(hits)).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def mcnemar_exact(a: list[bool], b: list[bool]) -> float:
    """Two-sided exact McNemar p-value of paired hits ``a`` vs ``b`` (1.0 when no case is discordant)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


@dataclass
class PointingGame:
    """Hits of named maps and of the centre baseline, case by case, on one set of crops."""

    tolerance: float = 15.0
    hits: dict[str, list[bool]] = field(default_factory=dict)
    near: dict[str, list[bool]] = field(default_factory=dict)
    flat: dict[str, int] = field(default_factory=dict)
    chance: list[float] = field(default_factory=list)

    def add_case(self, lesion: np.ndarray, maps: dict[str, np.ndarray]) -> None:
        """Score one crop: ``lesion`` a boolean mask in crop pixels, ``maps`` crop-sized heat maps by name."""
        lesion = np.asarray(lesion, bool)
        if not lesion.any():
            raise ValueError("the lesion mask is empty in this crop: nothing to point at")
        distance = ndimage.distance_transform_edt(~lesion)
        centre = (lesion.shape[0] // 2, lesion.shape[1] // 2)
        for name, point in [(CENTRE, centre)] + [(name, peak(heat)) for name, heat in maps.items()]:
            self.hits.setdefault(name, []).append(bool(point is not None and lesion[point]))
            self.near.setdefault(name, []).append(bool(point is not None and distance[point] <= self.tolerance))
            self.flat[name] = self.flat.get(name, 0) + (point is None)
        self.chance.append(float(lesion.mean()))

    def summary(self) -> dict:
        """Per map: strict hit rate with its Wilson 95% CI, the tolerant rate, flat maps, and McNemar p vs the centre."""
        centre = self.hits[CENTRE]
        rows = {}
        for name, hits in self.hits.items():
            low, high = wilson_interval(hits)
            rows[name] = {"hit_rate": round(float(np.mean(hits)), 3), "ci95": [round(low, 3), round(high, 3)],
                          "within_tolerance": round(float(np.mean(self.near[name])), 3), "flat_maps": self.flat[name],
                          "mcnemar_p_vs_centre": None if name == CENTRE else mcnemar_exact(hits, centre)}
        return {"cases": len(centre), "tolerance_crop_px": self.tolerance,
                "chance": round(float(np.mean(self.chance)), 3), "maps": rows}


def markdown_rows(summary: dict, label: str) -> list[str]:
    """Table rows ``| label | map | strict hit [95% CI] | within tolerance | McNemar p vs centre |`` of one summary."""
    rows = []
    for name, row in summary["maps"].items():
        p = row["mcnemar_p_vs_centre"]
        better = "" if p is None else (" (better)" if row["hit_rate"] > summary["maps"][CENTRE]["hit_rate"] else " (worse)")
        rows.append(f"| {label} | {'centre of the crop (baseline)' if name == CENTRE else name} | "
                    f"{row['hit_rate']:.2f} [{row['ci95'][0]:.2f}-{row['ci95'][1]:.2f}] | {row['within_tolerance']:.2f} | "
                    f"{'—' if p is None else f'{p:.2g}{better}'} |")
    return rows


def lesion_in_crop(mask: np.ndarray, box: CropBox, out_size: int = DEFAULT_OUT_SIZE) -> np.ndarray:
    """An image's lesion mask in the pixels of its ``box`` crop (nearest neighbour)."""
    return extract_square_crop(np.asarray(mask, np.float32), box, out_size, pad_value=0.0, order=0) > 0.5


def us_crop_pair(image: USImage, mask: np.ndarray, rng: np.random.Generator,
                 lesion_fraction: float | None = DEFAULT_LESION_FRACTION,
                 out_size: int = DEFAULT_OUT_SIZE) -> list[tuple[LesionCrop, np.ndarray]]:
    """The centred US crop (as ``us_lesion_crop`` cuts it) and a displaced one, each with its lesion in crop pixels."""
    cleaned = USImage(remove_overlays(image.pixels)[0], image.pixel_spacing_mm)  # overlays removed once for both
    centred = us_lesion_crop(cleaned, mask=mask, lesion_fraction=lesion_fraction, out_size=out_size, clean_overlays=False)
    box = displaced_box(centred.box, lesion_box_from_mask(mask), rng)
    displaced = LesionCrop(np.clip(extract_square_crop(cleaned.grey(), box, out_size), 0.0, 1.0).astype(np.float32), box)
    return [(crop, lesion_in_crop(mask, crop.box, out_size)) for crop in (centred, displaced)]


def model_maps(model, modality: str, crops: dict[str, LesionCrop], label: int,
               out_size: int = DEFAULT_OUT_SIZE) -> dict[str, dict[str, np.ndarray]]:
    """Per branch, crop-sized maps of a loaded model: those ``predict_case`` shows (attention; Grad-CAM for the
    model's decision at its validation threshold) and Grad-CAM for the true class ``label`` (``TRUE_CLASS``)."""
    image = model_input(modality, crops, model.spatial_size)
    branches = [b for b in BRANCHES[modality] if b in crops]
    _, shown, decision = run_model(model, image, branches, HEATMAP_KINDS, class_index=None)
    maps = crop_heatmaps(shown, out_size)
    true_class = maps if label == decision else crop_heatmaps(
        run_model(model, image, branches, ("gradcam",), class_index=label)[1], out_size)
    for branch in branches:
        maps[branch][TRUE_CLASS] = true_class[branch]["gradcam"]
    return maps


def bundle_record(data: str, summaries: dict[str, dict[str, dict]]) -> dict:
    """What ``breastfusion predict`` reports of a pointing game (``runs/<model>/pointing_game.json``):
    per branch and shown map kind, per crop set, the hit rate, its CI and the centre's rate.

    ``summaries[crops][branch]`` is a ``PointingGame.summary()``."""
    maps: dict = {}
    for crops, branches in summaries.items():
        for branch, summary in branches.items():
            centre = summary["maps"][CENTRE]["hit_rate"]
            for kind in HEATMAP_KINDS:
                row = summary["maps"][kind]
                maps.setdefault(branch, {}).setdefault(kind, {})[crops] = {
                    "hit_rate": row["hit_rate"], "ci95": row["ci95"], "centre": centre,
                    "mcnemar_p_vs_centre": row["mcnemar_p_vs_centre"], "cases": summary["cases"]}
    return {"data": data, "maps": maps}


TABLE_HEADER = ["| crops | map | strict hit [95% CI] | within tolerance | McNemar p vs centre |", "|---|---|---|---|---|"]


def add_game_options(parser, save_help: str) -> None:
    """The options both pointing-game scripts take: tolerance, Grad-CAM layer, JSON output, saving in the bundle."""
    parser.add_argument("--tolerance", type=float, default=15.0,
                        help="crop pixels (of 300) around the lesion that also count as a hit in the tolerant rate")
    parser.add_argument("--gradcam-layer", help="Grad-CAM target inside each branch's backbone instead of the "
                        "default (heatmaps.TARGET_LAYERS), e.g. _blocks.10 for Lite0's 1/16 stage")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--save-in-bundle", action="store_true", help=save_help)


def parse_game_options(parser, argv: list[str] | None):
    """``parser.parse_args(argv)`` with the tolerance checked (0 or more crop pixels)."""
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error(f"--tolerance must be 0 or more crop pixels, got {args.tolerance:g}")
    return args
