"""``breastfusion split MANIFEST``: write patient-level, label-stratified splits or folds into a manifest."""

from __future__ import annotations

import argparse
from collections import Counter

from BreastFusionLib.cohort.manifest import load_manifest, write_manifest
from BreastFusionLib.cohort.splits import assign_folds, assign_splits

HELP = "assign train/val/test splits or k folds by patient (and group), stratified by label"


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fractions needs 3 numbers like 0.7,0.1,0.2, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"--fractions needs 3 numbers (train,val,test), got {text!r}")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest CSV, one row per lesion")
    parser.add_argument("--fractions", type=_fractions, default=(0.7, 0.1, 0.2),
                        help="train,val,test fractions (default 0.7,0.1,0.2; the paper's 80/20 is 0.8,0,0.2)")
    parser.add_argument("--folds", type=int, default=None, help="k-fold cross-validation instead of fractions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write here instead of overwriting MANIFEST")


def run(args: argparse.Namespace) -> int:
    """Assign, write back and print the label counts per part."""
    cases = load_manifest(args.manifest)
    if args.folds is not None:
        cases, column = assign_folds(cases, args.folds, args.seed), "fold"
    else:
        cases, column = assign_splits(cases, args.fractions, args.seed), "split"
    target = write_manifest(cases, args.out or args.manifest)
    counts = Counter((case[column], case["label_name"]) for case in cases)
    for part in sorted({part for part, _ in counts}, key=str):
        print(f"{column} {part}: {counts[(part, 'benign')]} benign, {counts[(part, 'malignant')]} malignant")
    print(f"written: {target}")
    return 0
