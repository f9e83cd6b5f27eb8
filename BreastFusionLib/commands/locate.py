"""``breastfusion locate``: a breast mass on chest CT from its reported clock position, or the clock position of a point.

Clock mode (``--side --clock --distance --out``): finds both nipples, proposes the mass centre in the
reported sector and writes ``ct_crop.png``, ``overlay.png`` and ``localization.json`` (geometry only,
no patient identifier, no file path). Point mode (``--point x,y,z``): prints the side, clock position
and coronal distance of a RAS point. ``--nipple x,y,z`` replaces the automatic nipple of the breast
in question. Coordinates are RAS millimetres as in 3D Slicer (DICOM LPS: negate x and y).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from BreastFusionLib.commands.ct_options import add_ct_options
from BreastFusionLib.ct.crop import ct_axial_crop
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.display import save_grey_png
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import ClockPosition, clock_from_point
from BreastFusionLib.localization.mass import candidate_region, propose_mass
from BreastFusionLib.localization.nipples import NippleResult, find_nipples
from BreastFusionLib.localization.check_figure import write_check_figure
from BreastFusionLib.localization.parsing import format_clock, parse_clock, parse_distance_mm, parse_side
from BreastFusionLib.localization.points import check_inside, describe_point, parse_point, side_of_point

HELP = "find the nipples and a mass on chest CT from its clock position and distance, or the clock position of a point"
LOW_SCORE = 0.3


def configure(parser: argparse.ArgumentParser) -> None:
    add_ct_options(parser, ct_required=True)
    parser.add_argument("--nipple", help="nipple of the breast in question, RAS 'x,y,z' mm, instead of the automatic one")
    parser.add_argument("--diameter", default="20", help="lesion diameter for the CT crop, mm (default 20)")
    parser.add_argument("--out", help="output folder (clock mode): ct_crop.png, overlay.png, localization.json")


def _fmt(values, digits: int = 1) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in np.asarray(values, float)) + ")"


def _nipples(volume: CTVolume, manual: np.ndarray | None, manual_side: str | None) -> dict[str, NippleResult]:
    found = find_nipples(volume)
    if manual is not None:
        ijk = check_inside(volume, manual, f"--nipple {manual_side}")
        found[manual_side] = NippleResult(manual_side, True, manual, ijk, 1.0, f"{manual_side} nipple given by hand (--nipple)")
    return found


def _print_nipples(nipples: dict[str, NippleResult]) -> None:
    for side in ("right", "left"):
        result = nipples[side]
        if result.found:
            print(f"{side} nipple: RAS {_fmt(result.point_ras)} mm, voxel ijk {_fmt(result.ijk)}, confidence {result.confidence:.2f}: {result.message}")
        else:
            print(f"{side} nipple: not found: {result.message}")


def _require_nipple(nipples: dict[str, NippleResult], side: str) -> np.ndarray:
    result = nipples[side]
    if not result.found:
        raise UserInputError(f"{result.message}. Give the {side} nipple by hand with --nipple x,y,z (RAS mm, as in 3D Slicer)")
    return np.asarray(result.point_ras, dtype=float)


def _nipple_json(result: NippleResult) -> dict:
    return {
        "found": bool(result.found),
        "point_ras_mm": None if result.point_ras is None else [round(float(v), 2) for v in result.point_ras],
        "ijk": None if result.ijk is None else [round(float(v), 2) for v in result.ijk],
        "confidence": float(result.confidence),
        "message": result.message,
    }


def _clock_json(position: ClockPosition) -> dict:
    return {"side": position.side, "clock_hour": round(position.hour, 3), "clock": format_clock(position.hour),
            "distance_mm": round(position.distance_mm, 1)}


def _diameter(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserInputError(f"--diameter {text!r} is not a number of mm") from None
    if not (math.isfinite(value) and 0 < value <= 150):
        raise UserInputError(f"--diameter {text!r} must be a lesion diameter in mm, above 0 and at most 150")
    return value


def run(args: argparse.Namespace) -> int:
    """Clock mode or point mode (see the module docstring)."""
    clock_given = [name for name in ("clock", "distance") if getattr(args, name) is not None]
    if args.point is not None and clock_given:
        raise UserInputError("give either --point x,y,z (point mode) or --side/--clock/--distance (clock mode), not both")
    if args.point is None and (len(clock_given) < 2 or args.side is None):
        raise UserInputError("clock mode needs --side, --clock and --distance (e.g. --side left --clock 2 --distance 30mm); "
                             "point mode needs --point x,y,z")
    side = parse_side(args.side) if args.side is not None else None
    diameter = _diameter(args.diameter)
    manual = parse_point(args.nipple, "--nipple") if args.nipple is not None else None
    if args.point is not None:
        return _run_point(args, side, manual)
    position = ClockPosition(side, parse_clock(args.clock), parse_distance_mm(args.distance))
    if args.out is None:
        raise UserInputError("clock mode needs --out DIR for ct_crop.png, overlay.png and localization.json")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file, not a folder")

    volume = load_ct(args.ct, args.series_uid)
    nipples = _nipples(volume, manual, side)
    _print_nipples(nipples)
    nipple = _require_nipple(nipples, side)
    print(f"reported: {side} breast, {format_clock(position.hour)}, {position.distance_mm:g} mm from the nipple")
    proposal = propose_mass(volume, nipple, position)
    seen = clock_from_point(nipple, proposal.point_ras, side)
    depth = float(nipple[1] - proposal.point_ras[1])
    print(f"proposed mass: RAS {_fmt(proposal.point_ras)} mm, voxel ijk {_fmt(proposal.ijk)}, score {proposal.score:.2f}")
    print(f"  recomputed: {side} breast, {format_clock(seen.hour)}, {seen.distance_mm:.1f} mm from the nipple, {depth:.1f} mm posterior to it")
    print(f"  {proposal.message}")
    if proposal.score < LOW_SCORE:
        print(f"  warning: low score ({proposal.score:.2f} < {LOW_SCORE}): no convincing mass in the sector; check overlay.png")

    out.mkdir(parents=True, exist_ok=True)
    crop = ct_axial_crop(volume, proposal.point_ras, lesion_diameter_mm=diameter)
    save_grey_png(crop.pixels, out / "ct_crop.png")
    region = candidate_region(volume, nipple, position)
    write_check_figure(volume, out / "overlay.png", nipples, proposal.point_ras, region, crop.box, crop.slice_index)
    record = {
        "coordinates": "RAS mm (x = patient right, y = anterior, z = superior); ijk = voxel index (i, j, k) of the loaded volume",
        "volume": {"shape_ijk": list(volume.shape_ijk), "spacing_mm": [round(float(v), 4) for v in volume.spacing],
                   "ijk_to_ras": np.round(volume.ijk_to_ras, 4).tolist()},
        "nipples": {s: {**_nipple_json(r), "source": "manual" if manual is not None and s == side else "automatic"}
                    for s, r in nipples.items()},
        "reported": _clock_json(position),
        "proposal": {"point_ras_mm": [round(float(v), 2) for v in proposal.point_ras],
                     "ijk": [round(float(v), 2) for v in proposal.ijk], "score": float(proposal.score),
                     "message": proposal.message, "recomputed": _clock_json(seen), "depth_mm": round(depth, 1)},
        "crop": {"file": "ct_crop.png", "slice_index_k": crop.slice_index, "lesion_diameter_mm": diameter,
                 "box_rows_cols": {"center_row": crop.box.center_row, "center_col": crop.box.center_col,
                                   "side_rows": crop.box.side_rows, "side_cols": crop.box.side_cols}},
    }
    (out / "localization.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'ct_crop.png'}, {out / 'overlay.png'}, {out / 'localization.json'}")
    return 0


def _run_point(args: argparse.Namespace, side: str | None, manual: np.ndarray | None) -> int:
    point = parse_point(args.point, "--point")
    volume = load_ct(args.ct, args.series_uid)
    ijk = check_inside(volume, point, "--point")
    if manual is not None and side is None:
        side = "right" if manual[0] >= 0 else "left"
    nipples = _nipples(volume, manual, side)
    _print_nipples(nipples)
    if side is None:
        side, how = side_of_point(point, {s: r.point_ras if r.found else None for s, r in nipples.items()})
        print(f"side chosen by the {how}{'' if how == 'nearer nipple' else '; give --side to choose'}: {side}")
    location = describe_point(point, {side: _require_nipple(nipples, side)}, side)
    print(f"point: RAS {_fmt(point)} mm, voxel ijk {_fmt(ijk)}")
    print(f"side: {side}")
    print(f"clock: {format_clock(location.clock_hour)}")
    print(f"distance: {location.distance_mm:.1f} mm from the {side} nipple (coronal plane); "
          f"{location.depth_mm:.1f} mm posterior to it")
    return 0
