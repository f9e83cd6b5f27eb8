"""What a user waits for: the warm worker, started the way the 3D Slicer module starts it, beside a cold
``breastfusion predict`` call, on synthetic cases given as the module gives them (arrays in a folder).

The worker is started through a PythonSlicer-like launcher (``tests/fake_launcher.py``) with
``--python-path``, ``--device cpu`` and the bundle preloaded, exactly as ``BreastFusionLogic`` does; the
clock starts when the process is started. Printed: start -> ready (models loaded and warmed), the
first case (from the start, and from its request), every later case from request to result, and the
wall time of cold ``breastfusion predict`` calls (a new process each, as a script would run them).
``--python`` runs the worker with another Python (e.g. .venv-slicer/bin/python: what Slicer gives it).

    python training/bench_worker.py --bundle out/demo/bundle [--cases 6] [--cold 3] [--python PY]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.serving.client import WorkerProcess, worker_environment
from BreastFusionLib.serving.module_inputs import write_module_inputs
from BreastFusionLib.serving.protocol import READY
from BreastFusionLib.synthetic.cohort import write_case
from BreastFusionLib.synthetic.latent import sample_lesions

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "BreastFusion" / "Resources" / "inference_worker.py"
LAUNCHER = ROOT / "tests" / "fake_launcher.py"


def write_cases(folder: Path, count: int, seed: int) -> list[tuple[Path, dict]]:
    """``count`` synthetic cases: the module's input folder of each, and its manifest row."""
    cases = []
    for index, lesion in enumerate(sample_lesions(count, seed=seed)):
        case_dir = folder / f"case{index}"
        row = write_case(lesion, case_dir)
        write_module_inputs(case_dir / "module_input", us_frame=np.asarray(Image.open(case_dir / row["us_image"])),
                            us_box=[float(v) for v in row["us_box"].split(",")], ct=load_ct(case_dir / row["ct_image"]),
                            point_ras=[float(v) for v in row["ct_point_ras"].split(",")])
        cases.append((case_dir, row))
    return cases


def warm_worker(python: str, bundle: Path, cases, out: Path) -> dict:
    """Seconds: start -> READY, start -> first result, first request -> result, later requests -> result."""
    environment = worker_environment(os.environ, "cpu")  # as the module builds it
    environment.pop("PYTHONPATH", None)
    started = time.perf_counter()
    worker = WorkerProcess([python, str(LAUNCHER), str(WORKER), "--python-path", str(ROOT), "--device", "cpu",
                            "--bundle", str(bundle)], environment).start()
    ready_at = []
    try:
        times = []
        for index, (case_dir, _) in enumerate(cases):
            sent = time.perf_counter()
            worker.send({"id": str(index), "module_input": str(case_dir / "module_input"), "out": str(out / f"warm{index}"),
                         "bundle": str(bundle)})
            answer = worker.wait_for(str(index), 600, on_event=lambda e: e.kind == READY and ready_at.append(time.perf_counter()))
            if not answer["ok"]:
                raise SystemExit(f"error: case {index}: {answer['error']}")
            times.append(time.perf_counter() - sent)
            if index == 0:
                first_from_start = time.perf_counter() - started
    finally:
        worker.stop()
    return {"ready_s": (ready_at[0] - started) if ready_at else None, "first_from_start_s": first_from_start,
            "first_request_s": times[0], "later_s": times[1:]}


def cold_predict(bundle: Path, cases, out: Path, runs: int) -> list[float]:
    """Wall seconds of ``breastfusion predict`` in a new process per case."""
    program = Path(sys.executable).parent / "breastfusion"
    times = []
    for index, (case_dir, row) in enumerate(cases[:runs]):
        command = [str(program), "predict", "--bundle", str(bundle), "--us", str(case_dir / row["us_image"]),
                   f"--us-box={row['us_box']}", "--ct", str(case_dir / row["ct_image"]), f"--point={row['ct_point_ras']}",
                   "--out", str(out / f"cold{index}")]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise SystemExit(f"error: breastfusion predict failed: {completed.stderr.strip()[-500:]}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path, help="trained bundle (e.g. out/demo/bundle)")
    parser.add_argument("--cases", type=int, default=6, help="synthetic cases sent to the warm worker")
    parser.add_argument("--cold", type=int, default=3, help="cold breastfusion predict calls")
    parser.add_argument("--python", default=sys.executable, help="the worker's Python (default: this one)")
    parser.add_argument("--seed", type=int, default=101)
    args = parser.parse_args()
    if not (args.bundle / "models").is_dir():
        parser.error(f"--bundle {args.bundle}: not a trained bundle (no models/ folder)")
    if args.cases < 2 or args.cold < 0:
        parser.error("--cases must be at least 2 and --cold 0 or more")
    with tempfile.TemporaryDirectory() as folder:
        cases = write_cases(Path(folder), args.cases, args.seed)
        warm = warm_worker(args.python, args.bundle, cases, Path(folder))
        cold = cold_predict(args.bundle, cases, Path(folder), args.cold)
    later = warm["later_s"]
    print(f"machine: {os.cpu_count()} CPUs; worker Python {args.python}; bundle {args.bundle}")
    print(f"warm worker, started as the Slicer module starts it ({len(cases)} cases):")
    print(f"  start -> models loaded and warm (READY): {warm['ready_s']:.2f} s")
    print(f"  first case: {warm['first_from_start_s']:.2f} s after the start ({warm['first_request_s']:.2f} s from its request)")
    print(f"  later cases, request -> result: median {statistics.median(later):.2f} s, max {max(later):.2f} s")
    if cold:
        print(f"cold `breastfusion predict` (a new process each, {len(cold)} calls): median {statistics.median(cold):.2f} s, "
              f"max {max(cold):.2f} s; {statistics.median(cold) / statistics.median(later):.1f}x a warm case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
