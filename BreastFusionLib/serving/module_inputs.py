"""The case the 3D Slicer module hands to the worker: pixel arrays and geometry in a folder.

The module (GUI process) writes only what it holds, quickly, with no patient identifier
(``write_module_inputs``; numpy only, no torch):

- ``inputs.json``: what to run (schema below);
- ``us.npy``: the US frame, (rows, cols) or (rows, cols, 3|4), as ``slicer.util.arrayFromVolume``
  gives it (row 0 at the top of the image);
- ``ct.npy``: the CT voxels indexed [k, j, i], with the volume node's IJKToRAS in ``inputs.json``.

The worker reads them back (``read_module_inputs``) and predicts them like ``breastfusion predict``
(``serving.server``): the US frame goes through a PNG and the ordinary loader, the CT is put in
BreastFusionLib's canonical orientation in memory, and ``ct_geometry.json`` in the output folder
says which volume ``ct_slice_index`` and the CT heat maps of ``result.json`` refer to.

``inputs.json``::

    {"version": 1,
     "us": {"array": "us.npy", "box_xyxy": [x0, y0, x1, y1] or null} or null,
     "ct": {"array": "ct.npy", "ijk_to_ras": 4x4} or null,
     "location": {"point_ras": [x, y, z]} or {"side": "left", "clock": "2:00", "distance_mm": 30.0} or null,
     "lesion_diameter_mm": float or null}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.parsing import parse_clock, parse_distance_mm, parse_side
from BreastFusionLib.serving.protocol import INPUTS_FILE, INPUTS_VERSION


@dataclass
class ModuleInputs:
    """A case as the module gave it: the US frame and its lesion box, the CT (as the node held it) and the lesion on it."""

    us_frame: np.ndarray | None
    us_box: tuple[float, float, float, float] | None
    ct: CTVolume | None
    point_ras: np.ndarray | None
    clock: ClockPosition | None
    lesion_diameter_mm: float | None


def write_module_inputs(folder: Path, us_frame: np.ndarray | None = None, us_box=None, ct: CTVolume | None = None,
                        point_ras=None, side: str | None = None, clock: str | None = None,
                        distance_mm: float | None = None, lesion_diameter_mm: float | None = None) -> dict:
    """Write a case into ``folder``; the CT lesion is ``point_ras`` (wins) or side + clock + distance. Returns inputs.json."""
    if us_frame is None and ct is None:
        raise UserInputError("nothing to classify: give a US image and/or a CT")
    if ct is not None and point_ras is None and not (side and clock and distance_mm is not None):
        raise UserInputError("locate the mass on the CT: place the mass point, or give side, clock and distance")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"version": INPUTS_VERSION, "us": None, "ct": None, "location": None,
            "lesion_diameter_mm": float(lesion_diameter_mm) if lesion_diameter_mm else None}
    if us_frame is not None:
        np.save(folder / "us.npy", np.asarray(us_frame))
        spec["us"] = {"array": "us.npy", "box_xyxy": None if us_box is None else [float(v) for v in us_box]}
    if ct is not None:
        np.save(folder / "ct.npy", ct.hu)
        spec["ct"] = {"array": "ct.npy", "ijk_to_ras": ct.ijk_to_ras.tolist()}
        spec["location"] = ({"point_ras": [float(v) for v in point_ras]} if point_ras is not None
                            else {"side": side, "clock": str(clock).strip(), "distance_mm": float(distance_mm)})
    (folder / INPUTS_FILE).write_text(json.dumps(spec, indent=2))
    return spec


def _location(spec: dict) -> tuple[np.ndarray | None, ClockPosition | None]:
    location = spec.get("location") or {}
    if location.get("point_ras") is not None:
        return np.asarray(location["point_ras"], dtype=float), None
    if location.get("side"):
        return None, ClockPosition(parse_side(location["side"]), parse_clock(location["clock"]),
                                   parse_distance_mm(f"{float(location['distance_mm'])}mm"))
    return None, None


def read_module_inputs(folder: Path) -> ModuleInputs:
    """The case in a folder the module wrote; a missing or malformed file is a ``UserInputError`` naming it."""
    folder = Path(folder)
    path = folder / INPUTS_FILE
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable inputs file ({error})") from None
    if spec.get("version") != INPUTS_VERSION:
        raise UserInputError(f"{path}: unsupported version {spec.get('version')!r} (this worker reads {INPUTS_VERSION})")
    try:
        frame = np.load(folder / spec["us"]["array"]) if spec.get("us") else None
        box = spec["us"].get("box_xyxy") if spec.get("us") else None
        ct = CTVolume(hu=np.load(folder / spec["ct"]["array"]), ijk_to_ras=spec["ct"]["ijk_to_ras"]) if spec.get("ct") else None
        point, clock = _location(spec)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserInputError(f"{folder}: the module's inputs cannot be read ({type(error).__name__}: {error})") from None
    if frame is None and ct is None:
        raise UserInputError(f"{path}: names neither a US image nor a CT")
    if frame is not None and not box:
        raise UserInputError("the US lesion needs a box: draw the US lesion box around the mass")
    if ct is not None and point is None and clock is None:
        raise UserInputError("locate the mass on the CT: place the mass point, or give side, clock and distance")
    return ModuleInputs(frame, tuple(float(v) for v in box) if box else None, ct, point, clock,
                        spec.get("lesion_diameter_mm") or None)
