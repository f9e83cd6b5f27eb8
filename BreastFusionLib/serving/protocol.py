"""The line protocol between a client (the 3D Slicer module, a script) and the BreastFusion worker.

Requests go to the worker's standard input, one JSON object per line::

    {"id": "1", "argv": ["--bundle", "B", "--us", "us.png", "--us-box=10,20,90,80", "--out", "OUT"]}
    {"id": "2", "module_input": "IN", "out": "OUT", "bundle": "B", "models": ["us", "ct", "fusion"]}

``argv`` holds the arguments of ``breastfusion predict`` (the command-line contract);
``module_input`` is a folder written by the Slicer module (``serving.module_inputs``). With
``"check_only": true`` the inputs are read and checked, nothing is predicted (no bundle needed).
The worker answers on standard output, one line each::

    BREASTFUSION_READY {"device": "cpu", "seconds": 3.1}
    BREASTFUSION_PROGRESS 40 running the fusion model
    BREASTFUSION_DONE {"id": "1", "ok": true, "out": "OUT", "seconds": 0.8}
    BREASTFUSION_DONE {"id": "2", "ok": false, "error": "the US lesion needs --us-box ..."}

Any other line is log text. The worker exits when its standard input closes: closing it stops the
worker on every platform, also through a launcher such as ``PythonSlicer``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

# The folder the Slicer module writes for a "module_input" request (serving.module_inputs reads it).
INPUTS_FILE = "inputs.json"
INPUTS_VERSION = 1
CT_GEOMETRY_FILE = "ct_geometry.json"  # written into the output folder: the CT that the CT results refer to

PREFIX = "BREASTFUSION_"
READY, PROGRESS, DONE = "READY", "PROGRESS", "DONE"
_LINE = re.compile(r"^" + PREFIX + r"(READY|PROGRESS|DONE) ?(.*)$")
_PROGRESS = re.compile(r"^(\d{1,3}) ?(.*)$")


@dataclass(frozen=True)
class Event:
    """One protocol line: ``kind`` READY, PROGRESS or DONE; ``payload`` its JSON object, or for
    PROGRESS {"percent": int, "message": str}."""

    kind: str
    payload: dict


def request_line(request: dict) -> str:
    """One request as the line to write to the worker (newline included)."""
    return json.dumps(request) + "\n"


def progress_line(percent: int, message: str) -> str:
    return f"{PREFIX}{PROGRESS} {int(percent)} {message}"


def event_line(kind: str, payload: dict) -> str:
    return f"{PREFIX}{kind} {json.dumps(payload)}"


def parse_line(line: str) -> Optional[Event]:
    """The event a worker line carries; None for log text (and for a damaged protocol line)."""
    match = _LINE.match(line.strip())
    if match is None:
        return None
    kind, rest = match.groups()
    if kind == PROGRESS:
        progress = _PROGRESS.match(rest)
        if progress is None:
            return None
        return Event(kind, {"percent": min(int(progress.group(1)), 100), "message": progress.group(2)})
    try:
        payload: Any = json.loads(rest)
    except ValueError:
        return None
    return Event(kind, payload) if isinstance(payload, dict) else None
