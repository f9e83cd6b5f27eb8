"""Overlay detection on synthetic US frames: share of each frame flagged, and time per frame.

The burned-in marks (text, logo, ruler, calipers) cover a few percent of a frame; much more means
the detector is taking speckle for marks (docs/SYNTHETIC.md). Compare with BUSI in docs/PREPROCESSING.md.

    python training/measure_synthetic_overlays.py [--cases 12] [--seed 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.synthetic import generate_cohort
from BreastFusionLib.synthetic.cohort import read_case
from BreastFusionLib.us.overlays import find_overlays
from measure_overlays import cpu_name  # the script beside this one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    flagged, seconds = [], []
    with tempfile.TemporaryDirectory() as folder:
        for row in load_manifest(generate_cohort(folder, cases=args.cases, seed=args.seed, workers=1)):
            image = read_case(row)[0].pixels
            start = time.perf_counter()
            flagged.append(float(find_overlays(image).mean()))
            seconds.append(time.perf_counter() - start)
    print(f"synthetic US, {args.cases} frames (seed {args.seed}), {time.strftime('%Y-%m-%d')}, {cpu_name()}")
    print(f"flagged share of a frame: min {min(flagged):.1%}, median {np.median(flagged):.1%}, max {max(flagged):.1%}")
    print(f"find_overlays: median {np.median(seconds):.3f} s per frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
