"""Clock position + distance from the nipple <-> a point in RAS patient coordinates.

Radiologists report a breast lesion as side, clock position and distance from the nipple. The
clock is read facing the patient with 12 o'clock superior, for both breasts. In RAS (+x = patient
right, +y = anterior, +z = superior): 12 o'clock = +z, 3 o'clock = -x (toward the patient's left),
6 o'clock = -z, 9 o'clock = +x. So 3 o'clock is medial in the right breast and lateral in the left.

The distance is measured in the coronal plane (x, z) from the nipple; depth (y) is not part of the
clock description and must come from the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIDES = ("right", "left")


@dataclass(frozen=True)
class ClockPosition:
    """A lesion position as a radiologist reports it: breast side, clock hour, distance in mm."""

    side: str
    hour: float
    distance_mm: float

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"breast side must be 'right' or 'left', got {self.side!r}")
        if not (0 < self.hour <= 12):
            raise ValueError(f"clock hour must be in (0, 12], got {self.hour!r}")
        if not (self.distance_mm >= 0):
            raise ValueError(f"distance from the nipple must be >= 0 mm, got {self.distance_mm!r}")


def clock_direction(hour: float) -> np.ndarray:
    """Unit vector in RAS (coronal plane, y = 0) pointing from the nipple toward ``hour`` o'clock."""
    angle = math.radians(30.0 * hour)
    return np.array([-math.sin(angle), 0.0, math.cos(angle)])


def point_from_clock(nipple_ras: np.ndarray, position: ClockPosition, depth_y: float | None = None) -> np.ndarray:
    """RAS point at ``position`` from ``nipple_ras``; y is the nipple's y unless ``depth_y`` is given."""
    point = np.asarray(nipple_ras, dtype=float) + position.distance_mm * clock_direction(position.hour)
    if depth_y is not None:
        point[1] = depth_y
    return point


def clock_from_point(nipple_ras: np.ndarray, point_ras: np.ndarray, side: str) -> ClockPosition:
    """Clock position and coronal-plane distance of ``point_ras`` seen from the nipple of ``side``."""
    offset = np.asarray(point_ras, dtype=float) - np.asarray(nipple_ras, dtype=float)
    distance = float(math.hypot(offset[0], offset[2]))
    hour = (math.degrees(math.atan2(-offset[0], offset[2])) / 30.0) % 12.0
    return ClockPosition(side=side, hour=12.0 if hour == 0 else hour, distance_mm=distance)
