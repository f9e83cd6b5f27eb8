"""Per-case inference latency on this machine, models loaded once: crops, forward passes, heat maps.

Compares eager, channels_last, TorchScript (traced) and ONNX Runtime (only if ``onnxruntime`` is
already importable; no dependency is added) side by side, on synthetic cases, at the bundle's
``spatial_size``. Crop extraction and heat maps are timed through ``predict_case`` (eager).

    python training/bench_inference.py --bundle out/demo/bundle [--cases 5] [--repeats 5] [--spatial-size 64]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from BreastFusionLib.inference.bundle import load_bundle
from BreastFusionLib.inference.case import model_input, predict_case
from BreastFusionLib.cohort.manifest import load_manifest
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spatial-size", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    bundle = load_bundle(args.bundle, MODELS, spatial_size=args.spatial_size)
    load_s = time.perf_counter() - start
    size = next(iter(bundle.models.values())).spatial_size
    stages: dict[str, list[float]] = {}
    forward: dict[str, dict[str, list[float]]] = {m: {} for m in MODELS}
    with tempfile.TemporaryDirectory() as folder:
        rows = load_manifest(generate_cohort(folder, cases=args.cases, seed=args.seed, workers=1))
        for row in rows:
            image, mask, volume, point = read_case(row)
            result = predict_case(bundle, us_image=image, us_mask=mask, ct=volume, ct_point=point,
                                  lesion_diameter_mm=row["lesion_diameter_mm"])
            for name, seconds in result.timings_s.items():
                stages.setdefault(name, []).append(1000.0 * seconds)
            for name, model in bundle.models.items():
                x = model_input(name, result.crops, size)
                with torch.no_grad():
                    for variant, call in _variants(model.network, x).items():
                        forward[name].setdefault(variant, []).append(_median_ms(lambda: call(x), args.repeats))
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "spatial_size": size,
        "cases": args.cases, "bundle_load_s": round(load_s, 2),
        "stages_ms_median": {k: round(statistics.median(v), 1) for k, v in stages.items()},
        "forward_ms_median": {m: {v: round(statistics.median(t), 1) for v, t in d.items()} for m, d in forward.items()},
    }
    print(f"bundle loaded once in {load_s:.2f} s; spatial_size {size}; {args.cases} synthetic cases; "
          f"{torch.get_num_threads()} torch threads")
    print("\nstage (predict_case, eager)          median ms")
    for name, value in report["stages_ms_median"].items():
        print(f"  {name:<34} {value:8.1f}")
    variants = sorted({v for d in forward.values() for v in d}, key=["eager", "channels_last", "torchscript", "onnxruntime"].index)
    print("\nforward, batch 1, median ms | " + " | ".join(variants))
    for name in MODELS:
        print(f"  {name:<26} | " + " | ".join(f"{report['forward_ms_median'][name][v]:.1f}" for v in variants))
    if "onnxruntime" not in variants:
        print("  (ONNX Runtime not installed: skipped)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
