"""Per-case inference latency on this machine, models loaded once: crops, forward passes, heat maps.

Compares eager, channels_last, TorchScript (traced) and ONNX Runtime (only if ``onnxruntime`` is
already importable; no dependency is added) side by side, on synthetic cases, at the bundle's
``spatial_size``. Crop extraction and heat maps are timed through ``predict_case`` (eager); each
model's warm forward and Grad-CAM (one forward + backward for all its branches) are also timed alone.
``--untrained-size N --backbone B`` replaces the bundle's networks by untrained ones of backbone B at
input size N, keeping the bundle's thresholds: latency does not depend on the weights.

    python training/bench_inference.py --bundle out/demo/bundle [--cases 5] [--repeats 5] [--spatial-size 64]
    python training/bench_inference.py --bundle out/demo/bundle --untrained-size 224 --backbone cbam_efficientnet_lite0
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.bundle import Bundle, load_bundle
from BreastFusionLib.inference.case import model_input, predict_case
from BreastFusionLib.inference.heatmaps import BRANCHES
from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.networks import BACKBONES, build_classifier
from BreastFusionLib.synthetic.cohort import generate_cohort, read_case

MODELS = ("us", "ct", "fusion")


def _median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _variants(network: torch.nn.Module, example: torch.Tensor) -> dict:
    """Callables computing the logits of ``example``-shaped inputs, one per runtime."""
    variants = {"eager": lambda x: network(x)}
    nhwc = copy.deepcopy(network).to(memory_format=torch.channels_last)  # same weights, NHWC layout
    variants["channels_last"] = lambda x: nhwc(x.contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        traced = torch.jit.optimize_for_inference(torch.jit.trace(network, example))
    variants["torchscript"] = lambda x: traced(x)
    try:
        import onnxruntime  # noqa: F401  (optional: never installed by this project)
    except ImportError:
        return variants
    import io

    buffer = io.BytesIO()
    torch.onnx.export(network, example, buffer, input_names=["image"], output_names=["logits"])
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    variants["onnxruntime"] = lambda x: session.run(None, {"image": x.numpy()})[0]
    return variants


def _untrained(bundle: Bundle, backbone: str) -> None:
    """Replace every network of ``bundle`` by an untrained ``backbone`` one (thresholds and sizes are kept)."""
    torch.manual_seed(0)
    for name, model in bundle.models.items():
        network = build_classifier(name, backbone=backbone).eval().requires_grad_(False)
        bundle.models[name] = dataclasses.replace(model, network=network, backbone=backbone, torchscript=False,
                                                  gradcam=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spatial-size", type=int)
    parser.add_argument("--untrained-size", type=int, help="time untrained networks at this input size instead")
    parser.add_argument("--backbone", choices=BACKBONES, help="of the untrained networks (default cbam_resnet50)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.backbone and not args.untrained_size:
        parser.error("--backbone needs --untrained-size")
    if args.untrained_size and args.spatial_size:
        parser.error("--untrained-size sets the input size: leave out --spatial-size")

    start = time.perf_counter()
    try:
        bundle = load_bundle(args.bundle, MODELS, spatial_size=args.untrained_size or args.spatial_size)
    except UserInputError as error:
        parser.error(str(error))
    load_s = time.perf_counter() - start
    if args.untrained_size:
        _untrained(bundle, args.backbone or "cbam_resnet50")
    backbones = sorted({model.backbone for model in bundle.models.values()})
    weights = (f"UNTRAINED {', '.join(backbones)} (random initialisation: timings only, probabilities meaningless; "
               f"thresholds from the bundle)" if args.untrained_size else f"the bundle's trained {', '.join(backbones)}")
    size = next(iter(bundle.models.values())).spatial_size
    stages: dict[str, list[float]] = {}
    cases_ms: list[float] = []
    forward: dict[str, dict[str, list[float]]] = {m: {} for m in MODELS}
    gradcam: dict[str, list[float]] = {m: [] for m in MODELS}
    with tempfile.TemporaryDirectory() as folder:
        rows = load_manifest(generate_cohort(folder, cases=args.cases, seed=args.seed, workers=1))
        for row in rows:
            image, mask, volume, point = read_case(row)
            result = predict_case(bundle, us_image=image, us_mask=mask, ct=volume, ct_point=point,
                                  lesion_diameter_mm=row["lesion_diameter_mm"])
            for name, seconds in result.timings_s.items():
                stages.setdefault(name, []).append(1000.0 * seconds)
            cases_ms.append(1000.0 * sum(result.timings_s.values()))
            for name, model in bundle.models.items():
                x = model_input(name, result.crops, size)
                with torch.no_grad():
                    for variant, call in _variants(model.network, x).items():
                        forward[name].setdefault(variant, []).append(_median_ms(lambda: call(x), args.repeats))
                if model.gradcam is not None:  # none for TorchScript models (no hooks)
                    gradcam[name].append(_median_ms(lambda: model.gradcam(x, list(BRANCHES[name])), args.repeats))
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "spatial_size": size,
        "cases": args.cases, "bundle_load_s": round(load_s, 2), "weights": weights,
        "stages_ms_median": {k: round(statistics.median(v), 1) for k, v in stages.items()},
        "case_ms_median": round(statistics.median(cases_ms), 1),
        "forward_ms_median": {m: {v: round(statistics.median(t), 1) for v, t in d.items()} for m, d in forward.items()},
        "gradcam_ms_median": {m: round(statistics.median(t), 1) if t else None for m, t in gradcam.items()},
    }
    print(f"weights: {weights}")
    print(f"bundle loaded once in {load_s:.2f} s; spatial_size {size}; {args.cases} synthetic cases; "
          f"{torch.get_num_threads()} torch threads")
    print("\nstage (predict_case, eager)          median ms")
    for name, value in report["stages_ms_median"].items():
        print(f"  {name:<34} {value:8.1f}")
    print(f"  {'full case (all stages)':<34} {report['case_ms_median']:8.1f}")
    variants = sorted({v for d in forward.values() for v in d}, key=["eager", "channels_last", "torchscript", "onnxruntime"].index)
    print("\nforward, batch 1, median ms | " + " | ".join(variants))
    for name in MODELS:
        print(f"  {name:<26} | " + " | ".join(f"{report['forward_ms_median'][name][v]:.1f}" for v in variants))
    if "onnxruntime" not in variants:
        print("  (ONNX Runtime not installed: skipped)")
    print("\nper model, batch 1, warm median ms | forward (eager) | Grad-CAM (1 forward + 1 backward, all branches)")
    for name in MODELS:
        cam = report["gradcam_ms_median"][name]
        cam = "-" if cam is None else f"{cam:.1f}"
        print(f"  {name:<32} | {report['forward_ms_median'][name]['eager']:15.1f} | {cam:>8}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
