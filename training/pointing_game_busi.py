"""Pointing game on real ultrasound (BUSI): do the US model's heat maps peak on the lesion, more often than the crop centre?

Every BUSI case is scored by the cross-validation fold model that did not see it (``bench_busi.py cv
--keep-models`` keeps ``OPTION/fold_k/models/us/model.pt``), on two crops: the **centred** crop (as
prepared for training, and as ``predict_case`` cuts it from a mask) and a **displaced** crop (the same
square moved by a random offset that keeps the whole lesion inside, ``crop.displaced_box``), where
the crop centre is no longer a good guess. The lesion mask is mapped into each crop with the crop's
own box. The maps are the ones ``predict_case`` shows (CBAM attention; Grad-CAM for the model's
decision), plus Grad-CAM for the true class (the usual pointing-game rule). Each is compared with
the centre of the crop by the exact McNemar test (``evaluation.pointing``).

    python training/pointing_game_busi.py --dataset runs/bench_busi/data/removed \\
        --models runs/bench_busi/overlays_removed/lite0_last_stage [--cases-per-fold 20] [--seed 0] \\
        [--gradcam-layer _blocks.14] [--pair] [--json out.json] [--save-in-bundle] [--save-in BUNDLE]

``--pair`` scores each case with the ensemble of the two fold models that did not train on it (fold k's
model and fold k-1's, which validated on fold k; ``networks.EnsembleClassifier``): its maps are the mean
of the two members' maps, as a deliverable ensemble's are.

``--save-in-bundle`` writes the result into every fold's ``runs/us/pointing_game.json``, where
``breastfusion predict`` finds it and states the measured hit rate in result.json and report.html.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from BreastFusionLib.crop import DEFAULT_LESION_FRACTION
from BreastFusionLib.evaluation.pointing import (TABLE_HEADER, PointingGame, add_game_options, bundle_record,
                                                 markdown_rows, model_maps, parse_game_options, us_crop_pair)
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.calibration import apply_temperature
from BreastFusionLib.networks import EnsembleClassifier
from BreastFusionLib.inference.loaded_bundle import load_bundle
from BreastFusionLib.inference.heatmaps import TARGET_LAYERS, model_heatmaps
from BreastFusionLib.us.io import load_lesion_mask, load_us_image

CROPS = ("centred", "displaced")


def fold_models(models: Path) -> dict[int, Path]:
    """Fold number -> bundle folder of each ``fold_k/models/us/model.pt`` that ``bench_busi.py cv --keep-models`` kept."""
    folds = {int(p.parent.parent.parent.name.split("_")[1]): p.parent.parent.parent
             for p in sorted(models.glob("fold_*/models/us/model.pt"))}
    if not folds:
        raise UserInputError(f"{models}: no fold_k/models/us/model.pt (run bench_busi.py cv --keep-models)")
    return folds


def pair_members(folds: dict[int, Path], fold: int, fold_count: int) -> list:
    """The loaded models of fold ``fold`` and of fold k-1 (mod ``fold_count``), which validated on fold k: the two
    cross-validation models that did not train on fold k's cases."""
    previous = (fold - 1) % fold_count
    if previous not in folds:
        raise UserInputError(f"--pair: test fold {fold} needs the model of fold {previous}, which validated on it")
    return [load_bundle(folds[k], ["us"]).models["us"] for k in (fold, previous)]


def pair_threshold(members: list) -> float:
    """The pair's operating point: the mean of its members' calibrated thresholds."""
    return float(np.mean([apply_temperature(m.threshold, m.temperature) for m in members]))


def pair_model(folds: dict[int, Path], fold: int, fold_count: int):
    """The ensemble of ``pair_members`` as a loaded model: the mean of their calibrated probabilities, the
    ``pair_threshold``, temperature 1."""
    own, other = pair_members(folds, fold, fold_count)
    network = EnsembleClassifier([own.network, other.network], [own.temperature, other.temperature]).eval()
    return replace(own, network=network, threshold=pair_threshold([own, other]), temperature=1.0, heatmaps=None)


def read_prepared(dataset: Path) -> tuple[dict[str, dict], list[dict], float | None]:
    """A ``prepare_busi.py`` folder: raw rows by case id (image and mask paths), crop rows (folds, labels), lesion fraction."""
    with (dataset / "raw_manifest.csv").open(newline="") as handle:
        raw = {row["case_id"]: row for row in csv.DictReader(handle)}
    with (dataset / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    report = json.loads((dataset / "import_report.json").read_text())
    return raw, rows, report.get("lesion_fraction", DEFAULT_LESION_FRACTION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a folder written by training/prepare_busi.py")
    parser.add_argument("--models", type=Path, required=True, help="bench_busi.py's OUT/TAG/OPTION folder (fold_k/ inside)")
    parser.add_argument("--cases-per-fold", type=int, help="only the first N cases of each test fold (a quick check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the displaced crops' offsets")
    parser.add_argument("--pair", action="store_true", help="score with the ensemble of the two fold models that "
                        "did not train on the case (mean maps)")
    parser.add_argument("--save-in", type=Path, help="also write runs/us/pointing_game.json into this bundle (e.g. "
                        "the deliverable ensemble of bench_busi.py ensemble, with --pair), where predict finds it")
    add_game_options(parser, "write runs/us/pointing_game.json into every fold")
    args = parse_game_options(parser, argv)
    try:
        folds = fold_models(args.models)
        raw, rows, lesion_fraction = read_prepared(args.dataset)
    except (UserInputError, OSError) as error:
        parser.error(str(error))
    rng = np.random.default_rng(args.seed)
    games = {crops: PointingGame(args.tolerance) for crops in CROPS}
    started, backbone, spatial_size = time.perf_counter(), None, None
    if args.pair and args.save_in_bundle:
        parser.error("--save-in-bundle writes into each fold's own model: it does not take --pair (see --save-in)")
    if args.save_in and not (args.save_in / "runs" / "us").is_dir():
        parser.error(f"--save-in {args.save_in}: not a bundle with a trained us model (no runs/us/)")
    fold_count = len({int(row["fold"]) for row in rows})
    for fold, root in folds.items():
        try:
            model = pair_model(folds, fold, fold_count) if args.pair else load_bundle(root, ["us"]).models["us"]
        except UserInputError as error:
            parser.error(str(error))
        backbone, spatial_size = model.backbone, model.spatial_size
        try:
            model_heatmaps(model, args.gradcam_layer)
        except UserInputError as error:
            parser.error(str(error))
        cases = [row for row in rows if int(row["fold"]) == fold][: args.cases_per_fold]
        for row in cases:
            case = raw[row["case_id"]]
            image = load_us_image(case["us_image"])
            mask = load_lesion_mask([case["us_mask"]], image.shape)
            label = 1 if row["label"] == "malignant" else 0
            for crops, (crop, lesion) in zip(CROPS, us_crop_pair(image, mask, rng, lesion_fraction)):
                games[crops].add_case(lesion, model_maps(model, "us", {"us": crop}, label)["us"])
        print(f"fold {fold}: {len(cases)} cases ({time.perf_counter() - started:.0f} s)", flush=True)
    summaries = {crops: game.summary() for crops, game in games.items()}
    scorer = ("the ensemble of the two cross-validation fold models that did not see it" if args.pair
              else "the cross-validation fold model that did not see it")
    report = {"date": time.strftime("%Y-%m-%d"), "data": f"BUSI, {summaries['centred']['cases']} cases, each scored by "
              f"{scorer} ({args.models.name})",
              "backbone": backbone, "spatial_size": spatial_size,
              "gradcam_layer": args.gradcam_layer or TARGET_LAYERS[backbone], "displaced_seed": args.seed,
              "seconds": round(time.perf_counter() - started, 1), "crops": summaries}
    print("\n".join(TABLE_HEADER + [line for crops, s in summaries.items() for line in markdown_rows(s, crops)]))
    print("chance (lesion area / crop area): " + ", ".join(f"{c} {s['chance']:.2f}" for c, s in summaries.items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    record = bundle_record(report["data"], {crops: {"us": summary} for crops, summary in summaries.items()})
    for root in (list(folds.values()) if args.save_in_bundle else []) + ([args.save_in] if args.save_in else []):
        (root / "runs" / "us" / "pointing_game.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
