"""Lesion points on chest CT: parsing 'x,y,z', checking them against the volume and the body, and
locating a mass from either a point or a reported clock position (shared by ``locate`` and ``predict``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import ClockPosition, clock_from_point
from BreastFusionLib.localization.nipples import body_mask, find_nipples, propose_mass

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_POINT = re.compile(rf"^\s*\(?\s*({_NUMBER})\s*[,;\s]\s*({_NUMBER})\s*[,;\s]\s*({_NUMBER})\s*\)?\s*$")


def parse_point(text: str, what: str) -> np.ndarray:
    """'x,y,z' (mm, RAS) -> array; a clear error otherwise."""
    match = _POINT.match(str(text))
    if match is None:
        raise UserInputError(f"{what} {text!r} is not valid: use three numbers in mm, RAS as in 3D Slicer, e.g. '-47.2,243.6,-590.3'")
    return np.array([float(v) for v in match.groups()])


def _fmt(values, digits: int = 1) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in np.asarray(values, float)) + ")"


def check_inside(volume: CTVolume, point: np.ndarray, what: str) -> np.ndarray:
    """The voxel index (i, j, k) of ``point``; a clear error naming the volume's extent if it lies outside."""
    ijk = volume.ras_to_ijk(point)
    if not volume.contains_ijk(ijk):
        ni, nj, nk = volume.shape_ijk
        low = volume.ijk_to_ras_points(np.array([-0.5, -0.5, -0.5]))
        high = volume.ijk_to_ras_points(np.array([ni - 0.5, nj - 0.5, nk - 0.5]))
        extent = ", ".join(f"{name} {min(a, b):.1f}..{max(a, b):.1f}" for name, a, b in zip("xyz", low, high))
        raise UserInputError(f"{what} {_fmt(point)} mm (RAS) lies outside the CT volume (voxel {_fmt(ijk, 0)} of {ni}x{nj}x{nk}; "
                             f"the volume spans {extent} mm). Coordinates are RAS as in 3D Slicer: for DICOM (LPS) negate x and y.")
    return ijk


def check_in_body(volume: CTVolume, point: np.ndarray, what: str) -> None:
    """A clear error when ``point`` (inside the volume) lies in the air outside the patient's body."""
    ijk = check_inside(volume, point, what)
    i, j, k = (int(np.clip(np.round(v), 0, n - 1)) for v, n in zip(ijk, volume.shape_ijk))
    if not body_mask(volume)[k, j, i]:
        raise UserInputError(f"{what} {_fmt(point)} mm (RAS) lies outside the patient's body (in air, voxel {i},{j},{k}): "
                             "check the point; coordinates are RAS as in 3D Slicer (for DICOM LPS negate x and y)")


@dataclass
class LesionLocation:
    """Where the mass is on CT and how a radiologist would report it (side, clock, distance from the nipple)."""

    point_ras: np.ndarray
    side: str | None
    clock_hour: float | None
    distance_mm: float | None
    nipple_ras: np.ndarray | None
    source: str  # "point" or "clock"
    score: float | None = None
    message: str = ""


def locate_lesion(volume: CTVolume, point_ras: np.ndarray | None = None, position: ClockPosition | None = None,
                  side: str | None = None) -> LesionLocation:
    """The mass from a RAS point (side, clock and distance computed when a nipple is found) or from a
    reported ``position`` (the nipple of its side is found and the mass proposed in that sector)."""
    if (point_ras is None) == (position is None):
        raise UserInputError("locate the CT lesion with either a point (x,y,z RAS mm) or side + clock + distance, not both")
    nipples = find_nipples(volume)
    if position is not None:
        nipple = nipples[position.side]
        if not nipple.found:
            raise UserInputError(f"{nipple.message}: give the lesion as a point (x,y,z RAS mm) instead")
        proposal = propose_mass(volume, nipple.point_ras, position)
        seen = clock_from_point(nipple.point_ras, proposal.point_ras, position.side)
        return LesionLocation(np.asarray(proposal.point_ras, float), position.side, seen.hour, seen.distance_mm,
                              np.asarray(nipple.point_ras, float), "clock", proposal.score, proposal.message)
    point = np.asarray(point_ras, dtype=float)
    check_in_body(volume, point, "lesion point")
    if side is None:
        found = [s for s, r in nipples.items() if r.found]
        side = (min(found, key=lambda s: float(np.linalg.norm(nipples[s].point_ras - point))) if len(found) == 2
                else ("right" if point[0] >= 0 else "left"))  # +x = patient right
    nipple = nipples[side]
    if not nipple.found:
        return LesionLocation(point, side, None, None, None, "point", message=f"{nipple.message}: no clock position")
    seen = clock_from_point(nipple.point_ras, point, side)
    return LesionLocation(point, side, seen.hour, seen.distance_mm, np.asarray(nipple.point_ras, float), "point")
