"""Domain-shift suite on BUSI: the out-of-fold AUC when each raw image is changed the ways scanners differ.

Every BUSI case of a fold that has a kept model (``bench_busi.py cv --keep-models``) is scored by
that fold's model, which did not see it, once clean and once under each shift of
``evaluation.domain_shift.SHIFTS`` at each of its named severities. The shift is applied to the
raw image (and its lesion mask, for geometric shifts and the crop margin), as another scanner's
frame would reach the pipeline; then comes the same preprocessing as ``predict_case``: overlay
removal and the lesion crop from the mask (``us_lesion_crop``, the dataset's lesion fraction) and
the model's transforms (``model_input``), and the network in the precision predict_case uses
(``--precision auto``: bf16 autocast on a CPU with native bf16, else fp32; the AUC does not depend
on the calibration temperature). The random patterns (speckle, TGC sliders, marks) are seeded per
case, so a case gets the same pattern in any subset. Per model option: the pooled AUC with its DeLong CI, the paired DeLong
difference from the clean AUC on the same images, and with two options the difference of their
changes (second minus first; positive: the second loses less), by a DeLong contrast.

    python training/bench_domain_shift.py --dataset runs/bench_busi/data/removed \\
        --models runs/bench_busi/overlays_removed/lite0_last_stage runs/bench_busi/overlays_removed/lite0_last_stage_off_centre \\
        [--shifts blur jpeg ...] [--cases-per-fold 20] [--seed 0] [--precision auto|fp32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.evaluation.delong import delong_auc, delong_contrast, delong_test
from BreastFusionLib.evaluation.domain_shift import SHIFTS, apply_shift
from BreastFusionLib.inference.loaded_bundle import load_bundle
from BreastFusionLib.inference.case import model_input
from BreastFusionLib.inference.heatmaps import MALIGNANT
from BreastFusionLib.inference.runtime import model_device, prepare_network
from BreastFusionLib.precision import PRECISIONS, autocast
from BreastFusionLib.us.crop import us_lesion_crop
from BreastFusionLib.us.io import USImage, load_lesion_mask, load_us_image
from pointing_game_busi import fold_models, read_prepared  # the script beside this one

CLEAN = ("clean", "")


def _case_hash(case_id: str) -> int:
    """A fixed number per case: seeds its random patterns, and orders a fold's cases (classes mixed) for --cases-per-fold."""
    return zlib.crc32(case_id.encode())


def _conditions(shifts: list[str]) -> list[tuple[str, str]]:
    return [CLEAN] + [(name, severity) for name in shifts for severity in SHIFTS[name].severities]


def _case_scores(models: list, image: np.ndarray, mask: np.ndarray, conditions, lesion_fraction, seed: int,
                 case_id: str, precision: str) -> np.ndarray:
    """Malignancy probabilities (models, conditions) of one raw image under every condition."""
    crops = []
    for name, severity in conditions:
        rng = np.random.default_rng([seed, _case_hash(case_id)])  # the same pattern whatever the subset
        shifted, lesion = (image, mask) if (name, severity) == CLEAN else apply_shift(name, severity, image, mask, rng)
        crops.append(us_lesion_crop(USImage(shifted), mask=lesion, lesion_fraction=lesion_fraction))
    batches = {size: torch.cat([model_input("us", {"us": crop}, size) for crop in crops])
               for size in {model.spatial_size for model in models}}
    scores = []
    for model in models:
        prepare_network(model)
        with torch.no_grad(), autocast(model_device(model), precision, model.spatial_size):
            logits = model.network(batches[model.spatial_size].to(model_device(model)))
        scores.append(torch.softmax(logits.float(), dim=1)[:, MALIGNANT].cpu().numpy())
    return np.stack(scores)


def summarise(labels: list[int], scores: np.ndarray, options: list[str], conditions) -> list[dict]:
    """Per condition and option: AUC with its DeLong CI and the paired difference from clean (and between options)."""
    rows = []
    for index, (name, severity) in enumerate(conditions):
        row = {"shift": name, "severity": severity, "description": SHIFTS[name].description if name in SHIFTS else "",
               "options": {}}
        for option, option_scores in zip(options, scores):
            auc = delong_auc(labels, option_scores[:, index])
            entry = {"auc": round(auc["value"], 4), "ci95": [round(v, 4) for v in auc["ci"]]}
            if index:
                test = delong_test(labels, option_scores[:, index], option_scores[:, 0])
                entry.update(difference=round(test["difference"], 4), p_vs_clean=test["p_value"])
            row["options"][option] = entry
        if index and len(options) == 2:
            contrast = delong_contrast(labels, [scores[1][:, index], scores[1][:, 0], scores[0][:, index], scores[0][:, 0]],
                                       [1.0, -1.0, -1.0, 1.0])
            row["second_minus_first"] = {"difference": round(contrast["value"], 4), "p": contrast["p_value"]}
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], options: list[str]) -> list[str]:
    """The table: per shift and severity, each option's AUC [CI] and change from clean (p); with two options their contrast."""
    header = "| shift | severity | " + " | ".join(f"{o} AUC [95% CI] | change (p)" for o in options)
    header += " | second minus first change (p) |" if len(options) == 2 else " |"
    lines = [header, "|" + "---|" * (2 + 2 * len(options) + (len(options) == 2))]
    for row in rows:
        cells = [row["shift"], row["severity"] or "—"]
        for option in options:
            entry = row["options"][option]
            cells.append(f"{entry['auc']:.3f} [{entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f}]")
            cells.append(f"{entry['difference']:+.3f} ({entry['p_vs_clean']:.2g})" if "difference" in entry else "—")
        if len(options) == 2:
            contrast = row.get("second_minus_first")
            cells.append(f"{contrast['difference']:+.3f} ({contrast['p']:.2g})" if contrast else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a folder written by training/prepare_busi.py")
    parser.add_argument("--models", type=Path, nargs="+", required=True,
                        help="one or more bench_busi.py OUT/TAG/OPTION folders (fold_k/ inside), compared on the same cases")
    parser.add_argument("--shifts", nargs="+", choices=list(SHIFTS), default=list(SHIFTS), help="default: all")
    parser.add_argument("--cases-per-fold", type=int, help="only the first N cases of each test fold (a quick check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random patterns (speckle, TGC sliders, marks)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 autocast where the CPU has native bf16, as predict_case runs (default); fp32")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        folds = [fold_models(models) for models in args.models]
        raw, rows, lesion_fraction = read_prepared(args.dataset)
    except (UserInputError, OSError) as error:
        parser.error(str(error))
    common = sorted(set.intersection(*(set(f) for f in folds)))
    if not common:
        parser.error("the --models folders have no fold in common")
    options = [models.name for models in args.models]
    conditions = _conditions(args.shifts)
    case_ids, labels, scores, started = [], [], [], time.perf_counter()
    for fold in common:
        models = [load_bundle(option_folds[fold], ["us"]).models["us"] for option_folds in folds]
        cases = sorted((row for row in rows if int(row["fold"]) == fold), key=lambda row: _case_hash(row["case_id"]))[: args.cases_per_fold]
        for row in cases:
            case = raw[row["case_id"]]
            image = load_us_image(case["us_image"])
            mask = load_lesion_mask([case["us_mask"]], image.shape)
            scores.append(_case_scores(models, image.grey(), mask, conditions, lesion_fraction, args.seed, row["case_id"],
                                        args.precision))
            labels.append(1 if row["label"] == "malignant" else 0)
            case_ids.append(row["case_id"])
        print(f"fold {fold}: {len(cases)} cases ({time.perf_counter() - started:.0f} s)", flush=True)
    if len(set(labels)) < 2:
        parser.error(f"the {len(labels)} cases scored are all of one class: an AUC needs both")
    all_scores = np.stack(scores, axis=1)  # (options, cases, conditions)
    table = summarise(labels, all_scores, options, conditions)
    report = {"date": time.strftime("%Y-%m-%d"), "data": f"BUSI, {len(labels)} cases ({sum(labels)} malignant) of folds "
              f"{', '.join(map(str, common))}, each scored by the fold model that did not see it",
              "options": options, "lesion_fraction": lesion_fraction, "seed": args.seed,
              "seconds": round(time.perf_counter() - started, 1), "conditions": table,
              "cases": {"case_id": case_ids, "label": labels, "probability": {  # per option, condition: one per case
                  option: {f"{name} {severity}".strip(): [round(float(v), 5) for v in option_scores[:, index]]
                           for index, (name, severity) in enumerate(conditions)}
                  for option, option_scores in zip(options, all_scores)}}}
    print("\n".join(markdown_table(table, options)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
