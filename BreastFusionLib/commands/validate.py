"""``breastfusion validate MANIFEST``: check a cohort manifest and summarise it, or list every problem."""

from __future__ import annotations

import argparse
from collections import Counter

from BreastFusionLib.cohort.manifest import load_manifest

HELP = "check a cohort manifest (columns, labels, ids, files, locations) and summarise it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest CSV, one row per lesion")


def run(args: argparse.Namespace) -> int:
    """Print a one-line summary; problems are raised as UserInputError and printed by the CLI."""
    cases = load_manifest(args.manifest)
    labels = Counter(case["label_name"] for case in cases)
    splits = Counter(case.get("split") or "unassigned" for case in cases)
    print(
        f"OK: {len(cases)} cases ({labels['benign']} benign, {labels['malignant']} malignant), "
        f"US: {sum(bool(c.get('us_image')) for c in cases)}, CT: {sum(bool(c.get('ct_image')) for c in cases)}, "
        f"splits: {dict(sorted(splits.items()))}"
    )
    return 0
