"""The command-line options that name a chest CT and a lesion on it, shared by ``locate`` and ``predict``."""

from __future__ import annotations

import argparse
import math
import re
import sys

from BreastFusionLib.ct.crop import DEFAULT_LESION_DIAMETER_MM
from BreastFusionLib.errors import UserInputError

MAX_LESION_DIAMETER_MM = 150.0


def add_ct_options(parser: argparse.ArgumentParser, ct_required: bool = False) -> None:
    """--ct, --series-uid, --point, --side, --clock and --distance, with the same help everywhere."""
    # Let values such as "-47,243,-590" or "-5mm" through as values (Python < 3.13 takes them for options).
    parser._negative_number_matcher = re.compile(r"^-\.?\d")
    parser.add_argument("--ct", required=ct_required,
                        help="chest CT: DICOM folder, one DICOM file of the series, or .nii/.nii.gz/.nrrd/.mha")
    parser.add_argument("--series-uid", help="CT series to use when the DICOM folder holds several")
    parser.add_argument("--point", help="CT lesion point 'x,y,z' in RAS mm (as in 3D Slicer)")
    parser.add_argument("--side", help="breast side: left/right (L/R), with --clock and --distance")
    parser.add_argument("--clock", help="clock position: '2', '2:30', '230', \"2 o'clock\" (12 superior, 3 toward the patient's left)")
    parser.add_argument("--distance", help="distance from the nipple in the coronal plane: '30', '30mm', '3cm' (a bare number is mm)")


class _DeprecatedAlias(argparse.Action):
    """An old option name that still works and says which name to use."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"note: {option_string} is deprecated; use --lesion-diameter", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_lesion_diameter_option(parser: argparse.ArgumentParser, deprecated_alias: str | None = None) -> None:
    """--lesion-diameter (read with ``lesion_diameter_mm``), and an old name for it that still works."""
    parser.add_argument("--lesion-diameter", metavar="MM",
                        help=f"lesion diameter for the CT crop, mm (default {DEFAULT_LESION_DIAMETER_MM:g}); '20' or '20mm'")
    if deprecated_alias is not None:
        parser.add_argument(deprecated_alias, dest="lesion_diameter", metavar="MM", action=_DeprecatedAlias,
                            help="deprecated name of --lesion-diameter (still works)")


def lesion_diameter_mm(args: argparse.Namespace) -> float:
    """The lesion diameter in mm from --lesion-diameter ('20' or '20mm'), 20 mm when absent; a clear error otherwise."""
    text = args.lesion_diameter
    if text is None:
        return DEFAULT_LESION_DIAMETER_MM
    try:
        value = float(str(text).lower().removesuffix("mm").strip())
    except ValueError:
        raise UserInputError(f"--lesion-diameter {text!r} is not a number of mm") from None
    if not (math.isfinite(value) and 0 < value <= MAX_LESION_DIAMETER_MM):
        raise UserInputError(f"--lesion-diameter {text!r} must be a lesion diameter in mm, above 0 and at most "
                             f"{MAX_LESION_DIAMETER_MM:g}")
    return value
