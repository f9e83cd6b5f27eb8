"""``breastfusion locate``: a breast mass on chest CT from its reported clock position, or the clock position of a point.

Clock mode (``--side --clock --distance --out``): finds both nipples, proposes the mass centre in the
reported sector and writes ``ct_crop.png``, ``overlay.png`` and ``localization.json`` (geometry only,
no patient identifier, no file path). Point mode (``--point x,y,z``): prints the side, clock position
and coronal distance of a RAS point. ``--nipple x,y,z`` replaces the automatic nipple of the breast
in question. Coordinates are RAS millimetres as in 3D Slicer (DICOM LPS: negate x and y). The
locating itself is ``localization.points.LesionLocator``, the route ``predict`` also takes; this
module parses the options, prints and writes the files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from BreastFusionLib.commands.ct_options import add_ct_options, add_lesion_diameter_option, lesion_diameter_mm
from BreastFusionLib.ct.crop import ct_axial_crop
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.display import save_grey_png
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.check_figure import write_check_figure
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.mass import candidate_region
from BreastFusionLib.localization.nipples import NippleResult
from BreastFusionLib.localization.parsing import format_clock, format_point, parse_clock, parse_distance_mm, parse_side
from BreastFusionLib.localization.points import LesionLocation, LesionLocator, check_inside, parse_point

HELP = "find the nipples and a mass on chest CT from its clock position and distance, or the clock position of a point"
LOW_SCORE = 0.3


def configure(parser: argparse.ArgumentParser) -> None:
    add_ct_options(parser, ct_required=True)
    parser.add_argument("--nipple", help="nipple of the breast in question, RAS 'x,y,z' mm, instead of the automatic one")
    add_lesion_diameter_option(parser, deprecated_alias="--diameter")
    parser.add_argument("--out", help="output folder (clock mode): ct_crop.png, overlay.png, localization.json")


def _print_nipples(nipples: dict[str, NippleResult]) -> None:
    for side in ("right", "left"):
        result = nipples[side]
        if result.found:
            print(f"{side} nipple: RAS {format_point(result.point_ras)} mm, voxel ijk {format_point(result.ijk)}, "
                  f"confidence {result.confidence:.2f}: {result.message}")
        else:
            print(f"{side} nipple: not found: {result.message}")


def _require_nipple(nipples: dict[str, NippleResult], side: str) -> None:
    result = nipples[side]
    if not result.found:
        raise UserInputError(f"{result.message}. Give the {side} nipple by hand with --nipple x,y,z (RAS mm, as in 3D Slicer)")


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


def _checked_mode(args: argparse.Namespace) -> None:
    """A clear error unless the options make exactly one of point mode and clock mode."""
    clock_given = [name for name in ("clock", "distance") if getattr(args, name) is not None]
    if args.point is not None and clock_given:
        raise UserInputError("give either --point x,y,z (point mode) or --side/--clock/--distance (clock mode), not both")
    if args.point is None and (len(clock_given) < 2 or args.side is None):
        raise UserInputError("clock mode needs --side, --clock and --distance (e.g. --side left --clock 2 --distance 30mm); "
                             "point mode needs --point x,y,z")


def run(args: argparse.Namespace) -> int:
    """Clock mode or point mode (see the module docstring)."""
    _checked_mode(args)
    side = parse_side(args.side) if args.side is not None else None
    diameter = lesion_diameter_mm(args)
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
    locator = LesionLocator(volume, side, manual, nipple_source="--nipple")
    _print_nipples(locator.nipples)
    _require_nipple(locator.nipples, side)
    print(f"reported: {side} breast, {format_clock(position.hour)}, {position.distance_mm:g} mm from the nipple")
    location = locator.from_clock(position)
    _print_proposal(location)
    out.mkdir(parents=True, exist_ok=True)
    crop = ct_axial_crop(volume, location.point_ras, lesion_diameter_mm=diameter)
    save_grey_png(crop.pixels, out / "ct_crop.png")
    region = candidate_region(volume, location.nipple_ras, position)
    write_check_figure(volume, out / "overlay.png", location.nipples, location.point_ras, region, crop.box, crop.slice_index)
    record = _localization_record(volume, location, crop, diameter, manual_side=side if manual is not None else None)
    (out / "localization.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'ct_crop.png'}, {out / 'overlay.png'}, {out / 'localization.json'}")
    return 0


def _print_proposal(location: LesionLocation) -> None:
    """The proposed mass, its clock position recomputed from the nipple, and a warning when its score is low."""
    print(f"proposed mass: RAS {format_point(location.point_ras)} mm, voxel ijk {format_point(location.ijk)}, "
          f"score {location.score:.2f}")
    print(f"  recomputed: {location.side} breast, {format_clock(location.clock_hour)}, {location.distance_mm:.1f} mm "
          f"from the nipple, {location.depth_mm:.1f} mm posterior to it")
    print(f"  {location.message}")
    if location.score < LOW_SCORE:
        print(f"  warning: low score ({location.score:.2f} < {LOW_SCORE}): no convincing mass in the sector; check overlay.png")


def _localization_record(volume, location: LesionLocation, crop, diameter: float, manual_side: str | None) -> dict:
    """localization.json: the geometry of the volume, nipples, reported position, proposal and crop (no identifier, no path)."""
    return {
        "coordinates": "RAS mm (x = patient right, y = anterior, z = superior); ijk = voxel index (i, j, k) of the loaded volume",
        "volume": {"shape_ijk": list(volume.shape_ijk), "spacing_mm": [round(float(v), 4) for v in volume.spacing],
                   "ijk_to_ras": np.round(volume.ijk_to_ras, 4).tolist()},
        "nipples": {s: {**_nipple_json(r), "source": "manual" if s == manual_side else "automatic"}
                    for s, r in location.nipples.items()},
        "reported": _clock_json(location.reported),
        "proposal": {"point_ras_mm": [round(float(v), 2) for v in location.point_ras],
                     "ijk": [round(float(v), 2) for v in location.ijk], "score": float(location.score),
                     "message": location.message, "recomputed": _clock_json(location.clock),
                     "depth_mm": round(location.depth_mm, 1)},
        "crop": {"file": "ct_crop.png", "slice_index_k": crop.slice_index, "lesion_diameter_mm": diameter,
                 "box_rows_cols": {"center_row": crop.box.center_row, "center_col": crop.box.center_col,
                                   "side_rows": crop.box.side_rows, "side_cols": crop.box.side_cols}},
    }


def _run_point(args: argparse.Namespace, side: str | None, manual: np.ndarray | None) -> int:
    point = parse_point(args.point, "--point")
    volume = load_ct(args.ct, args.series_uid)
    ijk = check_inside(volume, point, "--point")
    locator = LesionLocator(volume, side, manual, nipple_source="--nipple")
    _print_nipples(locator.nipples)
    location = locator.from_point(point)
    if location.side_chosen_by is not None:
        print(f"side chosen by the {location.side_chosen_by}"
              f"{'' if location.side_chosen_by == 'nearer nipple' else '; give --side to choose'}: {location.side}")
    _require_nipple(locator.nipples, location.side)
    print(f"point: RAS {format_point(point)} mm, voxel ijk {format_point(ijk)}")
    print(f"side: {location.side}")
    print(f"clock: {format_clock(location.clock_hour)}")
    print(f"distance: {location.distance_mm:.1f} mm from the {location.side} nipple (coronal plane); "
          f"{location.depth_mm:.1f} mm posterior to it")
    return 0
