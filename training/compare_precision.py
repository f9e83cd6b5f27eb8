"""bf16 against fp32 on a trained bundle's own cases: largest probability difference, decisions changed.

Each model of the bundle predicts the prepared crops of the manifest's ``--splits`` (the bundle's
``eval_transforms`` at the model's input size) once in fp32 and once under bf16 autocast, whatever
the input size (``precision="auto"`` keeps small inputs in fp32; this measures what bf16 would
change). Differences are given for the calibrated probabilities (what reports show) and, in
brackets, for the network's; a decision is probability >= threshold (calibration keeps the order).
The last column applies ``predict_case``'s rule: a bf16 answer within ``FP32_NEAR_THRESHOLD`` of the
threshold (before calibration) is recomputed in fp32. On a CPU without native bf16 the bf16 run is emulated
(slow, same numbers).

    python training/compare_precision.py --bundle out/demo/bundle --dataset out/demo/crops
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from monai.data import DataLoader, Dataset

from BreastFusionLib.bundle.datalist import load_datalist
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.loaded_bundle import load_bundle
from BreastFusionLib.inference.calibration import apply_temperature
from BreastFusionLib.inference.case import FP32_NEAR_THRESHOLD
from BreastFusionLib.inference.heatmaps import MALIGNANT
from BreastFusionLib.inference.runtime import model_device, prepare_network
from BreastFusionLib.precision import cpu_has_native_bf16
from BreastFusionLib.transform_config import eval_transforms


def probabilities(model, items: list[dict], bf16: bool, batch_size: int) -> list[float]:
    """The network's malignancy probabilities of ``items``, before calibration (channels_last weights, as in prediction)."""
    prepare_network(model)
    device = model_device(model)
    loader = DataLoader(Dataset(items, eval_transforms(model.modality, model.spatial_size)), batch_size=batch_size)
    result = []
    for batch in loader:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model.network(batch["image"].to(device)).float()
        result += [float(p) for p in torch.softmax(logits, 1)[:, MALIGNANT]]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--dataset", required=True, type=Path, help="folder of the prepared crops' manifest.csv")
    parser.add_argument("--models", default="us,ct,fusion")
    parser.add_argument("--splits", default="val,test")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        bundle = load_bundle(args.bundle, args.models.split(","))
        manifest = str(args.dataset / "manifest.csv")
        print(f"bf16 {'native' if cpu_has_native_bf16() else 'EMULATED (no native bf16 on this CPU)'}; "
              f"bundle {args.bundle}; cases from {manifest}\n")
        print("| model | split | cases | max abs(bf16 - fp32) probability, calibrated (network's) | decisions changed | "
              "changed with the fp32 recheck near the threshold |")
        print("|---|---|---|---|---|---|")
        for name, model in bundle.models.items():
            threshold = model.threshold
            for split in args.splits.split(","):
                items = load_datalist(manifest, name, split)
                fp32 = probabilities(model, items, False, args.batch_size)
                bf16 = probabilities(model, items, True, args.batch_size)
                changed = sum((a >= threshold) != (b >= threshold) for a, b in zip(fp32, bf16))
                rechecked = [a if abs(b - threshold) < FP32_NEAR_THRESHOLD else b for a, b in zip(fp32, bf16)]
                still = sum((a >= threshold) != (b >= threshold) for a, b in zip(fp32, rechecked))
                calibrated = [[apply_temperature(p, model.temperature) for p in run] for run in (fp32, bf16)]
                largest = max(abs(a - b) for a, b in zip(*calibrated))
                largest_raw = max(abs(a - b) for a, b in zip(fp32, bf16))
                print(f"| {name} | {split} | {len(items)} | {largest:.4f} ({largest_raw:.4f}) | {changed} | {still} |", flush=True)
    except UserInputError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
