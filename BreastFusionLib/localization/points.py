"""Lesion points on chest CT: parsing 'x,y,z', checking them against the volume and the body, and
locating a mass from either a point or a reported clock position (shared by ``locate``, ``predict``
and the 3D Slicer panel).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import SIDES, ClockPosition, clock_from_point
from BreastFusionLib.localization.body import body_mask
from BreastFusionLib.localization.mass import propose_mass
from BreastFusionLib.localization.nipples import find_nipples
from BreastFusionLib.localization.parsing import format_clock

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

    @property
    def depth_mm(self) -> float | None:
        """How far the mass lies posterior to its nipple (mm), or None without a nipple."""
        return None if self.nipple_ras is None else float(self.nipple_ras[1] - self.point_ras[1])

    def describe(self) -> str:
        """The position as a report gives it: 'Left breast, 2:00 o'clock, 30 mm from the nipple, 12 mm deep'."""
        if self.clock_hour is None:
            return f"{(self.side or 'unknown').capitalize()} breast: no clock position ({self.message or 'no nipple'})"
        return (f"{self.side.capitalize()} breast, {format_clock(self.clock_hour)} o'clock, {self.distance_mm:.0f} mm "
                f"from the nipple, {self.depth_mm:.0f} mm deep")


def side_of_point(point_ras: np.ndarray, nipples: dict[str, np.ndarray | None]) -> tuple[str, str]:
    """(side, how it was chosen): the breast of the nearer nipple when both nipples are known, otherwise
    the sign of x (+x = patient right), since with one nipple missing the nearer one may be the other breast's."""
    point = np.asarray(point_ras, dtype=float)
    if all(nipples.get(side) is not None for side in SIDES):
        return min(SIDES, key=lambda s: float(np.linalg.norm(np.asarray(nipples[s], float) - point))), "nearer nipple"
    return ("right" if point[0] >= 0 else "left"), "sign of x, +x = patient right"


def describe_point(point_ras: np.ndarray, nipples: dict[str, np.ndarray | None], side: str | None = None) -> LesionLocation:
    """Side, clock position, distance and depth of a CT point from the nipples ``{"right": xyz or None, "left": ...}``.

    The one rule for a point, used by ``locate``, ``predict`` and the 3D Slicer panel: ``side`` when given,
    else ``side_of_point``; without that side's nipple there is no clock position (the message says so).
    """
    point = np.asarray(point_ras, dtype=float)
    side = side or side_of_point(point, nipples)[0]
    nipple = nipples.get(side)
    if nipple is None:
        return LesionLocation(point, side, None, None, None, "point", message=f"no {side} nipple")
    seen = clock_from_point(nipple, point, side)
    return LesionLocation(point, side, seen.hour, seen.distance_mm, np.asarray(nipple, float), "point")


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
    location = describe_point(point, {s: r.point_ras if r.found else None for s, r in nipples.items()}, side)
    if location.clock_hour is None:
        location.message = f"{nipples[location.side].message}: no clock position"
    return location
