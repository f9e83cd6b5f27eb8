"""Parse what a radiologist types (breast side, clock position, distance from the nipple) and format clock hours and points back."""

from __future__ import annotations

import math
import re

import numpy as np

from BreastFusionLib.errors import UserInputError

MAX_DISTANCE_MM = 250.0

_CLOCK_ACCEPTED = "an hour from 1 to 12 with optional minutes, e.g. '2', '2:30', '230', '2.5' or \"2 o'clock\""
_CLOCK_SUFFIX = re.compile(r"\s*(o\s*'?\s*clock|h)$")
_HOUR_MINUTES = re.compile(r"^(\d{1,2})(?::(\d{2}))?$")
_COMPACT = re.compile(r"^(\d{1,2})(\d{2})$")
_DECIMAL_HOUR = re.compile(r"^\d{1,2}\.\d+$")
_DISTANCE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(mm|cm)?$")
_SIDES = {"left": "left", "l": "left", "lt": "left", "right": "right", "r": "right", "rt": "right"}


def parse_clock(text: str) -> float:
    """Clock hour in (0, 12] from '2', '2:30', '230', '2.5', "2 o'clock" ('2:30' -> 2.5, '12:30' -> 0.5)."""
    cleaned = str(text).strip().lower().replace("\u2019", "'").replace("\u2018", "'")
    cleaned = _CLOCK_SUFFIX.sub("", cleaned).strip()
    hours = minutes = None
    if match := _HOUR_MINUTES.match(cleaned) or _COMPACT.match(cleaned):
        hours, minutes = int(match.group(1)), int(match.group(2) or 0)
    elif _DECIMAL_HOUR.match(cleaned):
        hours, minutes = int(float(cleaned)), (float(cleaned) % 1.0) * 60.0
    if hours is None or not (1 <= hours <= 12) or not (0 <= minutes < 60):
        raise UserInputError(f"clock position {text!r} is not valid: use {_CLOCK_ACCEPTED}")
    value = hours + minutes / 60.0
    return value - 12.0 if value > 12.0 else value


def format_clock(hour: float) -> str:
    """Clock hour in (0, 12] as 'h:mm' (2.5 -> '2:30', 0.25 -> '12:15')."""
    total = int(round(hour * 60.0)) % 720
    hours, minutes = divmod(total, 60)
    return f"{hours or 12}:{minutes:02d}"


def format_point(values, digits: int = 1) -> str:
    """A point or voxel index as '(x, y, z)' with ``digits`` decimals, as messages and the terminal show it."""
    return "(" + ", ".join(f"{v:.{digits}f}" for v in np.asarray(values, float)) + ")"


def parse_distance_mm(text: str) -> float:
    """Distance from the nipple in mm from '30', '30mm', '30 mm', '3cm', '3.5 cm' (a bare number is mm)."""
    cleaned = str(text).strip().lower().replace(",", ".")
    match = _DISTANCE.match(cleaned)
    if match is None:
        why = "it cannot be negative" if cleaned.startswith("-") else "it is not a number of mm or cm"
        raise UserInputError(
            f"distance from the nipple {text!r} is not valid ({why}): use e.g. '30', '30 mm' or '3.5 cm' (a bare number is mm)"
        )
    value = float(match.group(1)) * (10.0 if match.group(2) == "cm" else 1.0)
    if not math.isfinite(value) or value > MAX_DISTANCE_MM:
        raise UserInputError(
            f"distance from the nipple {text!r} is not plausible: it must be at most {MAX_DISTANCE_MM:.0f} mm (a bare number is mm)"
        )
    return value


def parse_side(text: str) -> str:
    """'left' or 'right' from left/right/L/R/lt/rt in any case."""
    side = _SIDES.get(str(text).strip().lower())
    if side is None:
        raise UserInputError(f"breast side {text!r} is not valid: use 'left' or 'right' (or L / R)")
    return side
