"""Per-case inference latency on this machine, models loaded once: each stage, fp32 against bf16.

Full cases through ``predict_case`` on synthetic cases, at the bundle's ``spatial_size``, once with
``precision="fp32"`` and once with ``precision="auto"`` (bf16 autocast where the CPU has native bf16
and the input is 128 px or more, ``BreastFusionLib.precision``); the first case of each is a
discarded warm-up. Per stage: the
median of each and their ratio. Also, per model at batch 1: the forward in eager fp32,
channels_last, TorchScript (traced), bf16 autocast + channels_last and ONNX Runtime (only if
``onnxruntime`` is already importable; no dependency is added); the forward with Grad-CAM (one
pass, ``runtime.run_model``) with precision fp32 and auto; and overlay removal alone per US image.
``--untrained-size N --backbone B`` replaces the bundle's networks by untrained ones of backbone B at
input size N: latency does not depend on the weights. Untrained networks answer about 0.5 for every
case, so their thresholds are set to 1, far from every answer like most of a trained model's: the
fp32 recheck of bf16 answers near the threshold (one more fp32 forward) is not timed then.

On a busy machine, wall-clock times measure the other processes as much as this one. There,
``--threads 1 --cpu-time`` times every stage by this thread's CPU time instead (one torch thread, so
all the work runs on it): the time the work itself takes on one core, whatever the load.

    python training/bench_inference.py --bundle out/demo/bundle [--cases 5] [--repeats 5] [--spatial-size 64]
    python training/bench_inference.py --bundle out/demo/bundle --untrained-size 300      # CBAM-ResNet-50 at 300x300
    python training/bench_inference.py --bundle out/demo/bundle --untrained-size 300 --threads 1 --cpu-time
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
import types
from pathlib import Path

import torch

from BreastFusionLib.cohort.manifest import load_manifest
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference import case as case_module
from BreastFusionLib.inference.loaded_bundle import LoadedBundle, load_bundle
from BreastFusionLib.inference.case import model_input, predict_case
from BreastFusionLib.inference.heatmaps import BRANCHES
from BreastFusionLib.inference.runtime import run_model
from BreastFusionLib.networks import BACKBONES, build_classifier
from BreastFusionLib.precision import autocast, autocast_dtype
from BreastFusionLib.synthetic.cohort import generate_cohort, read_case
from BreastFusionLib.us.overlays import remove_overlays

MODELS = ("us", "ct", "fusion")
PRECISIONS = ("fp32", "auto")  # predict_case's precision


def _median_ms(function, repeats: int, clock=time.perf_counter) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return 1000.0 * statistics.median(times)


def _variants(network: torch.nn.Module, example: torch.Tensor, bf16: bool) -> dict:
    """Callables computing the logits of ``example``-shaped inputs, one per runtime."""
    plain = copy.deepcopy(network).to(memory_format=torch.contiguous_format)  # predict_case made it channels_last
    nhwc = copy.deepcopy(network).to(memory_format=torch.channels_last)  # same weights, NHWC layout
    variants = {"eager": lambda x: plain(x), "channels_last": lambda x: nhwc(x)}
    with torch.no_grad():
        traced = torch.jit.optimize_for_inference(torch.jit.trace(plain, example))
    variants["torchscript"] = lambda x: traced(x)
    if bf16:
        def bf16_channels_last(x):
            with autocast("cpu"):
                return nhwc(x)
        variants["bf16+channels_last"] = bf16_channels_last
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


def untrained(bundle: LoadedBundle, backbone: str) -> None:
    """Replace every network of ``bundle`` by an untrained ``backbone`` one, with threshold 1 (sizes are kept)."""
    torch.manual_seed(0)
    for name, model in bundle.models.items():
        network = build_classifier(name, backbone=backbone).eval().requires_grad_(False)
        bundle.models[name] = dataclasses.replace(model, network=network, backbone=backbone, torchscript=False,
                                                  heatmaps=None, threshold=1.0)


def _cases(args) -> list[tuple]:
    with tempfile.TemporaryDirectory() as folder:
        rows = load_manifest(generate_cohort(folder, cases=args.cases, seed=args.seed, workers=1))
        return [(*read_case(row), row["lesion_diameter_mm"]) for row in rows]


def _stage_medians(bundle: LoadedBundle, cases: list[tuple], precision: str) -> tuple[dict[str, float], float]:
    """Median ms per ``predict_case`` stage and of the full case, after one discarded warm-up case."""
    stages: dict[str, list[float]] = {}
    totals = []
    for index, (image, mask, volume, point, diameter) in enumerate([cases[0], *cases]):
        result = predict_case(bundle, us_image=image, us_mask=mask, ct=volume, ct_point=point,
                              lesion_diameter_mm=diameter, precision=precision)
        if index == 0:
            continue
        for name, seconds in result.timings_s.items():
            stages.setdefault(name, []).append(1000.0 * seconds)
        totals.append(1000.0 * sum(result.timings_s.values()))
    return {k: round(statistics.median(v), 1) for k, v in stages.items()}, round(statistics.median(totals), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spatial-size", type=int)
    parser.add_argument("--untrained-size", type=int, help="time untrained networks at this input size instead")
    parser.add_argument("--backbone", choices=BACKBONES, help="of the untrained networks (default cbam_resnet50)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--cpu-time", action="store_true", help="time by this thread's CPU time (needs --threads 1)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.backbone and not args.untrained_size:
        parser.error("--backbone needs --untrained-size")
    if args.untrained_size and args.spatial_size:
        parser.error("--untrained-size sets the input size: leave out --spatial-size")
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1 (other threads' work would not be counted)")
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    if args.cpu_time:
        case_module.time = types.SimpleNamespace(perf_counter=time.thread_time)  # predict_case's stage timer

    start = time.perf_counter()
    try:
        bundle = load_bundle(args.bundle, MODELS, spatial_size=args.untrained_size or args.spatial_size)
    except UserInputError as error:
        parser.error(str(error))
    load_s = time.perf_counter() - start
    if args.untrained_size:
        untrained(bundle, args.backbone or "cbam_resnet50")
    backbones = sorted({model.backbone for model in bundle.models.values()})
    weights = (f"UNTRAINED {', '.join(backbones)} (random initialisation: timings only, probabilities meaningless; "
               f"thresholds set to 1)" if args.untrained_size else f"the bundle's trained {', '.join(backbones)}")
    size = next(iter(bundle.models.values())).spatial_size
    bf16 = autocast_dtype("cpu") == torch.bfloat16
    auto = "bf16" if autocast_dtype("cpu", image_side=size) == torch.bfloat16 else "fp32"
    cases = _cases(args)
    stages, case_ms = {}, {}
    for precision in PRECISIONS:
        stages[precision], case_ms[precision] = _stage_medians(bundle, cases, precision)
    overlays_ms = statistics.median(_median_ms(lambda: remove_overlays(image.pixels), 1, clock) for image, *_ in cases)
    forward: dict[str, dict[str, float]] = {}
    gradcam: dict[str, dict[str, float]] = {}
    image, mask, volume, point, diameter = cases[0]
    crops = predict_case(bundle, us_image=image, us_mask=mask, ct=volume, ct_point=point, lesion_diameter_mm=diameter,
                         heatmaps=False).crops
    for name, model in bundle.models.items():
        x = model_input(name, crops, size)
        with torch.no_grad():
            forward[name] = {variant: round(_median_ms(lambda: call(x), args.repeats, clock), 1)
                             for variant, call in _variants(model.network, x, bf16).items()}
        branches = list(BRANCHES[name])
        gradcam[name] = {precision: round(_median_ms(lambda: run_model(model, x, branches, ("gradcam",), precision=precision),
                                                     args.repeats, clock), 1) for precision in PRECISIONS}
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "clock": "thread CPU time" if args.cpu_time else "wall",
        "torch": torch.__version__, "spatial_size": size,
        "cases": args.cases, "bundle_load_s": round(load_s, 2), "weights": weights, "native_bf16": bf16, "auto": auto,
        "stages_ms_median": stages, "case_ms_median": case_ms, "overlay_removal_ms_median": round(overlays_ms, 1),
        "forward_ms_median": forward, "forward_with_gradcam_ms_median": gradcam,
    }
    print(f"weights: {weights}")
    print(f"bundle loaded once in {load_s:.2f} s; spatial_size {size}; {args.cases} synthetic cases (+1 warm-up); "
          f"{torch.get_num_threads()} torch threads; {'thread CPU time' if args.cpu_time else 'wall-clock time'}; "
          + f"native bf16: {'yes' if bf16 else 'no'}; precision auto = {auto} at {size} px")
    print("\nstage (predict_case)                 fp32 ms    auto ms   fp32/auto")
    for name in stages["fp32"]:
        fp32, low = stages["fp32"][name], stages["auto"].get(name, float("nan"))
        print(f"  {name:<34} {fp32:8.1f}   {low:8.1f}   {fp32 / low if low else float('nan'):6.2f}x")
    print(f"  {'full case (all stages)':<34} {case_ms['fp32']:8.1f}   {case_ms['auto']:8.1f}   "
          f"{case_ms['fp32'] / case_ms['auto']:6.2f}x")
    print(f"\noverlay removal alone (US image, {cases[0][0].shape[1]}x{cases[0][0].shape[0]}): median {overlays_ms:.1f} ms")
    variants = list(next(iter(forward.values())))
    print("\nforward, batch 1, median ms | " + " | ".join(variants))
    for name in MODELS:
        print(f"  {name:<26} | " + " | ".join(f"{forward[name][v]:.1f}" for v in variants))
    if "onnxruntime" not in variants:
        print("  (ONNX Runtime not installed: skipped)")
    print(f"\nforward + Grad-CAM of every branch (one pass), batch 1, median ms | fp32 | auto ({auto}) | fp32/auto")
    for name in MODELS:
        fp32, low = gradcam[name]["fp32"], gradcam[name]["auto"]
        print(f"  {name:<26} | {fp32:8.1f} | {low:8.1f} | {fp32 / low:5.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
