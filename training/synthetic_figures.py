"""Contact sheets of the synthetic cohort for docs/SYNTHETIC.md: raw US and CT, and the training crops.

    python training/synthetic_figures.py docs/figures [--cases 8] [--seed 3]

Row pairs per class (benign above malignant, sorted by the latent appearance score): the raw US
frame, the axial CT slice through the mass, and the two 300x300 crops the models see.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from BreastFusionLib.ct.crop import apply_window, ct_axial_crop  # noqa: E402
from BreastFusionLib.localization.parsing import format_clock  # noqa: E402
from BreastFusionLib.synthetic.chest_ct import render_ct  # noqa: E402
from BreastFusionLib.synthetic.latent import sample_lesions  # noqa: E402
from BreastFusionLib.synthetic.ultrasound import render_us  # noqa: E402
from BreastFusionLib.us.crop import us_lesion_crop  # noqa: E402
from BreastFusionLib.us.io import USImage  # noqa: E402


def main() -> None:
    """Render ``--cases`` lesions per class and save ``synthetic_examples.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cases", type=int, default=4, help="examples per class")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    lesions = sample_lesions(60, seed=args.seed)
    chosen = [sorted([l for l in lesions if l.label == label], key=lambda l: l.us_appearance)[:: 60 // (3 * args.cases) or 1][: args.cases]
              for label in (0, 1)]
    figure, axes = plt.subplots(2 * args.cases, 4, figsize=(12, 3 * 2 * args.cases), dpi=80)
    for row, lesion in enumerate(chosen[0] + chosen[1]):
        frame, mask, _ = render_us(lesion, np.random.default_rng(lesion.seed))
        ct = render_ct(lesion, np.random.default_rng(lesion.seed + 1))
        k = int(round(ct.volume.ras_to_ijk(ct.mass_ras)[2]))
        us_crop = us_lesion_crop(USImage(frame.astype(np.float32) / 255.0), mask=mask)
        ct_crop = ct_axial_crop(ct.volume, ct.mass_ras, lesion_diameter_mm=lesion.diameter_mm)
        name = ("benign", "malignant")[lesion.label]
        panels = [(frame, f"{name}: US (t_us = {lesion.us_appearance:.2f})"),
                  (apply_window(ct.volume.hu[k]), f"CT axial, {lesion.side} {format_clock(lesion.clock_hour)}"),
                  (us_crop.pixels, "US crop (overlays removed)"), (ct_crop.pixels, f"CT crop (t_ct = {lesion.ct_appearance:.2f})")]
        for axis, (image, title) in zip(axes[row], panels):
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1 if image.dtype != np.uint8 else 255)
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out / "synthetic_examples.png")
    print(args.out / "synthetic_examples.png")


if __name__ == "__main__":
    main()
