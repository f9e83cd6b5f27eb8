"""BreastFusion.py's logic run outside Slicer, on a fake of the Slicer API (tests/fake_slicer.py): installing
dependencies on Slicer 5.10 and 5.12, the warm worker started through a PythonSlicer-like launcher, results,
Cancel, markups that hold one point, and the self-test's skip. Each is a defect a first real session hit."""

from __future__ import annotations

import os
import shutil
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import load_script, write_synthetic_module_inputs

import BreastFusionLib.dependencies as dependencies
from fake_slicer import MarkupsNode, Recorder, install, uninstall

ROOT = Path(__file__).resolve().parents[1]
MODULE_PY = ROOT / "BreastFusion" / "BreastFusion.py"
LAUNCHER = Path(__file__).resolve().parent / "fake_launcher.py"
MONAI_REQUIREMENT = dependencies.read_requirements(ROOT / "BreastFusion" / "Resources" / "requirements.txt")


def load_module(tmp_path: Path, with_packaging: bool = False):
    recorder = Recorder()
    install(recorder, tmp_path, with_packaging)
    return load_script(MODULE_PY, "BreastFusionModuleUnderTest"), recorder


@pytest.fixture
def slicer_510(tmp_path):
    yield load_module(tmp_path)
    uninstall()


@pytest.fixture
def slicer_512(tmp_path):
    yield load_module(tmp_path, with_packaging=True)
    uninstall()


def missing_then(monkeypatch, *answers):
    """missing_distributions answers ``answers`` in turn (the last one from then on)."""
    answers = list(answers)
    monkeypatch.setattr(dependencies, "missing_distributions", lambda *a: answers.pop(0) if len(answers) > 1 else answers[0])


# --- dependencies (defects 4, 5, 9) ----------------------------------------------------------------------


def test_slicer_512_installs_through_pip_ensure_with_constraints_that_keep_slicers_packages(slicer_512, monkeypatch):
    module, recorder = slicer_512
    missing_then(monkeypatch, ["monai"], [])
    assert module.BreastFusionLogic().ensureDependencies(askConfirmation=True) is True
    (confirm, text), (call, requirements, options) = recorder.calls
    assert confirm == "confirm" and "monai" in text
    assert call == "pip_ensure" and requirements == MONAI_REQUIREMENT
    assert options["prompt_install"] is False and options["requester"] == "BreastFusion"
    pins = Path(options["constraints"]).read_text().splitlines()
    assert f"torch=={dependencies.installed_version('torch')}" in pins and any(p.startswith("numpy==") for p in pins)


def test_slicer_510_installs_with_pip_install_and_the_same_constraints(slicer_510, monkeypatch):
    module, recorder = slicer_510
    missing_then(monkeypatch, ["monai"], [])
    assert module.BreastFusionLogic().ensureDependencies(askConfirmation=False) is True
    [(call, arguments)] = recorder.calls
    assert call == "pip_install" and arguments[:-2] == MONAI_REQUIREMENT and arguments[-2] == "-c"
    assert "torch==" in Path(arguments[-1]).read_text()


def test_a_declined_install_or_testing_mode_installs_nothing_and_says_false(slicer_512, monkeypatch):
    module, recorder = slicer_512
    missing_then(monkeypatch, ["monai"])
    recorder.confirm = False
    assert module.BreastFusionLogic().ensureDependencies() is False
    assert [c[0] for c in recorder.calls] == ["confirm"]
    recorder.calls.clear()
    recorder.testing = True
    assert module.BreastFusionLogic().ensureDependencies() is False and recorder.calls == []


def test_still_missing_after_installing_or_an_old_slicer_is_a_clear_error(slicer_510, monkeypatch):
    module, _ = slicer_510
    missing_then(monkeypatch, ["monai"])
    with pytest.raises(RuntimeError, match="Still missing after installation: monai"):
        module.BreastFusionLogic().ensureDependencies(askConfirmation=False)
    monkeypatch.setattr(sys, "version_info", (3, 9, 10))
    with pytest.raises(RuntimeError, match="needs 3D Slicer 5.10 or later"):
        module.BreastFusionLogic().ensureDependencies()


def test_self_test_without_the_packages_skips_with_its_reason_and_installs_nothing(slicer_510, monkeypatch):
    module, recorder = slicer_510
    missing_then(monkeypatch, ["torch", "monai"])
    module.BreastFusionTest().runTest()  # Reload and Test calls runTest directly: a skip must not be an error
    assert recorder.calls == [("delayDisplay", "BreastFusionTest skipped: BreastFusion's Python packages are not installed "
                                               "(torch, monai): press Run once in the BreastFusion module to install them, "
                                               "then run this test again")]


# --- markups (defect 6) ----------------------------------------------------------------------------------


def test_mass_and_nipple_points_hold_one_point_and_update_only_once_placed(slicer_510):
    module, _ = slicer_510
    widget = module.BreastFusionWidget()
    node = MarkupsNode()
    widget._observeMarkups([node])
    assert node.maximum == 1
    events = {event for _, event in widget.observations}
    assert events == {"PointPositionDefinedEvent", "PointEndInteractionEvent", "PointRemovedEvent"}  # not the hover
    node.points = [([1.0, 2.0, 3.0], MarkupsNode.PositionPreview)]
    assert module.BreastFusionLogic._point(node) is None  # the preview of a placement in progress
    node.points = [([1.0, 2.0, 3.0], MarkupsNode.PositionDefined)]
    assert module.BreastFusionLogic._point(node).tolist() == [1.0, 2.0, 3.0]
    widget._onPlacePoint(types.SimpleNamespace(currentNode=lambda: node), True)  # placing again replaces the point
    assert node.points == []
    widget._observeMarkups([])
    assert widget.observations == []


# --- the worker (defects 2, 3, 7, 8) ---------------------------------------------------------------------


@pytest.fixture
def python_slicer(tmp_path, monkeypatch):
    """A PythonSlicer on PATH that is a launcher: it starts Python as its child, as Slicer's does."""
    folder = tmp_path / "slicer-bin"
    folder.mkdir()
    script = folder / "PythonSlicer"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {LAUNCHER} \"$@\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return script


@pytest.fixture(scope="module")
def module_inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_synthetic_module_inputs(tmp_path_factory.mktemp("case"), folder)
    return folder


def run_until_done(recorder: Recorder, outcomes: list, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not outcomes and time.monotonic() < deadline:
        recorder.run_timers()  # the module's QTimer polling
        time.sleep(0.05)
    assert outcomes, "the run did not finish"


@pytest.mark.skipif(sys.platform == "win32", reason="the fake PythonSlicer is a shell script")
def test_runs_go_to_one_warm_worker_restarted_after_a_crash_and_cancel_stops_it(slicer_510, python_slicer, tiny_bundle, module_inputs, monkeypatch):
    module, recorder = slicer_510
    logic = module.BreastFusionLogic()
    monkeypatch.setattr(logic, "writeInferenceInputs", lambda p, folder: shutil.copytree(module_inputs, folder))
    p = types.SimpleNamespace(modelFolder=str(tiny_bundle), cpuOnly=True, useUSModel=True, useCTModel=True, useFusionModel=True)
    outcomes, progress = [], []
    out = logic.startInference(p, progressCallback=lambda percent, text: progress.append(percent),
                               completedCallback=lambda *outcome: outcomes.append(outcome))
    assert logic.worker.command[1:] == [str(ROOT / "BreastFusion" / "Resources" / "inference_worker.py"), "--python-path",
                                        str(ROOT), "--device", "cpu", "--bundle", str(tiny_bundle)]
    assert logic.worker.command[0] == str(python_slicer) and logic.worker.environment["CUDA_VISIBLE_DEVICES"] == "-1"
    assert logic.worker.environment["OMP_WAIT_POLICY"] == "PASSIVE"  # its threads sleep while Slicer's GUI needs the CPU
    run_until_done(recorder, outcomes)
    assert outcomes == [(True, "", False)] and progress[-1] == 100
    result = logic.readResult(out)
    assert set(result["models"]) == {"us", "ct", "fusion"} and (out / "ct_geometry.json").is_file()
    caption = logic.heatMapCaption(result, "fusion", "us", "gradcam")  # what the panel writes under a shown map
    assert "Grad-CAM for" in caption and "not measured for this model" in caption  # the tiny bundle has no pointing game
    assert logic.ensembleText(result["models"]["us"]) == ""  # single models: the "Ensemble spread" cell stays empty
    spread = {"members": 5, "range": [0.4, 0.7], "sd": 0.11, "agreeing": 3}
    assert logic.ensembleText({"ensemble": spread}) == ("5 models: 0.40-0.70 (SD 0.11); 3 of 5 on the decision's side "
                                                        "of the threshold")

    first = logic.worker.process.pid
    outcomes.clear()
    logic.startInference(p, completedCallback=lambda *outcome: outcomes.append(outcome))
    run_until_done(recorder, outcomes)
    assert outcomes == [(True, "", False)] and logic.worker.process.pid == first  # the same warm worker

    os.kill(logic.worker.ready["pid"], 9)  # the worker crashes (its Python, behind the launcher)
    deadline = time.monotonic() + 30
    while logic.worker is not None and time.monotonic() < deadline:
        recorder.run_timers()
        time.sleep(0.05)
    assert logic.worker is None  # seen as ended; the next run starts a new one
    outcomes.clear()
    logic.startInference(p, completedCallback=lambda *outcome: outcomes.append(outcome))
    run_until_done(recorder, outcomes)
    assert outcomes == [(True, "", False)] and logic.worker.process.pid != first

    outcomes.clear()
    logic.startInference(p, completedCallback=lambda *outcome: outcomes.append(outcome))
    process = logic.worker.process
    logic.cancelInference()
    assert outcomes == [(False, "cancelled", True)] and logic.worker is None
    assert process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of the worker's process group is left
