"""Lesion points on chest CT and the one route to a lesion location.

``parse_point`` reads 'x,y,z'; ``check_inside`` / ``check_in_body`` check a point against the volume
and the body. ``LesionLocator`` (or ``locate_lesion`` in one call) goes from a CT, a point or a
reported clock position, and optionally a nipple placed by hand, to a ``LesionLocation``: side, clock
position, distance and depth from the nipple, the point, both nipples and a message. It serves
``breastfusion locate``, ``predict_case`` and ``cohort.prepare``; ``describe_point`` is its rule for a
point, which the 3D Slicer panel also uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.errors import UserInputError
from BreastFusionLib.localization.clock import SIDES, ClockPosition, clock_from_point
from BreastFusionLib.localization.body import body_mask
from BreastFusionLib.localization.mass import propose_mass
from BreastFusionLib.localization.nipples import NippleResult, find_nipples
from BreastFusionLib.localization.parsing import format_clock, format_point

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_POINT = re.compile(rf"^\s*\(?\s*({_NUMBER})\s*[,;\s]\s*({_NUMBER})\s*[,;\s]\s*({_NUMBER})\s*\)?\s*$")


def parse_point(text: str, what: str) -> np.ndarray:
    """'x,y,z' (mm, RAS) -> array; a clear error otherwise."""
    match = _POINT.match(str(text))
    if match is None:
        raise UserInputError(f"{what} {text!r} is not valid: use three numbers in mm, RAS as in 3D Slicer, e.g. '-47.2,243.6,-590.3'")
    return np.array([float(v) for v in match.groups()])


def check_inside(volume: CTVolume, point: np.ndarray, what: str) -> np.ndarray:
    """The voxel index (i, j, k) of ``point``; a clear error naming the volume's extent if it lies outside."""
    ijk = volume.ras_to_ijk(point)
    if not volume.contains_ijk(ijk):
        ni, nj, nk = volume.shape_ijk
        low = volume.ijk_to_ras_points(np.array([-0.5, -0.5, -0.5]))
        high = volume.ijk_to_ras_points(np.array([ni - 0.5, nj - 0.5, nk - 0.5]))
        extent = ", ".join(f"{name} {min(a, b):.1f}..{max(a, b):.1f}" for name, a, b in zip("xyz", low, high))
        raise UserInputError(f"{what} {format_point(point)} mm (RAS) lies outside the CT volume (voxel {format_point(ijk, 0)} of {ni}x{nj}x{nk}; "
                             f"the volume spans {extent} mm). Coordinates are RAS as in 3D Slicer: for DICOM (LPS) negate x and y.")
    return ijk


def check_in_body(volume: CTVolume, point: np.ndarray, what: str) -> np.ndarray:
    """The voxel index (i, j, k) of ``point``; a clear error when it lies outside the volume or in the air outside the body."""
    ijk = check_inside(volume, point, what)
    i, j, k = (int(np.clip(np.round(v), 0, n - 1)) for v, n in zip(ijk, volume.shape_ijk))
    if not body_mask(volume)[k, j, i]:
        raise UserInputError(f"{what} {format_point(point)} mm (RAS) lies outside the patient's body (in air, voxel {i},{j},{k}): "
                             "check the point; coordinates are RAS as in 3D Slicer (for DICOM LPS negate x and y)")
    return ijk


@dataclass
class LesionLocation:
    """Where the mass is on CT and how a radiologist would report it (side, clock, distance from the nipple).

    ``source`` is "point" or "clock"; from a clock position, ``reported`` is that position and ``point_ras``
    the proposed mass (``score`` 0..1, ``message`` describing it). ``nipples`` holds both breasts' nipples
    as used; ``side_chosen_by`` says how the side was chosen when the caller did not give it.
    """

    point_ras: np.ndarray
    side: str | None
    clock_hour: float | None
    distance_mm: float | None
    nipple_ras: np.ndarray | None
    source: str
    score: float | None = None
    message: str = ""
    ijk: np.ndarray | None = None
    reported: ClockPosition | None = None
    nipples: dict[str, NippleResult] = field(default_factory=dict)
    side_chosen_by: str | None = None

    @property
    def depth_mm(self) -> float | None:
        """How far the mass lies posterior to its nipple (mm), or None without a nipple."""
        return None if self.nipple_ras is None else float(self.nipple_ras[1] - self.point_ras[1])

    @property
    def clock(self) -> ClockPosition | None:
        """Side, clock hour and coronal distance of the mass as seen from its nipple, or None without a nipple."""
        return None if self.clock_hour is None else ClockPosition(self.side, self.clock_hour, self.distance_mm)

    def describe(self) -> str:
        """The position as a report gives it: 'Left breast, 2:00 o'clock, 30 mm from the nipple, 12 mm deep'."""
        if self.clock_hour is None:
            return f"{(self.side or 'unknown').capitalize()} breast: no clock position ({self.message or 'no nipple'})"
        return (f"{self.side.capitalize()} breast, {format_clock(self.clock_hour)} o'clock, {self.distance_mm:.0f} mm "
                f"from the nipple, {self.depth_mm:.0f} mm deep")


def side_of_x(point_ras: np.ndarray) -> str:
    """The breast on the side of the point's x (+x = patient right)."""
    return "right" if float(np.asarray(point_ras, float)[0]) >= 0 else "left"


def side_of_point(point_ras: np.ndarray, nipples: dict[str, np.ndarray | None]) -> tuple[str, str]:
    """(side, how it was chosen): the breast of the nearer nipple when both nipples are known, otherwise
    the sign of x (+x = patient right), since with one nipple missing the nearer one may be the other breast's."""
    point = np.asarray(point_ras, dtype=float)
    if all(nipples.get(side) is not None for side in SIDES):
        return min(SIDES, key=lambda s: float(np.linalg.norm(np.asarray(nipples[s], float) - point))), "nearer nipple"
    return side_of_x(point), "sign of x, +x = patient right"


def describe_point(point_ras: np.ndarray, nipples: dict[str, np.ndarray | None], side: str | None = None) -> LesionLocation:
    """Side, clock position, distance and depth of a CT point from the nipples ``{"right": xyz or None, "left": ...}``.

    The one rule for a point, used by ``LesionLocator`` and the 3D Slicer panel: ``side`` when given,
    else ``side_of_point``; without that side's nipple there is no clock position (the message says so).
    """
    point = np.asarray(point_ras, dtype=float)
    side = side or side_of_point(point, nipples)[0]
    nipple = nipples.get(side)
    if nipple is None:
        return LesionLocation(point, side, None, None, None, "point", message=f"no {side} nipple")
    seen = clock_from_point(nipple, point, side)
    return LesionLocation(point, side, seen.hour, seen.distance_mm, np.asarray(nipple, float), "point")


def manual_nipple(volume: CTVolume, point_ras: np.ndarray, side: str, source: str = "") -> NippleResult:
    """A nipple placed by hand (``source`` says how, e.g. the option that gave it), checked to lie in the volume."""
    how = f" ({source})" if source else ""
    ijk = check_inside(volume, point_ras, f"{source or 'the nipple given by hand'} {side}")
    return NippleResult(side, True, np.asarray(point_ras, float), ijk, 1.0, f"{side} nipple given by hand{how}")


class LesionLocator:
    """The one route from a chest CT to a ``LesionLocation``, in two steps a caller can show one by one.

    Building it finds both nipples; ``nipple_ras``, when given, replaces the nipple of ``side`` (by default
    the breast on the side of its x: a nipple given by hand names the breast in question). Then
    ``from_point`` or ``from_clock`` gives the lesion from a point or from a reported clock position.
    """

    def __init__(self, volume: CTVolume, side: str | None = None, nipple_ras: np.ndarray | None = None,
                 nipple_source: str = "") -> None:
        self.volume = volume
        self.side = side if side is not None or nipple_ras is None else side_of_x(nipple_ras)
        self.nipples = find_nipples(volume)
        if nipple_ras is not None:
            self.nipples[self.side] = manual_nipple(volume, nipple_ras, self.side, nipple_source)

    def nipple_points(self) -> dict[str, np.ndarray | None]:
        """Each side's nipple point (RAS mm), None where it was not found."""
        return {side: result.point_ras if result.found else None for side, result in self.nipples.items()}

    def from_clock(self, position: ClockPosition) -> LesionLocation:
        """The mass proposed in the reported sector from the nipple of its side; an error when that nipple is missing."""
        nipple = self.nipples[position.side]
        if not nipple.found:
            raise UserInputError(f"{nipple.message}: give the lesion as a point (x,y,z RAS mm) instead")
        proposal = propose_mass(self.volume, nipple.point_ras, position)
        seen = clock_from_point(nipple.point_ras, proposal.point_ras, position.side)
        return LesionLocation(np.asarray(proposal.point_ras, float), position.side, seen.hour, seen.distance_mm,
                              np.asarray(nipple.point_ras, float), "clock", proposal.score, proposal.message,
                              ijk=proposal.ijk, reported=position, nipples=self.nipples)

    def from_point(self, point_ras: np.ndarray) -> LesionLocation:
        """Side, clock position and distance of a point in the body (``describe_point``); no clock without its nipple."""
        point = np.asarray(point_ras, dtype=float)
        ijk = check_in_body(self.volume, point, "lesion point")
        nipples = self.nipple_points()
        side, chosen_by = (self.side, None) if self.side is not None else side_of_point(point, nipples)
        location = describe_point(point, nipples, side)
        location.ijk, location.nipples, location.side_chosen_by = ijk, self.nipples, chosen_by
        if location.clock_hour is None:
            location.message = f"{self.nipples[location.side].message}: no clock position"
        return location


def locate_lesion(volume: CTVolume, point_ras: np.ndarray | None = None, position: ClockPosition | None = None,
                  side: str | None = None, nipple_ras: np.ndarray | None = None) -> LesionLocation:
    """The lesion in one call (``LesionLocator``): from a RAS point (side, clock and distance computed when a
    nipple is found) or from a reported ``position`` (the mass proposed in that sector from its side's nipple)."""
    if (point_ras is None) == (position is None):
        raise UserInputError("locate the CT lesion with either a point (x,y,z RAS mm) or side + clock + distance, not both")
    locator = LesionLocator(volume, side, nipple_ras)
    return locator.from_clock(position) if position is not None else locator.from_point(point_ras)
