"""Prepare a cohort for training: raw images + lesion locations -> 300x300 crops + a crops manifest.

For each case of a validated manifest this writes the US lesion crop (burned-in overlays removed)
and the CT axial crop through the lesion point, both as 8-bit PNG and both with the same
lesion-to-crop ratio, then a manifest whose ``us_image``/``ct_image`` point to the crops (other
columns such as ``split``, ``fold``, ``group`` and reader scores are kept). The bundle trains on
that manifest; the inference API calls the same two crop functions on raw inputs.

When a CT case gives side + clock + distance instead of a point, the nipple is found and the mass
point proposed automatically (``localization.mass``); check such crops by eye.

With ``context=True`` (``--context``) each crop also gets its context crop (same centre, twice the
side, twice the pixels; columns ``us_context`` / ``ct_context``), from which off-centre training
(``off_centre`` in the bundle) cuts windows whose lesion is not in the middle.

Command line: ``python -m BreastFusionLib.cohort.prepare MANIFEST OUT [--size 300] [--workers 2] [--keep-overlays] [--context]``.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from BreastFusionLib.cohort.manifest import load_manifest, write_manifest
from BreastFusionLib.crop import DEFAULT_LESION_FRACTION, DEFAULT_OUT_SIZE
from BreastFusionLib.display import save_grey_png
from BreastFusionLib.ct.crop import ct_axial_crop
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.points import locate_lesion
from BreastFusionLib.us.crop import us_lesion_crop
from BreastFusionLib.us.io import load_lesion_mask, load_us_image

# Columns that describe where the raw data was; the crops manifest replaces them by crop paths.
_RAW_COLUMNS = ("us_mask", "us_box", "ct_point_ras", "ct_side", "ct_clock", "ct_distance_mm")


def _save_png(crop: np.ndarray, out_dir: Path, name: str) -> str:
    """Save an 8-bit crop under ``out_dir/crops``; return its path relative to ``out_dir``."""
    path = out_dir / "crops" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_grey_png(crop, path)
    return str(path.relative_to(out_dir))


def ct_lesion_point(case: dict, volume) -> np.ndarray:
    """The CT lesion point of a case: ``ct_point_ras``, or proposed from side + clock + distance."""
    if case.get("ct_point_ras"):
        return np.array(case["ct_point_ras"], dtype=float)
    position = ClockPosition(case["ct_side"], case["ct_clock"], case["ct_distance_mm"])
    return locate_lesion(volume, position=position).point_ras


def prepare_case(case: dict, out_dir: Path, size: int = DEFAULT_OUT_SIZE,
                 lesion_fraction: float = DEFAULT_LESION_FRACTION, clean_overlays: bool = True,
                 context: bool = False) -> dict:
    """Write the crops (and, with ``context``, the context crops) of one validated manifest case; return its crops-manifest row."""
    row = {key: value for key, value in case.items() if key not in _RAW_COLUMNS}
    row["label"], row["prepared"] = case["label_name"], "crops"
    if case.get("us_image"):
        image = load_us_image(case["us_image"])
        mask = load_lesion_mask([case["us_mask"]], image.shape) if case.get("us_mask") else None
        crop = us_lesion_crop(image, mask=mask, box=case.get("us_box"), lesion_fraction=lesion_fraction,
                              out_size=size, clean_overlays=clean_overlays, context=context)
        row["us_image"] = _save_png(crop.pixels, out_dir, f"{case['case_id']}_us.png")
        if context:
            row["us_context"] = _save_png(crop.context, out_dir, f"{case['case_id']}_us_context.png")
    if case.get("ct_image"):
        volume = load_ct(case["ct_image"])
        crop = ct_axial_crop(volume, ct_lesion_point(case, volume), lesion_diameter_mm=case.get("lesion_diameter_mm"),
                             lesion_fraction=lesion_fraction, out_size=size, context=context)
        row["ct_image"] = _save_png(crop.pixels, out_dir, f"{case['case_id']}_ct.png")
        if context:
            row["ct_context"] = _save_png(crop.context, out_dir, f"{case['case_id']}_ct_context.png")
    return row


def _prepare_or_report(case: dict, **options) -> dict | str:
    """``prepare_case``, turning a user-fixable problem into its message so all can be reported."""
    try:
        return prepare_case(case, **options)
    except UserInputError as error:
        return f"case {case['case_id']}: {error}"


def prepare_cohort(manifest: str, out_dir: str, size: int = DEFAULT_OUT_SIZE,
                   lesion_fraction: float = DEFAULT_LESION_FRACTION, workers: int = 2,
                   clean_overlays: bool = True, context: bool = False) -> Path:
    """Crop every case of ``manifest`` into ``out_dir``; return the path of the crops manifest."""
    cases = load_manifest(manifest)
    out = Path(out_dir)
    task = partial(_prepare_or_report, out_dir=out, size=size, lesion_fraction=lesion_fraction,
                   clean_overlays=clean_overlays, context=context)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(task, cases, chunksize=8))
    problems = [row for row in rows if isinstance(row, str)]
    if problems:
        raise UserInputError(f"{manifest}: {len(problems)} case(s) could not be cropped:\n  " + "\n  ".join(problems))
    target = out / "manifest.csv"
    write_manifest(rows, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=DEFAULT_OUT_SIZE)
    parser.add_argument("--lesion-fraction", type=float, default=DEFAULT_LESION_FRACTION)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-overlays", action="store_true", help="do not remove burned-in US overlays")
    parser.add_argument("--context", action="store_true", help="also write context crops (for off-centre training)")
    args = parser.parse_args(argv)
    try:
        target = prepare_cohort(args.manifest, args.out, args.size, args.lesion_fraction, args.workers,
                                clean_overlays=not args.keep_overlays, context=args.context)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"crops manifest: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
