"""Pointing game for a model's heat maps on synthetic cases: do they peak on the lesion, more often than the crop centre?

For each synthetic case (a cohort the demo did not train on: seed 11 by default) the model (``--model``:
fusion by default, or us / ct) sees its crops, the US crop (from the lesion mask) and/or the CT crop
(around the true mass point), first **centred** as ``predict_case`` cuts them, then **displaced**: each
square moved by a random offset that keeps the whole lesion inside it (``crop.displaced_box``), where
the centre is no longer a good guess. The lesion in crop pixels: US, the mask mapped with the crop's
box; CT, the pixels within the lesion radius (mm, axial plane) of the mass point. The maps are those
``predict_case`` shows (CBAM attention; Grad-CAM for the model's decision) and Grad-CAM for the true
class; each is compared with the crop centre by the exact McNemar test, with Wilson 95% intervals and
the tolerant (15 px) rate (``evaluation.pointing``). Any backbone ``load_bundle`` detects works.

    python training/pointing_game.py --bundle out/demo_lite0/bundle [--model fusion] [--cases 200] [--seed 11]
        [--tolerance 15] [--gradcam-layer _blocks.10] [--json out.json] [--save-in-bundle]

``--save-in-bundle`` writes the result into the bundle's ``runs/<model>/pointing_game.json``, where
``breastfusion predict`` finds it and states the measured hit rate in result.json and report.html.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np

from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.crop import DEFAULT_OUT_SIZE, LesionCrop, displaced_box, extract_square_crop
from BreastFusionLib.ct.crop import apply_window, ct_axial_crop
from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.pointing import (TABLE_HEADER, PointingGame, add_game_options, bundle_record,
                                                 markdown_rows, model_maps, parse_game_options, us_crop_pair)
from BreastFusionLib.inference.loaded_bundle import load_bundle
from BreastFusionLib.inference.heatmaps import BRANCHES, model_heatmaps
from BreastFusionLib.synthetic.cohort import generate_cohort, read_case

CROPS = ("centred", "displaced")


def _ct_lesion(volume: CTVolume, crop: LesionCrop, point: np.ndarray, radius_mm: float) -> np.ndarray:
    """Crop pixels of ``crop`` (axial slice ``crop.slice_index``) within ``radius_mm`` of ``point`` in the axial plane."""
    grid = np.arange(DEFAULT_OUT_SIZE, dtype=float)
    rows, cols = crop.box.to_image(*np.meshgrid(grid, grid, indexing="ij"), DEFAULT_OUT_SIZE)
    ijk = np.stack([cols, rows, np.full_like(rows, crop.slice_index)], axis=-1)  # rows = j, cols = i of hu[k]
    ras = volume.ijk_to_ras_points(ijk)
    return np.hypot(ras[..., 0] - point[0], ras[..., 1] - point[1]) <= radius_mm


def ct_crop_pair(volume: CTVolume, point: np.ndarray, diameter_mm: float,
                 rng: np.random.Generator) -> list[tuple[LesionCrop, np.ndarray]]:
    """The centred CT crop (as ``predict_case`` cuts it) and a displaced one, each with its lesion in crop pixels."""
    centred = ct_axial_crop(volume, point, lesion_diameter_mm=diameter_mm)
    i, j, _ = volume.ras_to_ijk(np.asarray(point, dtype=float))  # the lesion's centre: row j, column i of hu[k]
    half_rows, half_cols = diameter_mm / 2 / volume.spacing[1], diameter_mm / 2 / volume.spacing[0]
    lesion_box = (j - half_rows + 0.5, i - half_cols + 0.5, j + half_rows + 0.5, i + half_cols + 0.5)
    box = displaced_box(centred.box, lesion_box, rng)
    windowed = apply_window(volume.hu[centred.slice_index])
    displaced = LesionCrop(np.clip(extract_square_crop(windowed, box, DEFAULT_OUT_SIZE), 0.0, 1.0).astype(np.float32),
                           box, slice_index=centred.slice_index)
    return [(crop, _ct_lesion(volume, crop, point, diameter_mm / 2)) for crop in (centred, displaced)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--model", choices=("us", "ct", "fusion"), default="fusion")
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11, help="synthetic cohort seed (the demo trains on seed 0)")
    parser.add_argument("--spatial-size", type=int)
    add_game_options(parser, "write runs/<model>/pointing_game.json into the bundle")
    args = parse_game_options(parser, argv)
    try:
        bundle = load_bundle(args.bundle, [args.model], spatial_size=args.spatial_size)
        model = bundle.models[args.model]
        layer = model_heatmaps(model, args.gradcam_layer).layer
    except UserInputError as error:
        parser.error(str(error))
    rng = np.random.default_rng(args.seed)
    branches = list(BRANCHES[args.model])
    games = {(crops, branch): PointingGame(args.tolerance) for crops in CROPS for branch in branches}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        rows = load_manifest(generate_cohort(folder, cases=args.cases, seed=args.seed, workers=1))
        for row in rows:
            image, mask, volume, point = read_case(row)
            pairs = {"us": us_crop_pair(image, mask, rng), "ct": ct_crop_pair(volume, point, row["lesion_diameter_mm"], rng)}
            pairs = {branch: pairs[branch] for branch in branches}
            for index, crops in enumerate(CROPS):
                maps = model_maps(model, args.model, {b: pairs[b][index][0] for b in pairs}, row["label"])
                for branch in pairs:
                    games[(crops, branch)].add_case(pairs[branch][index][1], maps[branch])
    summaries = {crops: {branch: games[(crops, branch)].summary() for branch in branches} for crops in CROPS}
    report = {
        "date": time.strftime("%Y-%m-%d"), "cases": len(rows), "seed": args.seed,
        "data": f"synthetic cohort (seed {args.seed}), {len(rows)} cases, {args.model} model", "backbone": model.backbone,
        "gradcam_layer": layer, "spatial_size": model.spatial_size, "seconds": round(time.perf_counter() - start, 1),
        "crops": summaries,
    }
    print(f"pointing game, {args.model} model ({model.backbone}, Grad-CAM on {layer}), {len(rows)} synthetic cases "
          f"(seed {args.seed}), input {model.spatial_size}x{model.spatial_size}")
    print("\n".join(TABLE_HEADER + [line for crops in CROPS for branch in branches
                                    for line in markdown_rows(summaries[crops][branch], f"{crops}, {branch.upper()}")]))
    print("chance (lesion area / crop area): " + ", ".join(
        f"{crops} {branch.upper()} {summaries[crops][branch]['chance']:.2f}" for crops in CROPS for branch in branches))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.save_in_bundle:
        (bundle.root / "runs" / args.model / "pointing_game.json").write_text(
            json.dumps(bundle_record(report["data"], summaries), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
