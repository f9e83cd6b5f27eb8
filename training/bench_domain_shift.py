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

``--variants`` scores each model folder more ways, each a model option of its own: ``tta`` (the
logits averaged over the image and its horizontal and vertical flips, as ``predict_case(tta=True)``),
``pair`` (an ensemble of the two fold models that did not train on the case: the fold's own model,
and the model of fold k-1, which validated on fold k; the mean of their calibrated probabilities, as
``networks.EnsembleClassifier``) and ``pair_tta`` (both). Each option's calibration error (ECE, 10
bins, calibrated probabilities) is reported per condition; for ``pair`` options, how well the
members' disagreement flags the pair's wrong decisions (the AUC of |p1 - p2| for wrong against
right, at the mean of the two members' calibrated thresholds).

    python training/bench_domain_shift.py --dataset runs/bench_busi/data/removed \\
        --models runs/bench_busi/overlays_removed/lite0_last_stage runs/bench_busi/overlays_removed/lite0_last_stage_off_centre \\
        [--shifts blur jpeg ...] [--variants single tta pair pair_tta] [--cases-per-fold 20] [--seed 0] \\
        [--precision auto|fp32] [--json out.json]
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
from BreastFusionLib.inference.calibration import expected_calibration_error
from BreastFusionLib.inference.loaded_bundle import load_bundle
from BreastFusionLib.inference.case import model_input
from BreastFusionLib.inference.heatmaps import MALIGNANT
from BreastFusionLib.inference.runtime import model_device, prepare_network
from BreastFusionLib.precision import PRECISIONS, autocast
from BreastFusionLib.us.crop import us_lesion_crop
from BreastFusionLib.us.io import USImage, load_lesion_mask, load_us_image
from pointing_game_busi import fold_models, pair_members, pair_threshold, read_prepared  # the script beside this one

CLEAN = ("clean", "")
VARIANTS = ("single", "tta", "pair", "pair_tta")
VARIANT_NAMES = {"single": "", "tta": " +TTA", "pair": " pair", "pair_tta": " pair+TTA"}


def _case_hash(case_id: str) -> int:
    """A fixed number per case: seeds its random patterns, and orders a fold's cases (classes mixed) for --cases-per-fold."""
    return zlib.crc32(case_id.encode())


def _conditions(shifts: list[str]) -> list[tuple[str, str]]:
    return [CLEAN] + [(name, severity) for name in shifts for severity in SHIFTS[name].severities]


def _member_logits(models: list, crops: list, precision: str) -> dict[int, np.ndarray]:
    """Per loaded model (by id): logits (flips, conditions, classes) of the crops, unflipped then flipped left-right, up-down."""
    batches = {size: torch.cat([model_input("us", {"us": crop}, size) for crop in crops])
               for size in {model.spatial_size for model in models}}
    logits = {}
    for model in models:
        prepare_network(model)
        batch = batches[model.spatial_size].to(model_device(model))
        with torch.no_grad(), autocast(model_device(model), precision, model.spatial_size):
            logits[id(model)] = np.stack([model.network(b).float().cpu().numpy()
                                          for b in (batch, batch.flip(-1), batch.flip(-2))])
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def variant_probability(logits: list[np.ndarray], temperatures: list[float], tta: bool) -> np.ndarray:
    """Calibrated malignancy probabilities (conditions,) of one or two members' logits (flips, conditions, classes):
    one member: softmax of its logits (flip-averaged with ``tta``) / T; several: the mean of their calibrated
    probabilities, flip-averaged as log-probabilities with ``tta`` (what EnsembleClassifier gives run_model)."""
    flips = slice(None) if tta else slice(0, 1)
    if len(logits) == 1:
        return _softmax(logits[0][flips].mean(0) / temperatures[0])[:, MALIGNANT]
    mean = np.mean([_softmax(member[flips] / t) for member, t in zip(logits, temperatures)], axis=0)
    return _softmax(np.log(np.clip(mean, 1e-12, None)).mean(0))[:, MALIGNANT]


def _case_scores(scorers: list[tuple[list, bool]], image: np.ndarray, mask: np.ndarray, conditions, lesion_fraction,
                 seed: int, case_id: str, precision: str) -> np.ndarray:
    """Calibrated malignancy probabilities (scorers, conditions) of one raw image under every condition; a scorer
    is (its members, TTA or not)."""
    crops = []
    for name, severity in conditions:
        rng = np.random.default_rng([seed, _case_hash(case_id)])  # the same pattern whatever the subset
        shifted, lesion = (image, mask) if (name, severity) == CLEAN else apply_shift(name, severity, image, mask, rng)
        crops.append(us_lesion_crop(USImage(shifted), mask=lesion, lesion_fraction=lesion_fraction))
    models = list({id(m): m for members, _ in scorers for m in members}.values())
    logits = _member_logits(models, crops, precision)
    return np.stack([variant_probability([logits[id(m)] for m in members], [m.temperature for m in members], tta)
                     for members, tta in scorers])


def _scorers(option_folds: list[dict[int, Path]], fold: int, fold_count: int, variants: list[str]) -> tuple[list, list]:
    """The (members, tta) of every model option for test fold ``fold`` (per model folder, one per variant) and,
    with pair variants, each folder's pair (``pointing_game_busi.pair_members``: neither member trained on the
    fold's cases)."""
    scorers, pairs = [], []
    for folds in option_folds:
        pair = pair_members(folds, fold, fold_count) if {"pair", "pair_tta"} & set(variants) else None
        own = pair[0] if pair else load_bundle(folds[fold], ["us"]).models["us"]
        pairs += [pair] if pair else []
        scorers += [(pair if variant.startswith("pair") else [own], variant.endswith("tta")) for variant in variants]
    return scorers, pairs


def disagreement(labels, members: np.ndarray, thresholds) -> dict:
    """How well two members' disagreement |p1 - p2| flags their mean's wrong decisions (at ``thresholds``, per case):
    the AUC of the disagreement for wrong against right decisions, and the error rate of the most and least
    disagreeing fifth of the cases. ``members`` (2, cases): calibrated probabilities."""
    labels, thresholds = np.asarray(labels), np.asarray(thresholds)
    wrong = ((members.mean(0) >= thresholds).astype(int) != labels).astype(int)
    spread = np.abs(members[0] - members[1])
    order = np.argsort(spread)
    fifth = max(1, len(order) // 5)
    return {"errors": int(wrong.sum()), "cases": int(wrong.size),
            "auc_wrong_vs_right": round(delong_auc(wrong, spread)["value"], 4) if 0 < wrong.sum() < wrong.size else None,
            "error_rate_most_disagreeing_fifth": round(float(wrong[order[-fifth:]].mean()), 4),
            "error_rate_least_disagreeing_fifth": round(float(wrong[order[:fifth]].mean()), 4),
            "median_disagreement": round(float(np.median(spread)), 4)}


def summarise(labels: list[int], scores: np.ndarray, options: list[str], conditions) -> list[dict]:
    """Per condition and option: AUC with its DeLong CI and the paired difference from clean (and between options)."""
    rows = []
    for index, (name, severity) in enumerate(conditions):
        row = {"shift": name, "severity": severity, "description": SHIFTS[name].description if name in SHIFTS else "",
               "options": {}}
        for option, option_scores in zip(options, scores):
            auc = delong_auc(labels, option_scores[:, index])
            entry = {"auc": round(auc["value"], 4), "ci95": [round(v, 4) for v in auc["ci"]],
                     "ece": round(expected_calibration_error(labels, option_scores[:, index]), 4)}
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


def summary_table(rows: list[dict], options: list[str]) -> list[str]:
    """Per option: the clean AUC [CI] and ECE, and the largest AUC loss over the shifts (which one)."""
    lines = ["| model option | clean AUC [95% CI] | clean ECE | largest loss under a shift | shifts costing > 0.03 |",
             "|---|---|---|---|---|"]
    for option in options:
        clean = rows[0]["options"][option]
        shifted = [(row["options"][option]["difference"], f"{row['shift']} {row['severity']}".strip()) for row in rows[1:]]
        worst = min(shifted, default=(0.0, "—"))
        lines.append(f"| {option} | {clean['auc']:.3f} [{clean['ci95'][0]:.3f}-{clean['ci95'][1]:.3f}] | {clean['ece']:.3f} | "
                     f"{worst[0]:+.3f} ({worst[1]}) | {sum(d < -0.03 for d, _ in shifted)} of {len(shifted)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a folder written by training/prepare_busi.py")
    parser.add_argument("--models", type=Path, nargs="+", required=True,
                        help="one or more bench_busi.py OUT/TAG/OPTION folders (fold_k/ inside), compared on the same cases")
    parser.add_argument("--shifts", nargs="+", choices=list(SHIFTS), default=list(SHIFTS), help="default: all")
    parser.add_argument("--cases-per-fold", type=int, help="only the first N cases of each test fold (a quick check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random patterns (speckle, TGC sliders, marks)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["single"],
                        help="how each model folder scores a case: single (default), tta, pair, pair_tta")
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
    pairs = {"pair", "pair_tta"} & set(args.variants)
    fold_count = len({int(row["fold"]) for row in rows})
    if pairs:  # the pair of test fold k needs fold k-1's model, which validated on fold k
        common = [k for k in common if all((k - 1) % fold_count in f for f in folds)]
        if not common:
            parser.error("the pair variants need the models of two consecutive folds (k-1 validated on k) in each --models folder")
    options = [models.name + VARIANT_NAMES[variant] for models in args.models for variant in args.variants]
    conditions = _conditions(args.shifts)
    case_ids, labels, scores, member_scores, thresholds, started = [], [], [], [], [], time.perf_counter()
    for fold in common:
        scorers, pairs = _scorers(folds, fold, fold_count, args.variants)
        members = [([model], False) for pair in pairs for model in pair]  # each member alone, for the disagreement
        fold_thresholds = [pair_threshold(pair) for pair in pairs]
        cases = sorted((row for row in rows if int(row["fold"]) == fold), key=lambda row: _case_hash(row["case_id"]))[: args.cases_per_fold]
        for row in cases:
            case = raw[row["case_id"]]
            image = load_us_image(case["us_image"])
            mask = load_lesion_mask([case["us_mask"]], image.shape)
            case_scores = _case_scores(scorers + members, image.grey(), mask, conditions, lesion_fraction, args.seed,
                                       row["case_id"], args.precision)
            scores.append(case_scores[: len(scorers)])
            member_scores.append(case_scores[len(scorers):, 0])  # clean
            labels.append(1 if row["label"] == "malignant" else 0)
            case_ids.append(row["case_id"])
            thresholds.append(fold_thresholds)
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
    if pairs:
        member_array, threshold_array = np.array(member_scores), np.array(thresholds)  # (cases, 2 x folders), (cases, folders)
        report["pair_disagreement"] = {
            models.name: disagreement(labels, member_array[:, 2 * index: 2 * index + 2].T, threshold_array[:, index])
            for index, models in enumerate(args.models)}
    print("\n".join(markdown_table(table, options)))
    print("\n".join(summary_table(table, options)))
    for name, entry in report.get("pair_disagreement", {}).items():
        print(f"{name} pair: members' disagreement flags wrong decisions with AUC {entry['auc_wrong_vs_right']}; "
              f"error rate {entry['error_rate_most_disagreeing_fifth']:.1%} in the most disagreeing fifth, "
              f"{entry['error_rate_least_disagreeing_fifth']:.1%} in the least ({entry['errors']} errors of {entry['cases']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
