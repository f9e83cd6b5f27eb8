"""Command line: write a synthetic paired cohort."""

from __future__ import annotations

import argparse
import sys
import time

from BreastFusionLib.synthetic.cohort import generate_cohort
from BreastFusionLib.synthetic.latent import MALIGNANT_FRACTION, SEPARATION


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate, print where the manifest is."""
    parser = argparse.ArgumentParser(prog="python -m BreastFusionLib.synthetic",
                                     description="Write a synthetic paired breast US + chest-CT cohort.")
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dicom", action="store_true", help="write each CT as a DICOM series instead of NIfTI")
    parser.add_argument("--separation", type=float, default=SEPARATION,
                        help="class separation of each modality's evidence (default %(default)s)")
    parser.add_argument("--malignant-fraction", type=float, default=MALIGNANT_FRACTION)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.cases < 1 or not (0 < args.malignant_fraction < 1):
        parser.error("--cases must be >= 1 and --malignant-fraction in (0, 1)")
    started = time.perf_counter()
    manifest = generate_cohort(args.out, args.cases, args.seed, args.dicom, args.workers,
                               separation=args.separation, malignant_fraction=args.malignant_fraction)
    print(f"{args.cases} cases in {time.perf_counter() - started:.1f} s; manifest: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
