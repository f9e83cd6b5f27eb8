"""The Slicer module's worker and in-Slicer code, run in a Python that holds only what 3D Slicer gives them.

The environment (``tests/slicer_python/build_env.py``, built once by ``make test``) has the packages
Slicer 5.10.0 bundles, torch as the PyTorch extension installs it, and the module's requirements.txt
installed with its constraints; nothing of the development environment (no matplotlib, no
scikit-learn, no ignite, no BreastFusionLib install). Its Python is 3.11 (the build machines' only
CPU torch), where Slicer 5.10 runs 3.12: the package versions are Slicer's, the interpreter is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_module_inputs

from BreastFusionLib.serving.client import WorkerProcess, kill_process_tree
from BreastFusionLib.serving.protocol import DONE, READY

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "slicer_python"))
from build_env import DEFAULT_ENV, inputs_hash, python_of  # noqa: E402

WORKER = ROOT / "BreastFusion" / "Resources" / "inference_worker.py"
LAUNCHER = HERE / "fake_launcher.py"
NOT_IN_SLICER = ("matplotlib", "sklearn", "ignite", "mlflow", "tensorboard", "pandas", "nibabel", "BreastFusionLib")


@pytest.fixture(scope="module")
def slicer_python() -> Path:
    """The Slicer-like environment's Python; ``make test`` builds it (``make slicer-env``)."""
    stamp = DEFAULT_ENV / ".inputs"
    if not stamp.is_file() or stamp.read_text() != inputs_hash():
        pytest.skip("the Slicer-like Python is not built or out of date: run `make slicer-env` (make test does)")
    return python_of(DEFAULT_ENV)


def run_in(python: Path, code: str, extra_path: str | None = None) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, str(ROOT)) if p)
    completed = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, cwd=HERE.parent.parent,
                               env=environment)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def test_the_environment_holds_slicers_packages_and_nothing_else(slicer_python):
    out = run_in(slicer_python, "import importlib.util, json, numpy, scipy, pydicom, PIL, SimpleITK, torch, monai\n"
                                f"print(json.dumps([[m.__name__, m.__version__] for m in (numpy, scipy, pydicom, PIL, torch, monai)]"
                                f" + [[n, importlib.util.find_spec(n) is not None] for n in {list(NOT_IN_SLICER[:-1])!r}]))")
    found = dict(json.loads(out))
    assert (found["numpy"], found["scipy"], found["pydicom"], found["PIL"]) == ("2.0.2", "1.13.1", "2.4.4", "11.2.1")
    assert found["torch"].startswith("2.13.0") and found["monai"].startswith("1.6.")
    assert not any(found[name] for name in NOT_IN_SLICER[:-1]), found


@pytest.fixture(scope="module")
def module_inputs(tmp_path_factory) -> Path:
    """What BreastFusionLogic.writeInferenceInputs writes for the synthetic sample case (seed 7), lesion by clock."""
    folder = tmp_path_factory.mktemp("inputs")
    write_synthetic_module_inputs(tmp_path_factory.mktemp("case"), folder, location="clock")
    return folder


def predict_through_the_worker(python: Path, bundle: Path, inputs: Path, out: Path, extra_path: str | None = None) -> dict:
    """Start the worker exactly as the module does (launcher, --python-path, CPU, bundle preloaded), send the
    module's inputs, and return the answer; the worker is stopped by closing its input."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if extra_path:
        environment["PYTHONPATH"] = extra_path
    environment.update(PYTHONIOENCODING="utf-8", CUDA_VISIBLE_DEVICES="-1")
    worker = WorkerProcess([str(python), str(LAUNCHER), str(WORKER), "--python-path", str(ROOT), "--device", "cpu",
                            "--bundle", str(bundle)], environment).start()
    log = []
    try:
        worker.send({"id": "1", "module_input": str(inputs), "out": str(out), "bundle": str(bundle),
                     "models": ["us", "ct", "fusion"]})
        answer = worker.wait_for("1", 300, on_event=log.append)
        assert worker.stop(grace_seconds=10) == 0  # closing the input ends it cleanly
    finally:
        kill_process_tree(worker.process)
    ready = next(e.payload for e in log if e.kind == READY)
    assert ready.get("models") == ["us", "ct", "fusion"], (ready, [e.payload for e in log])
    assert answer["ok"], (answer, [e.payload for e in log if e.kind != DONE])
    return answer


def check_result(out: Path, inputs: Path) -> None:
    result = json.loads((out / "result.json").read_text())
    geometry = json.loads((out / "ct_geometry.json").read_text())
    assert set(result["models"]) == {"us", "ct", "fusion"}
    for entry in result["models"].values():
        assert 0 <= entry["probability"] <= 1 and entry["decision"] in ("benign", "malignant")
    us_shape = np.load(inputs / "us.npy").shape[:2]
    for model, branches in result["heatmaps"].items():
        for key, maps in branches.items():
            for path in maps.values():
                expected = tuple(geometry["shape_kji"][1:]) if key == "ct" else us_shape
                assert np.load(out / path).shape == expected, (model, key, path)
    assert "Research use only" in (out / "report.html").read_text()


def test_worker_predicts_for_real_in_slicers_python(slicer_python, tiny_bundle, module_inputs, tmp_path):
    predict_through_the_worker(slicer_python, tiny_bundle, module_inputs, tmp_path / "out")
    check_result(tmp_path / "out", module_inputs)


def test_worker_predicts_with_the_lowest_supported_monai(slicer_python, tiny_bundle, module_inputs, tmp_path):
    lowest = str(DEFAULT_ENV / "lowest")
    assert run_in(slicer_python, "import monai, torch; print(monai.__version__, torch.__version__)", lowest).split()[0] == "1.5.1"
    predict_through_the_worker(slicer_python, tiny_bundle, module_inputs, tmp_path / "out", extra_path=lowest)
    check_result(tmp_path / "out", module_inputs)


def test_what_the_panel_runs_inside_slicer_works_with_slicers_packages(slicer_python, tmp_path):
    """The Slicer process itself runs these (sample case, nipples, mass proposal, crop previews, dependency
    check) with Slicer's numpy, scipy, SimpleITK, pydicom and Pillow."""
    code = f"""
import json
import numpy as np
from pathlib import Path
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.dependencies import missing_distributions
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.mass import propose_mass
from BreastFusionLib.localization.nipples import find_nipples
from BreastFusionLib.localization.parsing import parse_clock
from BreastFusionLib.localization.points import describe_point
from BreastFusionLib.previews import crop_previews
from BreastFusionLib.synthetic.cohort import write_case
from BreastFusionLib.synthetic.latent import sample_lesions
from PIL import Image

folder = Path({str(tmp_path)!r})
row = write_case(sample_lesions(1, seed=7)[0], folder)
volume = load_ct(folder / row["ct_image"])
nipples = find_nipples(volume)
side = row["ct_side"]
proposal = propose_mass(volume, nipples[side].point_ras, ClockPosition(side, parse_clock(row["ct_clock"]), float(row["ct_distance_mm"])))
location = describe_point(proposal.point_ras, {{s: r.point_ras for s, r in nipples.items()}})
previews = crop_previews(folder / "previews", us_frame=np.asarray(Image.open(folder / row["us_image"])),
                         us_box=[float(v) for v in row["us_box"].split(",")], ct=volume, mass_point_ras=proposal.point_ras)
truth = np.array([float(v) for v in row["ct_point_ras"].split(",")])
print(json.dumps({{"missing": missing_distributions(), "side": location.side, "reported_side": side,
                  "error_mm": float(np.linalg.norm(proposal.point_ras - truth)),
                  "shapes": [list(p.pixels.shape) for p in previews.values()]}}))
"""
    found = json.loads(run_in(slicer_python, code).strip().splitlines()[-1])
    assert found["missing"] == []  # every package the module checks for is there
    assert found["side"] == found["reported_side"] and found["error_mm"] < 15
    assert found["shapes"] == [[300, 300], [300, 300]]
