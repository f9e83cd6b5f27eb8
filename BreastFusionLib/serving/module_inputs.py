"""The case the 3D Slicer module hands to the worker: pixel arrays and geometry in a folder.

The module (GUI process) writes only what it holds, quickly, with no patient identifier:

- ``inputs.json``: what to run (schema below);
- ``us.npy``: the US frame, (rows, cols) or (rows, cols, 3|4), as ``slicer.util.arrayFromVolume``
  gives it (row 0 at the top of the image);
- ``ct.npy``: the CT voxels indexed [k, j, i], with the volume node's IJKToRAS in ``inputs.json``.

The worker turns the US frame into a PNG read back by the ordinary loader (so the module's US
goes through the same loader as a file given to ``breastfusion predict``), puts the CT in
BreastFusionLib's canonical orientation in memory, and writes ``ct_geometry.json`` into the output
folder: ``ct_slice_index`` and the CT heat maps of ``result.json`` refer to that volume.

``inputs.json``::

    {"version": 1,
     "us": {"array": "us.npy", "box_xyxy": [x0, y0, x1, y1] or null} or null,
     "ct": {"array": "ct.npy", "ijk_to_ras": 4x4} or null,
     "location": {"point_ras": [x, y, z]} or {"side": "left", "clock": "2:00", "distance_mm": 30.0} or null,
     "lesion_diameter_mm": float or null}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from BreastFusionLib.commands.predict import CaseRequest, checked_models
from BreastFusionLib.ct.volume import CTVolume, canonical
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.parsing import parse_clock, parse_distance_mm, parse_side
from BreastFusionLib.serving.protocol import CT_GEOMETRY_FILE, INPUTS_FILE, INPUTS_VERSION
from BreastFusionLib.us.io import write_us_png

US_PNG = "us.png"


def ct_geometry(volume: CTVolume) -> dict:
    """What ``ct_slice_index`` and the CT heat maps refer to, for the module to place them on its CT node."""
    return {
        "coordinates": "RAS mm; the CT as BreastFusionLib loads it (ct_slice_index and CT heat maps refer to it)",
        "ijk_to_ras": volume.ijk_to_ras.tolist(),
        "shape_kji": [int(n) for n in volume.hu.shape],
    }


def _location(spec: dict) -> tuple[np.ndarray | None, ClockPosition | None]:
    location = spec.get("location") or {}
    if location.get("point_ras") is not None:
        return np.asarray(location["point_ras"], dtype=float), None
    if location.get("side"):
        return None, ClockPosition(parse_side(location["side"]), parse_clock(location["clock"]),
                                   parse_distance_mm(f"{float(location['distance_mm'])}mm"))
    return None, None


def case_from_folder(folder: Path, out: Path, bundle: Path, models: list[str] | None = None) -> CaseRequest:
    """The ``CaseRequest`` of a folder the module wrote; writes ``us.png`` beside the arrays and
    ``ct_geometry.json`` into ``out``. A missing or malformed file is a ``UserInputError`` naming it."""
    path = folder / INPUTS_FILE
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable inputs file ({error})") from None
    if spec.get("version") != INPUTS_VERSION:
        raise UserInputError(f"{path}: unsupported version {spec.get('version')!r} (this worker reads {INPUTS_VERSION})")
    out.mkdir(parents=True, exist_ok=True)
    us_png = box = volume = None
    try:
        if spec.get("us"):
            us_png = folder / US_PNG
            write_us_png(np.load(folder / spec["us"]["array"]), us_png)
            box = spec["us"].get("box_xyxy")
        if spec.get("ct"):
            volume = canonical(CTVolume(hu=np.load(folder / spec["ct"]["array"]), ijk_to_ras=spec["ct"]["ijk_to_ras"]))
            (out / CT_GEOMETRY_FILE).write_text(json.dumps(ct_geometry(volume), indent=2))
        point, clock = _location(spec)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserInputError(f"{folder}: the module's inputs cannot be read ({type(error).__name__}: {error})") from None
    if us_png is None and volume is None:
        raise UserInputError(f"{path}: names neither a US image nor a CT")
    if us_png is not None and not box:
        raise UserInputError("the US lesion needs a box: draw the US lesion box around the mass")
    if volume is not None and point is None and clock is None:
        raise UserInputError("locate the mass on the CT: place the mass point, or give side, clock and distance")
    have = {key for key, value in (("us", us_png), ("ct", volume)) if value is not None}
    return CaseRequest(bundle=Path(bundle), models=checked_models(models, Path(bundle), have), spatial_size=None,
                       us=str(us_png) if us_png else None, us_box=tuple(float(v) for v in box) if box else None,
                       us_mask=None, ct=volume, series_uid=None, point=point, clock=clock,
                       lesion_diameter_mm=spec.get("lesion_diameter_mm") or None, heatmaps=True, tta=False, out=out)
