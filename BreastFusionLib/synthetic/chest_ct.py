"""Synthetic supine chest CT with two breasts, two nipples and one breast mass.

Geometry: 1.5 mm in-plane, 3 mm slices, 224 x 184 x 40 voxels (336 x 276 x 120 mm), canonical
orientation (i toward the patient's left, j posterior, k superior; see ``ct.volume``).
Anatomy, in HU: air -1000, a carbon table under the back, skin +40, subcutaneous fat -100, pectoral
muscle +50, ribs +700, lungs -850, heart and mediastinum +40, spine +500; each breast is a dome on
the chest wall (fat with fibroglandular strands of 0 HU, density varying by patient) topped by a
nipple. The mass sits at its reported clock position and distance from the nipple; its appearance
score t (see ``latent``) sets density (+25 HU benign-like .. +75 HU malignant-like), margin
irregularity and spiculation. Gaussian noise of 15 HU as in a low-dose scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from BreastFusionLib.ct.volume import CTVolume
from BreastFusionLib.localization.clock import ClockPosition, point_from_clock
from BreastFusionLib.synthetic.latent import LesionSpec

SPACING = (1.5, 1.5, 3.0)
SHAPE_IJK = (224, 184, 40)
TORSO_CENTER_Y, TORSO_A, TORSO_B = -30.0, 150.0, 95.0


@dataclass
class SyntheticCT:
    """A rendered chest CT and its ground truth (RAS mm)."""

    volume: CTVolume
    nipples_ras: dict[str, np.ndarray]
    mass_ras: np.ndarray
    distance_mm: float


def _geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ni, nj, nk = SHAPE_IJK
    si, sj, sk = SPACING
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag([-si, -sj, sk])
    matrix[:3, 3] = [(ni - 1) * si / 2, 138.0, -60.0]
    x = matrix[0, 3] - np.arange(ni) * si
    y = matrix[1, 3] - np.arange(nj) * sj
    z = matrix[2, 3] + np.arange(nk) * sk
    return matrix, x, y, z


def _chest_wall_y(x: np.ndarray) -> np.ndarray:
    """Anterior surface of the torso ellipse (y, mm) at lateral position x."""
    return TORSO_CENTER_Y + TORSO_B * np.sqrt(np.clip(1 - (x / TORSO_A) ** 2, 0, None))


def _breast_surface(x, z, nipple_x, nipple_z, radius, height):
    """Anterior skin height (y) of a breast dome with its nipple, on a (z, x) grid; -inf outside it."""
    base = _chest_wall_y(np.array(nipple_x))
    rho2 = ((x - nipple_x) / radius) ** 2 + ((z - nipple_z) / (radius * 0.85)) ** 2
    dome = np.where(rho2 < 1, base + height * np.clip(1 - rho2, 0, None) ** 0.9, -np.inf)
    nipple = 5.0 * np.exp(-((x - nipple_x) ** 2 + (z - nipple_z) ** 2) / (2 * 3.0**2))
    return dome + nipple


def render_ct(spec: LesionSpec, rng: np.random.Generator) -> SyntheticCT:
    """Render the chest CT of one case; the mass is placed at the spec's side and clock hour."""
    matrix, x, y, z = _geometry()
    zz, xx = np.meshgrid(z, x, indexing="ij")  # (k, i)
    anterior = _chest_wall_y(xx)
    breasts, nipples = {}, {}
    for side, sign in (("right", 1.0), ("left", -1.0)):
        nipple_x = sign * rng.uniform(72, 88)
        nipple_z = rng.uniform(-8, 8)
        radius, height = rng.uniform(50, 60), rng.uniform(30, 48)
        surface = _breast_surface(xx, zz, nipple_x, nipple_z, radius, height)
        breasts[side] = (nipple_x, nipple_z, radius, height)
        nipples[side] = np.array([nipple_x, float(_chest_wall_y(np.array(nipple_x))) + height + 5.0, nipple_z])
        anterior = np.maximum(anterior, surface)
    yy = y[None, :, None]  # broadcast to (k, j, i)
    torso = ((xx[:, None, :] / TORSO_A) ** 2 + ((yy - TORSO_CENTER_Y) / TORSO_B) ** 2) <= 1
    wall = _chest_wall_y(xx)[:, None, :]
    body = torso | ((yy <= anterior[:, None, :]) & (yy >= wall - 15))
    hu = np.full(body.shape, -1000.0, dtype=np.float32)
    hu[body] = -100.0
    breast_tissue = body & (yy > wall)
    density = rng.uniform(0.08, 0.3)
    field = ndimage.gaussian_filter(rng.standard_normal(body.shape).astype(np.float32), (0.7, 1.5, 1.5))
    field /= field.std()
    glandular = breast_tissue & (field > np.quantile(field, 1 - density)) & (yy < anterior[:, None, :] - 6)
    hu[glandular] = 0.0
    _draw_torso(hu, x, y)
    side = spec.side
    position = ClockPosition(side, spec.clock_hour, 0.0)
    nipple_x, nipple_z, radius, height = breasts[side]
    mass_radius = spec.diameter_mm / 2
    distance, depth = rng.uniform(15, 0.7 * radius - mass_radius), None
    while depth is None:
        spot = point_from_clock(nipples[side], ClockPosition(side, position.hour, distance))
        top = float(_breast_surface(np.array(spot[0]), np.array(spot[2]), nipple_x, nipple_z, radius, height))
        low, high = float(_chest_wall_y(np.array(spot[0]))) + mass_radius + 2, top - mass_radius - 4
        if high > low or distance < 1:
            depth = rng.uniform(low, max(high, low))
        distance *= 0.8 if depth is None else 1.0
    mass = point_from_clock(nipples[side], ClockPosition(side, position.hour, distance), depth_y=depth)
    _draw_mass(hu, x, y, z, mass, mass_radius, spec.ct_appearance, rng)
    _draw_skin(hu, body)
    hu[:, (y > -138) & (y < -133), :] = np.where(np.abs(x) < 160, -200.0, -1000.0)[None, None, :]
    hu += rng.normal(0, 15, hu.shape).astype(np.float32)
    volume = CTVolume(hu=np.clip(np.round(hu), -1024, 3071).astype(np.int16), ijk_to_ras=matrix)
    return SyntheticCT(volume=volume, nipples_ras=nipples, mass_ras=mass, distance_mm=float(distance))


def _ellipse(xx, yy, cx, cy, a, b):
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1


def _draw_torso(hu, x, y):
    """Muscle, ribs, lungs, heart and spine inside the torso ellipse (the same on every slice)."""
    xx, yy = x[None, :], y[:, None]  # (j, i) grid of one axial slice
    shapes = [(0, TORSO_CENTER_Y, TORSO_A - 12, TORSO_B - 14, 50.0)]
    for angle in np.linspace(0, 2 * np.pi, 22, endpoint=False):
        shapes.append(((TORSO_A - 24) * np.cos(angle), TORSO_CENTER_Y + (TORSO_B - 24) * np.sin(angle), 6, 5, 700.0))
    shapes += [(cx, TORSO_CENTER_Y - 5, 52, 62, -850.0) for cx in (-62.0, 62.0)]
    shapes += [(-15, TORSO_CENTER_Y + 20, 40, 38, 40.0), (0, TORSO_CENTER_Y - 70, 16, 16, 500.0)]
    for cx, cy, a, b, value in shapes:
        hu[:, _ellipse(xx, yy, cx, cy, a, b)] = value


def _draw_mass(hu, x, y, z, center, radius, t, rng):
    """An irregular, possibly spiculated mass; density and irregularity grow with ``t``."""
    reach = 3 * radius
    box = [np.flatnonzero(np.abs(axis - c) < reach) for axis, c in ((z, center[2]), (y, center[1]), (x, center[0]))]
    if any(index.size == 0 for index in box):
        return
    window = tuple(slice(index[0], index[-1] + 1) for index in box)
    zz, yy, xx = np.meshgrid(z[window[0]] - center[2], y[window[1]] - center[1], x[window[2]] - center[0], indexing="ij")
    distance = np.sqrt(xx**2 + yy**2 + zz**2)
    bumps = ndimage.gaussian_filter(rng.standard_normal(distance.shape).astype(np.float32), (0.8, 2.0, 2.0))
    bumps /= bumps.std()
    inside = distance / radius + (0.02 + 0.22 * t) * bumps < 1.0
    for _ in range(int(round(t * rng.uniform(6, 12)))):
        direction = rng.normal(size=3)
        direction[2] *= 0.3
        direction /= np.linalg.norm(direction)
        along = xx * direction[0] + yy * direction[1] + zz * direction[2]
        across = np.sqrt(np.maximum(distance**2 - along**2, 0))
        inside |= (along > 0) & (along < radius * rng.uniform(1.5, 2.3)) & (across < 1.2)
    hu[window][inside] = 25.0 + 50.0 * t + rng.normal(0, 4)


def _draw_skin(hu, body):
    """A 2 mm skin layer on every axial slice."""
    for k in range(hu.shape[0]):
        inner = ndimage.binary_erosion(body[k], iterations=1)
        hu[k][body[k] & ~inner] = 40.0
