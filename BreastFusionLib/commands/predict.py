"""``breastfusion predict``: malignancy probability of one breast mass from a US image and/or a chest CT.

Loads the trained models of a bundle once, crops the lesion exactly as in training, and writes into
``--out``: ``result.json`` (schema in docs/INFERENCE.md, read by the 3D Slicer module), the crops,
heat maps in original image coordinates (``maps/*.npy``), overlay PNGs and a self-contained
``report.html``. No patient identifier and no input path is written anywhere.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from BreastFusionLib.commands.ct_options import add_ct_options, add_lesion_diameter_option, lesion_diameter_mm
from BreastFusionLib.ct.io import load_ct
from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.display import ensemble_text
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.inference.loaded_bundle import LoadedBundle, load_bundle
from BreastFusionLib.inference.case import CaseResult, default_models, predict_case
from BreastFusionLib.inference.outputs import DISCLAIMER, ensemble_spread, write_outputs
from BreastFusionLib.localization.clock import ClockPosition
from BreastFusionLib.localization.parsing import format_clock, parse_clock, parse_distance_mm, parse_side
from BreastFusionLib.localization.points import parse_point
from BreastFusionLib.networks import MODALITIES
from BreastFusionLib.us.io import load_lesion_mask, load_us_image

HELP = "malignancy probability (US, CT, fusion models) of one breast mass, with crops, heat maps and a report"
_BOX = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?)\s*,\s*([-+]?\d+(?:\.\d*)?)\s*,\s*([-+]?\d+(?:\.\d*)?)\s*,\s*([-+]?\d+(?:\.\d*)?)\s*$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="trained bundle folder (models/<m>/model.pt, runs/<m>/metrics.json)")
    parser.add_argument("--models", help="comma list among us,ct,fusion (default: every trained model the inputs allow)")
    parser.add_argument("--us", help="ultrasound image: PNG/JPEG/TIFF or DICOM")
    lesion = parser.add_mutually_exclusive_group()
    lesion.add_argument("--us-box", help="US lesion box 'x0,y0,x1,y1' in pixels (x = column, y = row)")
    lesion.add_argument("--us-mask", help="US lesion mask image (non-zero = lesion), same size as the US image")
    add_ct_options(parser)
    add_lesion_diameter_option(parser)
    parser.add_argument("--spatial-size", type=int, help="network input size, when the bundle has no configs/ with it")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average over horizontal/vertical flips")
    parser.add_argument("--no-heatmaps", action="store_true", help="skip attention and Grad-CAM maps (faster)")
    parser.add_argument("--out", required=True, help="output folder (created)")


def _box(text: str) -> tuple[float, float, float, float]:
    match = _BOX.match(text)
    if match is None:
        raise UserInputError(f"--us-box {text!r} is not valid: use four pixel numbers 'x0,y0,x1,y1'")
    return tuple(float(v) for v in match.groups())


def checked_models(names: list[str] | None, bundle_dir: Path, have: set[str]) -> list[str]:
    """``names`` checked against the known models; by default every trained model the inputs ``have`` allow."""
    if names is not None:
        unknown = [m for m in names if m not in MODALITIES]
        if unknown or not names:
            raise UserInputError(f"models {','.join(names) or '(none)'}: choose among {','.join(MODALITIES)}")
        return list(names)
    usable = default_models(MODALITIES, have)
    trained = [m for m in usable if any((bundle_dir / "models" / m / f).is_file() for f in ("model.pt", "model.ts"))]
    return trained or usable  # none trained: loading names what is missing


@dataclass
class CaseRequest:
    """One case as the command line gives it, checked: which models, the inputs and where the lesion is."""

    bundle: Path
    models: list[str]
    spatial_size: int | None
    us: str | None
    us_box: tuple[float, float, float, float] | None
    us_mask: str | None
    ct: str | CTVolume | None  # a file or folder, or a volume already in memory (the Slicer module's)
    series_uid: str | None
    point: np.ndarray | None
    clock: ClockPosition | None
    lesion_diameter_mm: float | None
    heatmaps: bool
    tta: bool
    out: Path


def parse_case(args: argparse.Namespace) -> CaseRequest:
    """Check every argument of ``predict`` together; a one-line ``UserInputError`` names what is wrong."""
    if args.us is None and args.ct is None:
        raise UserInputError("give a US image (--us) and/or a chest CT (--ct)")
    if args.us is not None and args.us_box is None and args.us_mask is None:
        raise UserInputError("the US lesion needs --us-box x0,y0,x1,y1 or --us-mask MASK.png")
    clock_args = [args.side, args.clock, args.distance]
    if args.point is not None and any(v is not None for v in clock_args[1:]):
        raise UserInputError("give the CT lesion as --point x,y,z or as --side/--clock/--distance, not both")
    if args.ct is not None and args.point is None and None in clock_args:
        raise UserInputError("the CT lesion needs --point x,y,z (RAS mm) or --side, --clock and --distance "
                             "(e.g. --side left --clock 2 --distance 30mm)")
    clock = None
    if args.point is None and args.clock is not None:
        clock = ClockPosition(parse_side(args.side), parse_clock(args.clock), parse_distance_mm(args.distance))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file, not a folder")
    have = {key for key in ("us", "ct") if getattr(args, key) is not None}
    return CaseRequest(
        bundle=Path(args.bundle), spatial_size=args.spatial_size,
        models=checked_models([m.strip().lower() for m in args.models.split(",") if m.strip()] if args.models else None,
                              Path(args.bundle), have),
        us=args.us, us_box=_box(args.us_box) if args.us_box else None, us_mask=args.us_mask, ct=args.ct,
        series_uid=args.series_uid, point=parse_point(args.point, "--point") if args.point is not None else None,
        clock=clock, lesion_diameter_mm=lesion_diameter_mm(args), heatmaps=not args.no_heatmaps, tta=args.tta,
        out=out)


def predict_into(bundle: LoadedBundle, case: CaseRequest) -> CaseResult:
    """Load the case's images, predict with the loaded ``bundle`` and write every output into ``case.out``."""
    us_image = load_us_image(case.us) if case.us is not None else None
    mask = load_lesion_mask([case.us_mask], us_image.shape) if case.us_mask else None
    volume = case.ct if isinstance(case.ct, CTVolume) or case.ct is None else load_ct(case.ct, case.series_uid)
    result = predict_case(bundle, us_image=us_image, us_box=case.us_box, us_mask=mask, ct=volume, ct_point=case.point,
                          clock=case.clock, lesion_diameter_mm=case.lesion_diameter_mm, models=case.models,
                          heatmaps=case.heatmaps, tta=case.tta)
    write_outputs(result, bundle, case.out)
    return result


def print_summary(result: CaseResult, out: Path) -> None:
    """What a user reads in the terminal: each model's answer, where the CT lesion is, notes, the disclaimer."""
    for name, entry in result.models.items():
        missing = f" (answered without {entry.missing_modality})" if entry.missing_modality else ""
        spread = ensemble_text(ensemble_spread(entry))
        print(f"{name}: probability of malignancy {entry.probability:.3f}, threshold {entry.threshold:.3f} "
              f"-> {entry.decision}{missing}" + (f"\n  ensemble of {spread}" if spread else ""))
    if result.location is not None:
        where = result.location
        clock_text = format_clock(where.clock_hour) if where.clock_hour is not None else "clock unknown"
        distance = f"{where.distance_mm:.0f} mm" if where.distance_mm is not None else "? mm"
        print(f"CT lesion: {where.side} breast, {clock_text}, {distance} from the nipple, "
              f"axial slice {result.crops['ct'].slice_index}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote result.json, report.html, crops, overlays and maps/ to {out}")
    print(DISCLAIMER)


def run(args: argparse.Namespace) -> int:
    """Check every argument, load the bundle once, predict, write the outputs."""
    case = parse_case(args)
    bundle = load_bundle(case.bundle, case.models, spatial_size=case.spatial_size)
    print_summary(predict_into(bundle, case), case.out)
    return 0
