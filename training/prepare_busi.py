"""Import BUSI (Al-Dhabyani et al. 2020) for US-only training: a manifest, lesion masks, folds and crops.

    python training/prepare_busi.py ../shared/data/BUSI OUT [--folds 5] [--seed 0] [--keep-overlays]
        [--lesion-fraction 0.5 | --lesion-fraction none] [--context]

- ``normal`` images have no lesion and are left out (counted in the report);
- multi-mask files (``(N)_mask.png``, ``_mask_1``, ``_mask_2``) are OR-ed into one mask per image;
- **label conflict**: images whose pixels are identical but which are filed under both classes
  (``benign (433)`` = ``malignant (145)``) have no trustworthy label, so every copy is left out
  and listed in ``OUT/import_report.json``; identical images within one class are kept, grouped;
- BUSI has no patient ids (780 images from 600 patients): each image is its own patient, and the
  pairs of ``near_duplicates.csv`` become split groups so near-identical images never sit on both
  sides of a fold;
- duplicate-aware, label-stratified folds (``--folds``), then the 300x300 lesion crops with
  overlays removed (``--keep-overlays`` skips removal, for the shortcut check) into ``OUT/crops``;
  ``--lesion-fraction none`` crops the largest square the image holds around the lesion instead of
  scaling the crop to the lesion (a crop scale that does not encode lesion size, for the shortcut check);
  ``--context`` also writes each crop's context crop (twice the side; column ``us_context``) for
  off-centre training (``bench_busi.py`` option ``lite0_last_stage_off_centre``).

Writes ``OUT/raw_manifest.csv`` (original images and OR-ed masks), ``OUT/manifest.csv`` (the crops,
which the bundle trains on) and ``OUT/import_report.json``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from BreastFusionLib.cohort.manifest import write_manifest
from BreastFusionLib.cohort.prepare import prepare_cohort
from BreastFusionLib.cohort.splits import assign_folds
from BreastFusionLib.crop import DEFAULT_LESION_FRACTION
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.us.io import load_lesion_mask, load_us_image

CLASSES = ("benign", "malignant")
IMAGE_NAME = re.compile(r"^(benign|malignant|normal) \((\d+)\)\.png$")


def _pixel_hash(path: Path) -> str:
    return hashlib.sha1(np.asarray(Image.open(path).convert("L")).tobytes()).hexdigest()


def _groups(busi: Path) -> dict[str, str]:
    """Image (relative path) -> group name, joining the near-duplicate pairs transitively."""
    table = busi / "near_duplicates.csv"
    if not table.is_file():
        raise UserInputError(f"{table} not found: BUSI needs its near-duplicate list to split honestly")
    group_of: dict[str, str] = {}
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            a, b = row["image_a"], row["image_b"]
            group = group_of.get(a) or group_of.get(b) or f"dup{len(set(group_of.values())) + 1:02d}"
            old = {group_of.get(a), group_of.get(b)} - {None, group}
            for image, current in list(group_of.items()):
                if current in old:
                    group_of[image] = group
            group_of[a] = group_of[b] = group
    return group_of


def collect_cases(busi: Path, out: Path) -> tuple[list[dict], dict]:
    """Cases with OR-ed masks written to ``out/masks``; and the import report."""
    groups = _groups(busi)
    found: dict[str, list[Path]] = {name: [] for name in (*CLASSES, "normal")}
    for name in found:
        found[name] = sorted(p for p in (busi / name).glob("*.png") if IMAGE_NAME.match(p.name))
    if not found["benign"] or not found["malignant"]:
        raise UserInputError(f"{busi}: expected benign/ and malignant/ folders of '<class> (N).png' images")
    by_hash: dict[str, set[str]] = defaultdict(set)
    hashes = {}
    for label in CLASSES:
        for path in found[label]:
            hashes[path] = _pixel_hash(path)
            by_hash[hashes[path]].add(label)
    conflicts = sorted(f"{p.parent.name}/{p.name}" for p, h in hashes.items() if len(by_hash[h]) > 1)
    cases = []
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for label in CLASSES:
        for path in found[label]:
            relative = f"{label}/{path.name}"
            if relative in conflicts:
                continue
            number = IMAGE_NAME.match(path.name).group(2)
            mask_files = sorted(path.parent.glob(f"{label} ({number})_mask*.png"))
            if not mask_files:
                raise UserInputError(f"{path}: no lesion mask file found beside the image")
            mask = load_lesion_mask(mask_files, load_us_image(path).shape)
            mask_path = out / "masks" / f"busi_{label}_{number}_mask.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
            case_id = f"busi_{label}_{number}"
            cases.append({"case_id": case_id, "patient_id": case_id, "label": CLASSES.index(label), "label_name": label,
                          "us_image": str(path.resolve()), "us_mask": str(mask_path.resolve()),
                          "group": groups.get(relative, ""), "source": relative, "n_mask_files": len(mask_files)})
    report = {"images": {name: len(paths) for name, paths in found.items()},
              "excluded_normal": len(found["normal"]),
              "excluded_label_conflict": conflicts,
              "multi_mask_images": sum(case["n_mask_files"] > 1 for case in cases),
              "near_duplicate_groups": len(set(groups.values())),
              "cases": {label: sum(case["label_name"] == label for case in cases) for label in CLASSES}}
    return cases, report


def _lesion_fraction(text: str) -> float | None:
    """A number in (0, 1], or 'none' (the largest square crop the image holds)."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"lesion fraction must be in (0, 1] or 'none', got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("busi", type=Path, help="the BUSI folder (benign/, malignant/, normal/, near_duplicates.csv)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-overlays", action="store_true", help="do not remove burned-in overlays")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--context", action="store_true", help="also write context crops (for off-centre training)")
    parser.add_argument("--lesion-fraction", type=_lesion_fraction, default=DEFAULT_LESION_FRACTION,
                        help="lesion side / crop side (default %(default)s), or 'none': the largest square in the image")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        cases, report = collect_cases(args.busi, args.out)
        cases = assign_folds(cases, args.folds, args.seed)
        raw = write_manifest(cases, args.out / "raw_manifest.csv")
        crops = prepare_cohort(str(raw), str(args.out), size=args.size, lesion_fraction=args.lesion_fraction,
                               workers=args.workers, clean_overlays=not args.keep_overlays, context=args.context)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report.update({"folds": args.folds, "seed": args.seed, "overlays_removed": not args.keep_overlays,
                   "lesion_fraction": args.lesion_fraction, "context_crops": args.context,
                   "seconds": round(time.perf_counter() - started, 1)})
    (args.out / "import_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"crops manifest: {crops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
