"""First case against later cases in a fresh process: what a warm-up, bf16, oneDNN or OpenMP's wait policy change.

oneDNN creates its convolution kernels for each new input shape and precision on the first call (a
forward, and for Grad-CAM a backward pass), so the first case of a process is slower than the next
ones. On a busy machine a second cost dominates: PyTorch's OpenMP threads (libgomp) spin while they
wait for each other, and a thread that the system has descheduled keeps the others spinning, so
each case takes many times its CPU work; ``OMP_WAIT_POLICY=PASSIVE`` (set before torch is
imported) makes waiting threads sleep instead. Each configuration runs in its own fresh process:
load the bundle, optionally ``runtime.warm_up``, then ``--cases`` full synthetic cases through
``predict_case`` (heat maps included), each timed. Printed per configuration: load, warm-up, first
case, median of the later cases, and load + warm-up + first case (what a one-shot command waits for
before its first result).

    python training/bench_cold_start.py --bundle out/demo/bundle [--cases 3] [--repeats 3]
    python training/bench_cold_start.py --bundle out/demo/bundle --untrained-size 300     # CBAM-ResNet-50 at 300 px
    python training/bench_cold_start.py --bundle out/demo/bundle --threads 1 --cpu-time   # on a busy machine

``--untrained-size N`` times untrained networks at input size N, as ``bench_inference.py`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
CONFIGURATIONS = {  # name -> (precision, oneDNN enabled, warm-up after loading, environment)
    "fp32": ("fp32", True, False, {}),
    "fp32, warm-up": ("fp32", True, True, {}),
    "fp32, oneDNN off": ("fp32", False, False, {}),
    "auto (bf16 at 128 px or more)": ("auto", True, False, {}),
    "auto, warm-up": ("auto", True, True, {}),
    "auto, OMP_WAIT_POLICY=PASSIVE": ("auto", True, False, PASSIVE),
    "auto, warm-up, OMP_WAIT_POLICY=PASSIVE": ("auto", True, True, PASSIVE),
}


def child(args: argparse.Namespace) -> None:
    """One fresh process: load, optional warm-up, cases; prints a JSON line of seconds."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    precision, onednn, warm, _ = CONFIGURATIONS[args.child]
    torch.backends.mkldnn.enabled = onednn
    from BreastFusionLib.cohort.manifest import load_manifest
    from BreastFusionLib.inference.loaded_bundle import load_bundle
    from BreastFusionLib.inference.case import predict_case
    from BreastFusionLib.inference.runtime import warm_up
    from BreastFusionLib.synthetic.cohort import read_case
    from bench_inference import untrained  # the script beside this one

    start = clock()
    bundle = load_bundle(args.bundle, spatial_size=args.untrained_size or args.spatial_size)
    if args.untrained_size:
        untrained(bundle, "cbam_resnet50")
    record = {"load": clock() - start, "warm_up": 0.0, "cases": []}
    if warm:
        start = clock()
        warm_up(bundle, precision=precision)
        record["warm_up"] = clock() - start
    for row in load_manifest(args.manifest)[: args.cases]:
        image, mask, volume, point = read_case(row)
        start = clock()
        predict_case(bundle, us_image=image, us_mask=mask, ct=volume, ct_point=point,
                     lesion_diameter_mm=row["lesion_diameter_mm"], precision=precision)
        record["cases"].append(clock() - start)
    print(json.dumps(record))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--spatial-size", type=int)
    parser.add_argument("--untrained-size", type=int, help="time untrained CBAM-ResNet-50s at this input size instead")
    parser.add_argument("--cases", type=int, default=3, help="cases per process (the first is the cold one)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per configuration")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--cpu-time", action="store_true", help="time by the main thread's CPU time (needs --threads 1)")
    parser.add_argument("--child", choices=CONFIGURATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1 (other threads' work would not be counted)")
    if args.untrained_size and args.spatial_size:
        parser.error("--untrained-size sets the input size: leave out --spatial-size")
    if args.cases < 2:
        parser.error("--cases must be 2 or more (a first case and later ones)")
    if args.child:
        child(args)
        return 0
    from BreastFusionLib.synthetic.cohort import generate_cohort

    forwarded = ["--bundle", args.bundle, "--cases", str(args.cases)] + (["--cpu-time"] if args.cpu_time else [])
    forwarded += ["--spatial-size", str(args.spatial_size)] if args.spatial_size else []
    forwarded += ["--untrained-size", str(args.untrained_size)] if args.untrained_size else []
    forwarded += ["--threads", str(args.threads)] if args.threads else []
    print(f"{args.repeats} fresh processes per configuration, {args.cases} cases each; "
          f"{'thread CPU time, 1 thread' if args.cpu_time else 'wall-clock time'}; {time.strftime('%Y-%m-%d')}\n")
    print("| configuration | load s | warm-up s | first case s | later cases s (median) | load + warm-up + first case s |")
    print("|---|---|---|---|---|---|")
    inherited = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the default, unless a configuration sets it
    with tempfile.TemporaryDirectory() as folder:
        manifest = generate_cohort(folder, cases=args.cases, seed=7, workers=1)
        for name in CONFIGURATIONS:
            runs = []
            for _ in range(args.repeats):
                output = subprocess.run([sys.executable, __file__, *forwarded, "--child", name, "--manifest", str(manifest)],
                                        check=True, capture_output=True, text=True,
                                        env={**inherited, **CONFIGURATIONS[name][3]}).stdout
                runs.append(json.loads(output.strip().splitlines()[-1]))
            load, warm = (statistics.median(r[key] for r in runs) for key in ("load", "warm_up"))
            first = statistics.median(r["cases"][0] for r in runs)
            later = statistics.median(c for r in runs for c in r["cases"][1:])
            print(f"| {name} | {load:.2f} | {warm:.2f} | {first:.2f} | {later:.2f} | {load + warm + first:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
