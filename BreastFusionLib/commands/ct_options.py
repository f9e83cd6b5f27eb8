"""The command-line options that name a chest CT and a lesion on it, shared by ``locate`` and ``predict``."""

from __future__ import annotations

import argparse
import re


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
