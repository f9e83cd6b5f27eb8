"""Overlay detection against a baseline version of it: synthetic marks burned into BUSI, real BUSI, time.

Compares ``BreastFusionLib.us.overlays.find_overlays`` (this checkout) with the same module at a git
revision (``--baseline``, default ``main``; read with ``git show``):

1. **Synthetic marks.** On each BUSI image with a lesion, the marks of the domain-shift suite
   (``evaluation.domain_shift.mark_layers``: '+' calipers on the lesion, their dotted line, a boxed
   body-mark label, a measurement text) are burned in at grey 0.6 (faint) and white, one draw per
   image and level. Recall per kind of mark: share of the pixels a mark raised by at least 0.1 that
   are flagged. False positives: flagged pixels more than 3 px from any drawn pixel (the inside of the
   label's box counts as drawn) that were not flagged on the unmarked image (real marks are flagged
   there too), per image.
2. **Real BUSI** (all images): share of each image flagged, images whose mask changed and the pixels
   added and removed, and the lesion pixels flagged (mask AND the ``*_mask*.png`` lesion: pixels,
   share of lesion area, images with any). Calipers and dotted lines drawn on lesions are meant to
   be flagged, so the lesion count is not zero for a perfect detector; its change is what to read.
3. **Cleaned images** (``remove_overlays``): images whose cleaned pixels changed, how many, whether
   every changed pixel lies in the new mask, and how many changed pixels fall in the lesion crop box
   that ``prepare_busi.py`` crops (``square_crop_box``, default lesion fraction).
4. **Time**: ``find_overlays`` CPU time per BUSI image, and ``remove_overlays`` per synthetic 560x420 frame
   (as ``bench_inference.py`` times it; target <= 50 ms).

    python training/bench_overlays.py ../shared/data/BUSI [--baseline main] [--limit N] [--figure /tmp/overlays.png]

Prints a report and writes ``--json``. Skips (exit 0) when the BUSI folder is absent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy import ndimage

from BreastFusionLib.crop import DEFAULT_OUT_SIZE, lesion_box_from_mask, square_crop_box
from BreastFusionLib.evaluation.domain_shift import MARK_KINDS, mark_layers
from BreastFusionLib.synthetic.latent import sample_lesions
from BreastFusionLib.synthetic.ultrasound import render_us
from BreastFusionLib.us import overlays
from measure_overlays import CLASSES, cpu_name, images, lesion_mask, load  # the script beside this one

REPO = Path(__file__).resolve().parents[1]
LEVELS = {"faint": 0.6, "white": 1.0}
VISIBLE = 0.1  # a mark pixel is one the mark raised by at least this much
NEAR = 3  # px around drawn pixels not counted as false positives (anti-aliasing, the 2 px dilation)


def baseline_module(revision: str) -> ModuleType:
    """``BreastFusionLib/us/overlays.py`` as it is at git ``revision``, imported as its own module."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:BreastFusionLib/us/overlays.py"],
                            capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "overlays_baseline.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("overlays_baseline", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return module


def grey_of(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else image @ np.array([0.299, 0.587, 0.114], np.float32)


def synthetic_marks(paths: list[Path], detectors: dict[str, ModuleType]) -> dict:
    """Recall per kind of mark and false-positive pixels per image, per level and detector."""
    result = {}
    for level_name, level in LEVELS.items():
        hits = {name: dict.fromkeys(MARK_KINDS, 0) for name in detectors}
        drawn = dict.fromkeys(MARK_KINDS, 0)
        false = {name: [] for name in detectors}
        for number, path in enumerate(paths):
            image = grey_of(load(path))
            lesion = lesion_mask(path, image.shape)
            layers = mark_layers(image.shape, lesion, np.random.default_rng(number))
            raised = {kind: level * layer.astype(np.float32) / 255.0 - image for kind, layer in layers.items()}
            union = np.maximum.reduce(list(layers.values()))
            marked = np.clip(np.maximum(image, level * union.astype(np.float32) / 255.0), 0.0, 1.0)
            away = ~ndimage.binary_dilation(ndimage.binary_fill_holes(union > 0), np.ones((3, 3), bool), iterations=NEAR)
            for kind in MARK_KINDS:
                drawn[kind] += int((raised[kind] >= VISIBLE).sum())
            for name, module in detectors.items():
                mask = module.find_overlays(marked)
                for kind in MARK_KINDS:
                    hits[name][kind] += int((mask & (raised[kind] >= VISIBLE)).sum())
                false[name].append(int((mask & away & ~module.find_overlays(image)).sum()))
        label = {kind: ("white_calipers" if level_name == "white" else "faint_calipers") if kind == "calipers"
                 else kind for kind in MARK_KINDS}
        result[level_name] = {name: {"recall": {label[k]: hits[name][k] / max(drawn[k], 1) for k in MARK_KINDS},
                                     "false_px_per_image_mean": float(np.mean(false[name])),
                                     "false_px_per_image_max": int(np.max(false[name])),
                                     "images_with_false_px": int(np.count_nonzero(false[name]))}
                              for name in detectors}
        result[level_name]["mark_px"] = {label[k]: drawn[k] for k in MARK_KINDS}
    return result


def real_busi(root: Path, paths: list[Path], detectors: dict[str, ModuleType]) -> dict:
    """Flagged share, lesion pixels flagged, mask and cleaned-image changes against the baseline, CPU time."""
    (base_name, base), (new_name, new) = detectors.items()
    stats = {name: {"flagged_share": [], "lesion_px": 0, "lesion_images": 0, "seconds": []} for name in detectors}
    lesion_total, lesion_images = 0, 0
    added_by_image = []
    changed = {"images": 0, "px_added": 0, "px_removed": 0, "largest_change_px": 0, "cleaned_images": 0,
               "cleaned_px": 0, "cleaned_outside_new_mask_px": 0, "crops_changed": 0, "cleaned_px_in_crop_box": 0}
    for path in paths:
        image = load(path)
        lesion = lesion_mask(path, image.shape)
        masks = {}
        for name, module in detectors.items():
            start = time.process_time()
            masks[name] = module.find_overlays(image)
            stats[name]["seconds"].append(time.process_time() - start)
            stats[name]["flagged_share"].append(float(masks[name].mean()))
            stats[name]["lesion_px"] += int((masks[name] & lesion).sum())
            stats[name]["lesion_images"] += bool((masks[name] & lesion).any())
        lesion_total += int(lesion.sum())
        lesion_images += bool(lesion.any())
        added, removed = int((masks[new_name] & ~masks[base_name]).sum()), int((masks[base_name] & ~masks[new_name]).sum())
        if added or removed:
            added_by_image.append((added, f"{path.parent.name}/{path.name}"))
            changed["images"] += 1
            changed["px_added"] += added
            changed["px_removed"] += removed
            changed["largest_change_px"] = max(changed["largest_change_px"], added + removed)
            difference = base.remove_overlays(image)[0] != new.remove_overlays(image)[0]
            changed["cleaned_images"] += bool(difference.any())
            changed["cleaned_px"] += int(difference.sum())
            changed["cleaned_outside_new_mask_px"] += int((difference & ~masks[new_name]).sum())
            if lesion.any():
                box = square_crop_box(lesion_box_from_mask(lesion), lesion.shape)
                inside = int((difference & box.image_pixels_in_crop(lesion.shape, DEFAULT_OUT_SIZE)[2]).sum())
                changed["cleaned_px_in_crop_box"] += inside
                changed["crops_changed"] += inside > 0
    changed["most_added"] = [name for _, name in sorted(added_by_image, reverse=True)[:12]]
    result = {"images": len(paths), "lesion_images": lesion_images, "lesion_px": lesion_total, "changed": changed}
    for name, values in stats.items():
        result[name] = {"flagged_share_mean": float(np.mean(values["flagged_share"])),
                        "lesion_px_flagged": values["lesion_px"],
                        "lesion_share_flagged": values["lesion_px"] / max(lesion_total, 1),
                        "images_with_lesion_px_flagged": values["lesion_images"],
                        "cpu_ms_per_image_median": 1000 * statistics.median(values["seconds"]),
                        "cpu_ms_per_image_mean": 1000 * statistics.mean(values["seconds"])}
    return result


def synthetic_frame_time(detectors: dict[str, ModuleType], frames: int = 6, repeats: int = 5) -> dict[str, float]:
    """Median ``remove_overlays`` CPU time (ms) on synthetic 560x420 frames, the detectors interleaved
    (so that a change of machine load hits both), after a warm-up call."""
    pictures = [render_us(spec, np.random.default_rng(index))[0].astype(np.float32) / 255.0
                for index, spec in enumerate(sample_lesions(frames, seed=5))]
    seconds = {name: [] for name in detectors}
    for module in detectors.values():
        module.remove_overlays(pictures[0])
    for _ in range(repeats):
        for picture in pictures:
            for name, module in detectors.items():
                start = time.process_time()
                module.remove_overlays(picture)
                seconds[name].append(time.process_time() - start)
    return {name: 1000 * statistics.median(values) for name, values in seconds.items()}

def figure(paths: list[Path], detectors: dict[str, ModuleType], out: Path) -> None:
    """One panel per image: the baseline's mask in blue, pixels only the new detector flags in red, the lesion outlined in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (_, base), (_, new) = detectors.items()
    columns = 4
    fig, axes = plt.subplots(-(-len(paths) // columns), columns, figsize=(4.2 * columns, 3.4 * -(-len(paths) // columns)),
                             squeeze=False)
    for axis, path in zip(axes.ravel(), paths):
        image = grey_of(load(path))
        old, found = base.find_overlays(image), new.find_overlays(image)
        panel = np.repeat(image[..., None], 3, axis=2)
        panel[old] = 0.5 * panel[old] + (0.0, 0.0, 0.5)
        panel[found & ~old] = (1.0, 0.0, 0.0)
        lesion = lesion_mask(path, image.shape)
        panel[lesion & ~ndimage.binary_erosion(lesion)] = (0.0, 1.0, 0.0)
        axis.imshow(panel, interpolation="nearest")
        axis.set_title(f"{path.parent.name}/{path.stem}: +{int((found & ~old).sum())} px", fontsize=8)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle("overlay detection: baseline (blue), added (red), lesion outline (green)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def print_report(report: dict, detectors: dict[str, ModuleType], lesion_images: int) -> None:
    print(f"overlay detection, {report['date']}, {report['cpu']}; baseline = git {report['baseline']}; "
          f"this checkout = {Path(overlays.__file__).resolve()}")
    for level_name, level in LEVELS.items():
        numbers = report["synthetic_marks"][level_name]
        kinds = list(numbers["mark_px"])
        print(f"\nsynthetic marks at grey {level} burned into {lesion_images} BUSI lesion images: recall of mark pixels")
        print(f"{'detector':<22}" + "".join(f"{kind:>16}" for kind in kinds) + f"{'false px/image':>16}{'images':>8}")
        print(f"{'(mark px)':<22}" + "".join(f"{numbers['mark_px'][kind]:>16}" for kind in kinds))
        for name in detectors:
            row = numbers[name]
            print(f"{name:<22}" + "".join(f"{row['recall'][kind]:>16.1%}" for kind in kinds)
                  + f"{row['false_px_per_image_mean']:>16.1f}{row['images_with_false_px']:>8}")
    busi = report["busi"]
    print(f"\nreal BUSI, {busi['images']} images ({busi['lesion_images']} with a lesion, {busi['lesion_px']} lesion px)")
    print(f"{'detector':<22}{'flagged share':>14}{'lesion px':>11}{'of lesions':>11}{'images':>8}{'ms median':>10}{'ms mean':>9}")
    for name in detectors:
        row = busi[name]
        print(f"{name:<22}{row['flagged_share_mean']:>14.2%}{row['lesion_px_flagged']:>11}{row['lesion_share_flagged']:>11.2%}"
              f"{row['images_with_lesion_px_flagged']:>8}{row['cpu_ms_per_image_median']:>10.1f}{row['cpu_ms_per_image_mean']:>9.1f}")
    changed = busi["changed"]
    print(f"masks changed in {changed['images']} images: +{changed['px_added']} px, -{changed['px_removed']} px "
          f"(largest change {changed['largest_change_px']} px)")
    print(f"cleaned images changed: {changed['cleaned_images']} ({changed['cleaned_px']} px, "
          f"{changed['cleaned_outside_new_mask_px']} outside the new mask); lesion crops changed: {changed['crops_changed']} "
          f"({changed['cleaned_px_in_crop_box']} changed px inside the crop box)")
    print("most pixels added: " + ", ".join(changed["most_added"]))
    print("remove_overlays CPU ms per synthetic 560x420 frame (median of 6 frames x 5, interleaved): "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in report["synthetic_frame_remove_overlays_cpu_ms"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="BUSI folder with benign/, malignant/, normal/")
    parser.add_argument("--baseline", default="main", help="git revision of the detector to compare with (default main)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each class (quick runs)")
    parser.add_argument("--figure", type=Path, default=None, help="write a figure of the images whose mask changed most")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"BUSI not found at {args.root}: nothing measured")
        return 0
    detectors = {f"baseline ({args.baseline})": baseline_module(args.baseline), "this checkout": overlays}
    paths = [path for cls in CLASSES for path in images(args.root, cls)[: args.limit]]
    lesion_paths = [path for path in paths if lesion_mask(path, load(path).shape).any()]
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "baseline": args.baseline,
              "synthetic_marks": synthetic_marks(lesion_paths, detectors),
              "busi": real_busi(args.root, paths, detectors),
              "synthetic_frame_remove_overlays_cpu_ms": synthetic_frame_time(detectors)}
    print_report(report, detectors, len(lesion_paths))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    if args.figure is not None:
        figure([args.root / name for name in report["busi"]["changed"]["most_added"]], detectors, args.figure)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
