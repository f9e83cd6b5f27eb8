"""Pointing game for the fusion model's heat maps on synthetic cases (where is the map's maximum?).

For each case the fusion model predicts from the US image (lesion crop from its mask) and the CT
(crop at the true mass point); a heat map "hits" when its maximum lies inside the lesion: US, inside
the lesion mask; CT, within the lesion radius (in mm, in the axial plane) of the mass point. Grad-CAM
is computed for the case's true class (the usual pointing-game protocol). Beside this strict test,
a second hit rate counts a maximum within ``--tolerance`` pixels of the lesion as a hit, measured in
the 300x300 crop the model sees (the original pointing game of Zhang et al., ECCV 2016, allows
15 px): it separates maps that peak on the lesion's edge from maps that peak elsewhere. The chance level is the
lesion's share of the crop area (a map maximum placed at random inside the crop). Each hit rate comes
with its Wilson 95% interval: with 50 cases, 78% means anything from about 65% to 87%. Any backbone
``load_bundle`` detects (CBAM-ResNet-50 or CBAM-EfficientNet-Lite0) works.

    python training/pointing_game.py --bundle out/demo/bundle [--cases 50] [--seed 11] [--tolerance 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.stats import binomtest

from BreastFusionLib.crop import DEFAULT_OUT_SIZE
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.bundle import load_bundle
from BreastFusionLib.inference.case import HEATMAP_KINDS, predict_case
from BreastFusionLib.inference.heatmaps import TARGET_LAYERS, GradCAMMaps
from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.synthetic.cohort import generate_cohort, read_case


def _crop_distance(lesion: np.ndarray, box) -> np.ndarray:
    """Distance of every image pixel to the lesion, in pixels of the model's crop (0 inside the lesion)."""
    scale = (DEFAULT_OUT_SIZE / box.side_rows, DEFAULT_OUT_SIZE / box.side_cols)
    return ndimage.distance_transform_edt(~lesion, sampling=scale)


def _argmax(heat: np.ndarray) -> tuple[int, int] | None:
    """Row, col of the map's maximum; None for a map without any signal (all equal)."""
    return None if heat.max() <= heat.min() else tuple(int(v) for v in np.unravel_index(np.argmax(heat), heat.shape))


def wilson_interval(hits: list[bool]) -> tuple[float, float]:
    """Wilson score 95% interval of a hit rate."""
    interval = binomtest(int(sum(hits)), len(hits)).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11, help="synthetic cohort seed (the demo trains on seed 0)")
    parser.add_argument("--spatial-size", type=int)
    parser.add_argument("--tolerance", type=float, default=15.0,
                        help="crop pixels (of 300) around the lesion that also count as a hit in the tolerant rate")
    parser.add_argument("--gradcam-layer", help="Grad-CAM target inside each branch's backbone instead of the "
                        "default (heatmaps.TARGET_LAYERS), e.g. _blocks.10 for Lite0's 1/16 stage")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error(f"--tolerance must be 0 or more crop pixels, got {args.tolerance:g}")
    try:
        bundle = load_bundle(args.bundle, ["fusion"], spatial_size=args.spatial_size)
    except UserInputError as error:
        parser.error(str(error))
    fusion = bundle.models["fusion"]
    if args.gradcam_layer:
        layers = dict(fusion.network.us_branch.named_modules())
        if args.gradcam_layer not in layers:
            parser.error(f"--gradcam-layer {args.gradcam_layer!r} is not a module of the {fusion.backbone} branches")
        fusion.gradcam = GradCAMMaps(fusion.network, "fusion", fusion.backbone, layer=args.gradcam_layer)
    hits = {(b, k): [] for b in ("us", "ct") for k in HEATMAP_KINDS}
    near = {(b, k): [] for b in ("us", "ct") for k in HEATMAP_KINDS}
    chance = {"us": [], "ct": []}
    flat = {(b, k): 0 for b in ("us", "ct") for k in HEATMAP_KINDS}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        rows = load_manifest(generate_cohort(folder, cases=args.cases, seed=args.seed, workers=1))
        for row in rows:
            image, mask, volume, point = read_case(row)
            radius = row["lesion_diameter_mm"] / 2.0
            label = row["label"]
            result = predict_case(bundle, us_image=image, us_mask=mask, ct=volume, ct_point=point,
                                  models=["fusion"], class_index=label)
            k = result.crops["ct"].slice_index
            rows_ct, cols_ct = np.mgrid[0 : volume.hu.shape[1], 0 : volume.hu.shape[2]]
            ijk = np.stack([cols_ct, rows_ct, np.full_like(rows_ct, k)], axis=-1)
            ras = volume.ijk_to_ras_points(ijk)
            inside_ct = np.hypot(ras[..., 0] - point[0], ras[..., 1] - point[1]) <= radius
            lesion = {"us": mask, "ct": inside_ct}
            for branch in ("us", "ct"):
                box = result.crops[branch].box
                *_, region = box.image_pixels_in_crop(lesion[branch].shape, DEFAULT_OUT_SIZE)
                chance[branch].append(float((lesion[branch] & region).sum() / region.sum()))
                distance = _crop_distance(lesion[branch], box)
                for kind in HEATMAP_KINDS:
                    peak = _argmax(result.heatmaps["fusion"][branch][kind])
                    flat[(branch, kind)] += peak is None
                    hits[(branch, kind)].append(bool(peak is not None and lesion[branch][peak]))
                    near[(branch, kind)].append(bool(peak is not None and distance[peak] <= args.tolerance))
    report = {
        "date": time.strftime("%Y-%m-%d"), "cases": len(rows), "seed": args.seed,
        "backbone": fusion.backbone, "gradcam_layer": args.gradcam_layer or TARGET_LAYERS[fusion.backbone],
        "spatial_size": fusion.spatial_size, "seconds": round(time.perf_counter() - start, 1),
        "hit_rate": {f"{b}_{k}": round(float(np.mean(v)), 3) for (b, k), v in hits.items()},
        "hit_rate_ci95": {f"{b}_{k}": [round(v, 3) for v in wilson_interval(h)] for (b, k), h in hits.items()},
        "tolerance_crop_px": args.tolerance,
        "hit_rate_within_tolerance": {f"{b}_{k}": round(float(np.mean(v)), 3) for (b, k), v in near.items()},
        "flat_maps": {f"{b}_{k}": n for (b, k), n in flat.items()},
        "chance": {b: round(float(np.mean(v)), 3) for b, v in chance.items()},
    }
    print(f"pointing game, fusion model ({report['backbone']}, Grad-CAM on {report['gradcam_layer']}), {len(rows)} synthetic cases (seed {args.seed}), "
          f"input {report['spatial_size']}x{report['spatial_size']}")
    for branch in ("us", "ct"):
        for kind in HEATMAP_KINDS:
            key = f"{branch}_{kind}"
            low, high = report["hit_rate_ci95"][key]
            print(f"  {branch} {kind:<9}: hit rate {report['hit_rate'][key]:.2f} [95% CI {low:.2f}, {high:.2f}], "
                  f"within {args.tolerance:g} px {report['hit_rate_within_tolerance'][key]:.2f} "
                  f"(flat maps: {report['flat_maps'][key]}), "
                  f"chance {report['chance'][branch]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
