"""The BreastFusion worker: a long-lived process that loads and warms the models once, then predicts case after case.

Requests and answers follow ``serving.protocol``. A request names its bundle; the loaded bundle is
kept and reused while its folder, models and checkpoints stay the same, and reloaded (then warmed
again) when a checkpoint or metrics.json changes on disk or another bundle is asked for. A bad case
is answered with ``"ok": false`` and the worker goes on; the worker ends when its input ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from BreastFusionLib.commands.predict import CaseRequest, checked_models, configure as configure_predict, parse_case, predict_into
from BreastFusionLib.ct.volume import CTVolume, canonical
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.loaded_bundle import LoadedBundle, load_bundle
from BreastFusionLib.inference.runtime import warm_up
from BreastFusionLib.networks import MODALITIES
from BreastFusionLib.serving.module_inputs import read_module_inputs
from BreastFusionLib.serving.protocol import CT_GEOMETRY_FILE, DONE, READY, event_line, progress_line
from BreastFusionLib.us.io import write_us_png

DEVICES = ("auto", "cpu", "cuda")
US_PNG = "us.png"


class _PredictArguments(argparse.ArgumentParser):
    """``breastfusion predict``'s parser whose errors are answers, not exits."""

    def error(self, message: str):
        raise UserInputError(f"predict arguments: {message}")


def select_device(requested: str) -> str:
    """"cpu" or "cuda": "auto" takes CUDA when it works, "cuda" insists on it."""
    if requested == "cpu":
        return "cpu"
    try:
        available = torch.cuda.is_available()
    except Exception as error:  # a CUDA build of torch without a usable driver can raise here
        print(f"CUDA check failed ({type(error).__name__}: {error}); using the CPU", flush=True)
        available = False
    if requested == "cuda" and not available:
        raise UserInputError("CUDA was asked for, but torch sees no usable CUDA GPU here")
    return "cuda" if available else "cpu"


def bundle_stamp(root: Path, models: Iterable[str]) -> tuple:
    """Size and modification time of every file a loaded model depends on: a change means reload."""
    files = [root / "configs" / name for name in ("inference.json", "train.json", "metadata.json")]
    for modality in models:
        files += [root / "models" / modality / "model.pt", root / "models" / modality / "model.ts",
                  root / "runs" / modality / "metrics.json"]
    return tuple((str(path), path.stat().st_mtime_ns, path.stat().st_size) for path in files if path.is_file())


def ct_geometry(volume: CTVolume) -> dict:
    """What ``ct_slice_index`` and the CT heat maps refer to, for the module to place them on its CT node."""
    return {
        "coordinates": "RAS mm; the CT as BreastFusionLib loads it (ct_slice_index and CT heat maps refer to it)",
        "ijk_to_ras": volume.ijk_to_ras.tolist(),
        "shape_kji": [int(n) for n in volume.hu.shape],
    }


def case_from_module_inputs(folder: Path, out: Path, bundle: Path, models: list[str] | None = None) -> CaseRequest:
    """The ``CaseRequest`` of a folder the Slicer module wrote, predicted exactly as ``predict`` would: the US
    frame through a PNG (``us.png`` beside the arrays) and the loader, the CT made canonical in memory
    (its geometry in ``out/ct_geometry.json``)."""
    inputs = read_module_inputs(folder)
    out.mkdir(parents=True, exist_ok=True)
    us_png = volume = None
    if inputs.us_frame is not None:
        us_png = Path(folder) / US_PNG
        write_us_png(inputs.us_frame, us_png)
    if inputs.ct is not None:
        volume = canonical(inputs.ct)
        (out / CT_GEOMETRY_FILE).write_text(json.dumps(ct_geometry(volume), indent=2))
    have = {key for key, value in (("us", us_png), ("ct", volume)) if value is not None}
    return CaseRequest(bundle=Path(bundle), models=checked_models(models, Path(bundle), have), spatial_size=None,
                       us=str(us_png) if us_png else None, us_box=inputs.us_box, us_mask=None, ct=volume,
                       series_uid=None, point=inputs.point_ras, clock=inputs.clock,
                       lesion_diameter_mm=inputs.lesion_diameter_mm, heatmaps=True, tta=False, out=out)


class CaseServer:
    """Answers requests with one loaded, warm bundle at a time."""

    def __init__(self, device: str, emit: Callable[[str], None]) -> None:
        self.device = device
        self.emit = emit
        self.bundle: LoadedBundle | None = None
        self._key: tuple | None = None
        self._parser = _PredictArguments(prog="breastfusion predict")
        configure_predict(self._parser)

    def load(self, root: Path, models: list[str], spatial_size: int | None = None) -> LoadedBundle:
        """The bundle in ``root`` with at least ``models``, loaded (and warmed) only when not already current."""
        root = Path(root).resolve()
        if self.bundle is not None and self._key is not None:
            loaded_root, loaded_models, loaded_size, stamp = self._key
            if (loaded_root == root and set(models) <= set(loaded_models) and loaded_size == spatial_size
                    and stamp == bundle_stamp(root, loaded_models)):
                return self.bundle
        self.emit(progress_line(10, f"loading the {', '.join(models)} model{'s' if len(models) > 1 else ''}"))
        self.bundle = None  # let the previous models go before loading the next ones
        bundle = load_bundle(root, models, spatial_size=spatial_size, device=self.device)
        warm_up(bundle)
        self.bundle, self._key = bundle, (root, tuple(models), spatial_size, bundle_stamp(root, models))
        return bundle

    def case(self, request: dict) -> CaseRequest:
        """The request's case, checked; ``check_only`` requests need no bundle (nothing is predicted)."""
        checking = bool(request.get("check_only"))
        if "argv" in request:
            return parse_case(self._parser.parse_args([str(a) for a in request["argv"]]))
        if "module_input" in request:
            missing = [key for key in ("out", "bundle") if not request.get(key) and not (key == "bundle" and checking)]
            if missing:
                raise UserInputError(f"a module_input request needs {' and '.join(missing)}")
            return case_from_module_inputs(Path(request["module_input"]), Path(request["out"]),
                                           Path(request.get("bundle") or ""), request.get("models"))
        raise UserInputError("a request needs 'argv' (breastfusion predict's arguments) or 'module_input'")

    def handle(self, request: dict) -> dict:
        """Predict one request; the DONE payload (never raises for a bad case)."""
        started = time.perf_counter()
        answer = {"id": request.get("id")}
        try:
            self.emit(progress_line(5, "preparing the inputs"))
            case = self.case(request)
            if request.get("check_only"):  # the inputs are readable and consistent; nothing is loaded or run
                answer.update(ok=True, out=str(case.out), checked=sorted(k for k in ("us", "ct") if getattr(case, k)))
                return {**answer, "seconds": round(time.perf_counter() - started, 3)}
            bundle = self.load(case.bundle, case.models, case.spatial_size)
            self.emit(progress_line(40, f"running models: {', '.join(case.models)}"))
            result = predict_into(bundle, case)
            answer.update(ok=True, out=str(case.out), notes=result.notes,
                          models={name: {"probability": r.probability, "decision": r.decision}
                                  for name, r in result.models.items()})
        except UserInputError as error:
            answer.update(ok=False, error=str(error))
        except Exception as error:  # an unexpected failure ends this case, not the worker
            traceback.print_exc(file=sys.stdout)
            answer.update(ok=False, error=f"{type(error).__name__}: {error}")
        answer["seconds"] = round(time.perf_counter() - started, 3)
        return answer


def serve(lines: Iterable[str], emit: Callable[[str], None], device: str = "auto",
          preload: Path | None = None, preload_models: list[str] | None = None) -> int:
    """Answer each request line with a DONE event, after a READY event; returns when ``lines`` ends."""
    started = time.perf_counter()
    server = CaseServer(select_device(device), emit)
    ready = {"device": server.device, "pid": os.getpid()}
    if preload is not None:
        try:
            server.load(preload, preload_models or [m for m in MODALITIES if (Path(preload) / "models" / m).is_dir()])
            ready["models"] = list(server.bundle.models)
        except UserInputError as error:
            ready["error"] = str(error)  # reported once; each request names it again
    ready["seconds"] = round(time.perf_counter() - started, 3)
    emit(event_line(READY, ready))
    for line in lines:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            emit(event_line(DONE, {"id": None, "ok": False, "error": f"not a request line ({error}): {line[:80]!r}"}))
            continue
        emit(event_line(DONE, server.handle(request)))
    return 0


def stdin_requests() -> Iterator[str]:
    """Lines of standard input, read by a thread; when the input ends the process exits at once,
    also in the middle of a case (that is how a client cancels or stops the worker)."""
    import queue

    lines: "queue.Queue[str]" = queue.Queue()

    def read() -> None:
        for raw in sys.stdin.buffer:
            lines.put(raw.decode("utf-8", errors="replace"))
        sys.stdout.flush()
        os._exit(0)

    threading.Thread(target=read, name="BreastFusionRequests", daemon=True).start()
    while True:
        yield lines.get()


def emit_line(text: str) -> None:
    print(text, flush=True)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where the models run (auto: CUDA when usable)")
    parser.add_argument("--bundle", type=Path, help="load and warm this bundle at start (requests may name others)")
    parser.add_argument("--models", help="comma list among us,ct,fusion to load at start (default: every trained one)")


def run(args: argparse.Namespace) -> int:
    """Serve requests from standard input until it closes."""
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # keep the GPU free even for libraries that probe it
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    return serve(stdin_requests(), emit_line, args.device, args.bundle, models)
