"""Burned-in overlay detection on the whole BUSI set: counts, lesion overlap, run time, a figure.

Runs :func:`BreastFusionLib.us.overlays.find_overlays` on every BUSI image (benign, malignant,
normal; mask files skipped) and prints, per class:

* images with overlays: flagged area above ``--min-area`` px (default 50, about one short word of
  text or one caliper with its 2 px dilation);
* the same, not counting the top-left ``--corner`` x ``--corner`` px (default 24), where the vendor
  logo sits in most images: this is the count of images with annotations (text, calipers, boxes);
* images with colour overlays (Doppler boxes / flow, coloured calipers);
* the fraction of lesion-mask pixels flagged (the masks of one image ORed together). Calipers and
  dotted measurement lines are drawn on and across lesions, so this is not zero even for a perfect
  detector; it is an upper bound on tissue wrongly flagged inside lesions;
* the run time (find_overlays only, images already decoded).

It also writes a before/after figure (rows: original, overlay mask in red, cleaned image).

    .venv/bin/python training/measure_overlays.py ../shared/data/BUSI --figure docs/figures/overlay_examples.png
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

from BreastFusionLib.us.overlays import colour_mask, find_overlays, remove_overlays

CLASSES = ("benign", "malignant", "normal")
# Figure examples: calipers + dotted lines + text, dotted lines across a lesion, calipers on bright
# tissue, body-mark text, a colour-Doppler box with coloured calipers, a body-mark pictogram.
DEFAULT_EXAMPLES = (
    "malignant/malignant (10)",
    "benign/benign (141)",
    "benign/benign (11)",
    "benign/benign (3)",
    "benign/benign (234)",
    "normal/normal (114)",
)
_NUMBER = re.compile(r"\((\d+)\)")


def load(path: Path) -> np.ndarray:
    """Float image in [0, 1]: grey (rows, cols) for 8-bit L files, (rows, cols, 3) otherwise."""
    image = Image.open(path)
    image = image.convert("L") if image.mode in ("L", "LA") else image.convert("RGB")
    return np.asarray(image, dtype=np.float32) / 255.0


def lesion_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """OR of all ``<stem>_mask*.png`` files next to ``path``."""
    mask = np.zeros(shape[:2], bool)
    for mask_path in path.parent.glob(f"{path.stem}_mask*.png"):
        mask |= np.asarray(Image.open(mask_path).convert("L")) > 127
    return mask


def images(root: Path, cls: str) -> list[Path]:
    """Images of one class, in numeric order, mask files skipped."""
    paths = [p for p in (root / cls).glob("*.png") if "_mask" not in p.stem]
    return sorted(paths, key=lambda p: int(m.group(1)) if (m := _NUMBER.search(p.stem)) else 0)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def figure(root: Path, names: list[str], out: Path) -> None:
    """Columns: examples; rows: original, overlay mask in red, cleaned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(names), figsize=(3.2 * len(names), 8.4), squeeze=False)
    for column, name in enumerate(names):
        image = load(root / f"{name}.png")
        cleaned, mask = remove_overlays(image)
        original = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        grey = original @ np.array([0.299, 0.587, 0.114], np.float32)
        red = np.repeat(grey[..., None], 3, axis=2)
        red[mask] = (1.0, 0.0, 0.0)
        for row, (panel, title) in enumerate(
            ((original, name.split("/")[-1]), (red, f"overlay: {int(mask.sum())} px"), (cleaned, "cleaned"))
        ):
            axis = axes[row, column]
            axis.imshow(panel, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            axis.set_title(title, fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
    fig.suptitle("BUSI burned-in overlay removal (rows: original, detected overlay in red, cleaned)", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="BUSI folder with benign/, malignant/, normal/")
    parser.add_argument("--figure", type=Path, default=None, help="write the before/after figure here")
    parser.add_argument("--min-area", type=int, default=50, help="flagged px for an image to count (default 50)")
    parser.add_argument("--corner", type=int, default=24, help="top-left logo box excluded in the 2nd count (px)")
    parser.add_argument("--examples", nargs="*", default=list(DEFAULT_EXAMPLES), help="images for the figure")
    args = parser.parse_args()

    print(f"BUSI overlay detection, {date.today().isoformat()}, {cpu_name()}, numpy {np.__version__}")
    print(f"'has overlays': flagged area > {args.min_area} px; 'annotations': same, outside the top-left "
          f"{args.corner}x{args.corner} px logo box")
    print(f"{'class':<10}{'images':>8}{'overlays':>10}{'annot.':>8}{'colour':>8}"
          f"{'lesion px flagged':>20}{'s/image':>9}")
    totals = np.zeros(6)
    total_seconds = 0.0
    worst: list[tuple[float, str]] = []
    for cls in CLASSES:
        counts = np.zeros(6)  # images, overlays, annotations, colour, flagged lesion px, lesion px
        seconds = 0.0
        for path in images(args.root, cls):
            image = load(path)
            start = time.perf_counter()
            mask = find_overlays(image)
            seconds += time.perf_counter() - start
            outside = mask.copy()
            outside[: args.corner, : args.corner] = False
            lesion = lesion_mask(path, image.shape)
            counts += (
                1,
                mask.sum() > args.min_area,
                outside.sum() > args.min_area,
                colour_mask(image).sum() > args.min_area,
                (mask & lesion).sum(),
                lesion.sum(),
            )
            if lesion.any():
                worst.append(((mask & lesion).sum() / lesion.sum(), f"{cls}/{path.stem}"))
        fraction = counts[4] / counts[5] if counts[5] else 0.0
        lesion_text = f"{fraction:.2%}" if counts[5] else "no lesions"
        print(f"{cls:<10}{int(counts[0]):>8}{int(counts[1]):>10}{int(counts[2]):>8}{int(counts[3]):>8}"
              f"{lesion_text:>20}{seconds / max(counts[0], 1):>9.3f}")
        totals += counts
        total_seconds += seconds
    print(f"{'all':<10}{int(totals[0]):>8}{int(totals[1]):>10}{int(totals[2]):>8}{int(totals[3]):>8}"
          f"{totals[4] / totals[5]:>20.2%}{total_seconds / totals[0]:>9.3f}")
    print(f"find_overlays time: {total_seconds:.1f} s for {int(totals[0])} images")
    worst.sort(reverse=True)
    share = np.array([value for value, _ in worst])
    print(f"lesion px flagged per image: median {np.median(share):.2%}, images above 5%: {int((share > 0.05).sum())}"
          f" of {share.size} (calipers / dotted lines drawn on the lesion); top 5: "
          + ", ".join(f"{name} {value:.0%}" for value, name in worst[:5]))
    if args.figure is not None:
        figure(args.root, args.examples, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
