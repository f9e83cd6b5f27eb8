"""The warm model process: its line protocol, the server answering case after case, and the client
that starts, cancels and stops it through a launcher the way the 3D Slicer module does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.serving.client import EXIT, LOG, WorkerProcess, kill_process_tree
from BreastFusionLib.serving.module_inputs import write_module_inputs
from BreastFusionLib.serving.protocol import DONE, PROGRESS, READY, event_line, parse_line, progress_line
from BreastFusionLib.serving.server import serve

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "BreastFusion" / "Resources" / "inference_worker.py"
LAUNCHER = Path(__file__).resolve().parent / "fake_launcher.py"


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, dict]:
    from BreastFusionLib.synthetic.cohort import write_case
    from BreastFusionLib.synthetic.latent import sample_lesions

    folder = tmp_path_factory.mktemp("case")
    return folder, write_case(sample_lesions(1, seed=7)[0], folder)


def predict_argv(case, bundle: Path, out: Path) -> list[str]:
    folder, row = case
    return ["--bundle", str(bundle), "--us", str(folder / row["us_image"]), f"--us-box={row['us_box']}",
            "--ct", str(folder / row["ct_image"]), f"--point={row['ct_point_ras']}", "--out", str(out)]


def alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting for its parent to read its status has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def test_protocol_lines_round_trip():
    assert parse_line(progress_line(40, "running models: us")).payload == {"percent": 40, "message": "running models: us"}
    assert parse_line(progress_line(140, "x")).payload["percent"] == 100
    done = parse_line(event_line(DONE, {"id": "3", "ok": True}))
    assert (done.kind, done.payload) == (DONE, {"id": "3", "ok": True})
    for text in ("epoch 40", "BREASTFUSION_DONE {not json", "BREASTFUSION_READY [1, 2]", ""):
        assert parse_line(text) is None


def test_server_answers_case_after_case_and_reloads_a_changed_bundle(case, tiny_bundle, tmp_path):
    lines = [json.dumps({"id": "a", "argv": predict_argv(case, tiny_bundle, tmp_path / "a")}),
             "not json",
             json.dumps({"id": "b", "argv": ["--bundle", str(tiny_bundle), "--out", str(tmp_path / "b")]}),
             json.dumps({"id": "c", "argv": predict_argv(case, tiny_bundle, tmp_path / "c") + ["--models", "us"]})]
    printed: list[str] = []
    assert serve(lines, printed.append, "cpu") == 0
    events = [parse_line(line) for line in printed]
    assert events[0].kind == READY and events[0].payload["device"] == "cpu"
    answers = [e.payload for e in events if e and e.kind == DONE]
    assert [a["id"] for a in answers] == ["a", None, "b", "c"]
    assert answers[0]["ok"] and set(answers[0]["models"]) == {"us", "ct", "fusion"}
    assert json.loads((tmp_path / "a" / "result.json").read_text())["models"].keys() == {"us", "ct", "fusion"}
    assert not answers[1]["ok"] and "not a request line" in answers[1]["error"]
    assert not answers[2]["ok"] and "give a US image (--us) and/or a chest CT (--ct)" in answers[2]["error"]
    assert answers[3]["ok"] and set(answers[3]["models"]) == {"us"}
    loads = [line for line in printed if "loading the" in line]
    assert len(loads) == 1, loads  # the us model of request c was already loaded and warm

    os.utime(tiny_bundle / "runs" / "us" / "metrics.json")  # evaluating again changes metrics.json
    printed.clear()
    serve([json.dumps({"id": "d", "argv": predict_argv(case, tiny_bundle, tmp_path / "d")})], printed.append, "cpu")
    assert sum("loading the" in line for line in printed) == 1


def test_server_reads_the_slicer_modules_arrays(case, tiny_bundle, tmp_path):
    from BreastFusionLib.ct.io import load_ct

    folder, row = case
    volume = load_ct(folder / row["ct_image"])
    hu, matrix = volume.hu[:, :, ::-1], volume.ijk_to_ras.copy()  # stored with i reversed, as a node may hold it
    matrix[:3, 3] += matrix[:3, 0] * (volume.hu.shape[2] - 1)
    matrix[:3, 0] *= -1
    inputs = tmp_path / "in"
    write_module_inputs(inputs, us_frame=np.asarray(Image.open(folder / row["us_image"])),
                        us_box=[float(v) for v in row["us_box"].split(",")], ct=CTVolume(hu=np.ascontiguousarray(hu), ijk_to_ras=matrix),
                        point_ras=[float(v) for v in row["ct_point_ras"].split(",")])
    printed: list[str] = []
    request = {"id": 1, "module_input": str(inputs), "out": str(tmp_path / "out"), "bundle": str(tiny_bundle)}
    serve([json.dumps(request), json.dumps({**request, "id": 2, "bundle": ""})], printed.append, "cpu")
    answers = [e.payload for e in map(parse_line, printed) if e and e.kind == DONE]
    assert answers[0]["ok"], answers[0]
    assert not answers[1]["ok"] and "needs bundle" in answers[1]["error"]
    geometry = json.loads((tmp_path / "out" / "ct_geometry.json").read_text())
    np.testing.assert_allclose(geometry["ijk_to_ras"], volume.ijk_to_ras, atol=1e-6)  # canonical again
    assert geometry["shape_kji"] == list(volume.hu.shape)
    by_file = json.loads((tmp_path / "out" / "result.json").read_text())
    direct = tmp_path / "direct"
    serve([json.dumps({"id": 3, "argv": predict_argv(case, tiny_bundle, direct)})], printed.append, "cpu")
    assert json.loads((direct / "result.json").read_text())["models"] == by_file["models"]  # same case, same answer


def start_worker(bundle: Path | None = None) -> WorkerProcess:
    """The worker as the Slicer module starts it: through a launcher, CPU only, the bundle preloaded."""
    command = [sys.executable, str(LAUNCHER), str(WORKER), "--python-path", str(ROOT), "--device", "cpu"]
    return WorkerProcess(command + (["--bundle", str(bundle)] if bundle else [])).start()


def next_event(worker: WorkerProcess, kind: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in worker.poll():
            if event.kind == kind:
                return event
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event within {timeout} s")


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and /proc are POSIX")
def test_worker_through_a_launcher_answers_then_cancel_leaves_no_process(case, tiny_bundle, tmp_path):
    worker = start_worker(tiny_bundle)
    try:
        ready = next_event(worker, READY)
        assert ready.payload["models"] == ["us", "ct", "fusion"] and ready.payload["device"] == "cpu"
        python_child = ready.payload["pid"]
        assert python_child != worker.process.pid  # the launcher's child answers
        worker.send({"id": "1", "argv": predict_argv(case, tiny_bundle, tmp_path / "1")})
        assert worker.wait_for("1", 120)["ok"]
        worker.send({"id": "2", "argv": predict_argv(case, tiny_bundle, tmp_path / "2")})
        assert next_event(worker, PROGRESS).payload["percent"] == 5  # the case has started: cancel it now
        group = worker.process.pid
        assert set(group_members(group)) == {group, python_child}
        worker.stop(grace_seconds=0.5)
        deadline = time.monotonic() + 10
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_members(group) and not alive(python_child)
        assert worker.poll()[-1].kind == EXIT
    finally:
        kill_process_tree(worker.process)


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and /proc are POSIX")
def test_killing_only_the_launcher_leaves_the_worker_running_but_its_input_ending_stops_it(tiny_bundle):
    """Why the module kills the process group: the launcher's Python child outlives a plain kill; and why
    the worker watches its input: when the module's process dies, the pipe closes and the worker ends."""
    worker = start_worker()
    child = next_event(worker, READY).payload["pid"]
    worker.process.kill()  # what the module used to do on Cancel
    worker.process.wait(10)
    time.sleep(0.5)
    assert alive(child), "the worker should outlive its launcher"
    worker.process.stdin.close()  # what happens when Slicer ends: the input pipe closes
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_worker_output_that_is_not_utf8_is_logged_not_fatal(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text("import sys\nsys.stdout.buffer.write(b'caf\\xe9 \\xff\\n')\nsys.stdout.flush()\nprint('BREASTFUSION_READY {}')\n")
    worker = WorkerProcess([sys.executable, str(script)]).start()
    events = []
    while not events or events[-1].kind != EXIT:
        events.append(worker.events.get(timeout=30))
    assert [e.kind for e in events] == [LOG, READY, EXIT]
    assert events[0].payload["text"] == "caf\ufffd \ufffd" and events[-1].payload["returncode"] == 0


def test_the_predict_command_imports_no_training_only_package(case, tiny_bundle, tmp_path):
    """``breastfusion predict`` as a user runs it: it answers, and matplotlib and scikit-learn are never imported."""
    code = ("import sys\nfrom BreastFusionLib.cli import console_main\n"
            f"sys.argv = ['breastfusion', 'predict', *{predict_argv(case, tiny_bundle, tmp_path / 'out')!r}]\n"
            "assert console_main() == 0\n"
            "import os\nprint(os.environ.get('OMP_WAIT_POLICY'))\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'sklearn', 'ignite', 'mlflow'}))\n")
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                               env=environment)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-2:] == ["PASSIVE", "[]"]  # OpenMP threads sleep while they wait
    assert (tmp_path / "out" / "result.json").is_file()
