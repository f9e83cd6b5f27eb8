"""Synthetic breast ultrasound: tissue layers with speckle, a mass, and burned-in scanner marks.

Image formation, from the skin down (rows = depth, 0.15 mm per pixel): a bright skin line,
hypoechoic subcutaneous fat, echogenic fibroglandular tissue with wavy boundaries, retromammary
fat and striated pectoral muscle; multiplicative speckle (Rayleigh, smoothed along the beam's
lateral direction) and depth attenuation, log-compressed as a scanner displays B-mode: each
tissue's echogenicity is its mean grey level, and speckle and attenuation add
20 log10(amplitude) / DYNAMIC_RANGE_DB to it. (A linear display made bright speckle grains as
white and sharp as burned-in marks: the overlay detector then flagged about 20% of each image,
against 0.4% on BUSI.) The mass is hypoechoic; its appearance score t (see
``latent``) sets the morphology of BI-RADS: t near 0 gives an oval, circumscribed mass parallel
to the skin with an echogenic capsule and posterior enhancement; t near 1 an irregular,
spiculated, taller-than-wide mass with posterior shadowing. The frame then gets what real
scanners burn in: side/clock text, a vendor logo, a depth ruler and, on most images, calipers.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from BreastFusionLib.localization.parsing import format_clock
from BreastFusionLib.synthetic.latent import LesionSpec

PIXEL_MM = 0.15
DYNAMIC_RANGE_DB = 50.0  # display dynamic range of the log compression (scanners use 40-70 dB)
ROWS, COLS = 420, 560
MARGIN_TOP, MARGIN_LEFT = 40, 40


def _wavy(cols: int, base: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    x = np.arange(cols)
    phase, wavelength = rng.uniform(0, 2 * np.pi), rng.uniform(150, 400)
    return base + amplitude * np.sin(2 * np.pi * x / wavelength + phase)


def _tissue(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Echogenicity (before speckle) of the layered breast, depth along rows."""
    depth = np.arange(rows)[:, None]
    skin = _wavy(cols, rng.uniform(15, 25), 3, rng)
    fat = _wavy(cols, rng.uniform(50, 90), 12, rng)
    gland_end = _wavy(cols, rng.uniform(270, 310), 15, rng)
    muscle = gland_end + rng.uniform(20, 35)
    echo = np.full((rows, cols), 0.30, dtype=np.float32)
    echo[depth < skin] = 0.75
    gland = (depth >= fat) & (depth < gland_end)
    strands = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), (3, 10))
    echo[gland] = 0.50 + 0.4 * np.clip(strands[gland] * 4, -0.5, 0.5)
    stripes = 0.42 + 0.08 * np.sin(depth * 2 * np.pi / rng.uniform(12, 20))
    echo = np.where(depth >= muscle, np.broadcast_to(stripes, echo.shape), echo)
    return echo


def _mass_mask(rows: int, cols: int, center: tuple[float, float], spec: LesionSpec, t: float,
               rng: np.random.Generator) -> np.ndarray:
    """Irregular region: an ellipse (taller-than-wide as t grows) with margin harmonics and spicules."""
    width = spec.diameter_mm / PIXEL_MM
    aspect = np.clip(0.55 + 0.6 * t + rng.normal(0, 0.06), 0.4, 1.4)
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    dy, dx = (rr - center[0]) / (width * aspect / 2), (cc - center[1]) / (width / 2)
    radius, angle = np.hypot(dy, dx), np.arctan2(dy, dx)
    margin = np.zeros_like(angle)
    for harmonic in range(3, 9):
        margin += rng.normal(0, 0.015 + 0.07 * t) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    for _ in range(int(round(t * rng.uniform(6, 14)))):
        direction = rng.uniform(-np.pi, np.pi)
        margin += t * rng.uniform(0.3, 0.6) * np.maximum(np.cos(angle - direction), 0) ** 200
    return radius < 1.0 + margin


def render_us(spec: LesionSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Render one US frame: (uint8 image, rows x cols x 3 when colour marks were drawn else grey),
    the lesion mask (bool) and the annotation text shown on the frame."""
    t = spec.us_appearance
    rows, cols = ROWS - MARGIN_TOP, COLS - 2 * MARGIN_LEFT
    echo = _tissue(rows, cols, rng)
    height = spec.diameter_mm / PIXEL_MM * (0.55 + 0.6 * t)
    center = (rng.uniform(max(80 + height / 2, rows * 0.3), max(rows - height / 2 - 40, 81 + height / 2)),
              rng.uniform(cols * 0.3, cols * 0.7))
    mask = _mass_mask(rows, cols, center, spec, t, rng)
    inside = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), 2) * 0.05 * (0.5 + t)
    echo[mask] = (0.10 + 0.10 * (1 - t) + inside[mask]).astype(np.float32)
    if rng.uniform() > t:  # echogenic capsule, typical of circumscribed benign masses
        rim = mask & ~ndimage.binary_erosion(mask, iterations=3)
        echo[rim] = 0.7
    lesion_cols = np.flatnonzero(mask.any(axis=0))
    bottom = np.flatnonzero(mask.any(axis=1))[-1]
    posterior = np.zeros((rows, cols), dtype=np.float32)
    posterior[bottom:, lesion_cols[0]:lesion_cols[-1] + 1] = 1.0
    posterior = ndimage.gaussian_filter(posterior, (2, 6)) * np.exp(-np.maximum(np.arange(rows)[:, None] - bottom, 0) / 250.0)
    echo *= 1.0 + posterior * (0.9 * (0.5 - t) * 2)
    speckle = np.abs(ndimage.gaussian_filter(rng.standard_normal((rows, cols)), (0.8, 2.0)) +
                     1j * ndimage.gaussian_filter(rng.standard_normal((rows, cols)), (0.8, 2.0)))
    speckle /= speckle.mean()
    attenuation = np.exp(-np.arange(rows)[:, None] / rng.uniform(700, 1100))
    frame = np.clip(echo + 20 * np.log10(np.maximum(speckle * attenuation, 1e-6)) / DYNAMIC_RANGE_DB, 0, 1)
    canvas = np.zeros((ROWS, COLS), dtype=np.float32)
    canvas[MARGIN_TOP:, MARGIN_LEFT:MARGIN_LEFT + cols] = frame
    full_mask = np.zeros((ROWS, COLS), dtype=bool)
    full_mask[MARGIN_TOP:, MARGIN_LEFT:MARGIN_LEFT + cols] = mask
    image, text = _burn_in_marks((canvas * 255).astype(np.uint8), full_mask, spec, rng)
    return image, full_mask, text


def draw_calipers(draw: ImageDraw.ImageDraw, mask: np.ndarray, fill,
                  dots: ImageDraw.ImageDraw | None = None) -> tuple[int, int]:
    """'+' calipers at the lesion's leftmost, rightmost, top and bottom pixels and a dotted line across it
    (on ``dots`` when given, else on ``draw``), drawn with ``fill`` as scanners draw them; returns the
    lesion's width and height in pixels."""
    rows, cols = np.nonzero(mask)
    left, right = (int(rows[cols.argmin()]), int(cols.min())), (int(rows[cols.argmax()]), int(cols.max()))
    top, bottom = (int(rows.min()), int(cols[rows.argmin()])), (int(rows.max()), int(cols[rows.argmax()]))
    for (row, col) in (left, right, top, bottom):
        draw.line((col - 5, row, col + 5, row), fill=fill, width=1)
        draw.line((col, row - 5, col, row + 5), fill=fill, width=1)
    for x in range(left[1], right[1], 8):
        y = int(left[0] + (right[0] - left[0]) * (x - left[1]) / max(right[1] - left[1], 1))
        (draw if dots is None else dots).point((x, y), fill=fill)
    return right[1] - left[1], bottom[0] - top[0]


def _burn_in_marks(grey: np.ndarray, mask: np.ndarray, spec: LesionSpec, rng: np.random.Generator):
    """Side/clock text, logo, depth ruler and (on 70 % of images) calipers, like real scanners."""
    colour = rng.uniform() < 0.15
    picture = Image.fromarray(grey).convert("RGB" if colour else "L")
    draw = ImageDraw.Draw(picture)
    white = (255, 255, 255) if colour else 255
    caliper = (255, 230, 0) if colour else 255
    font = ImageFont.load_default(size=int(rng.integers(13, 18)))
    text = f"{spec.side.upper()} BREAST {format_clock(spec.clock_hour)}"
    draw.text((rng.integers(60, 250), 8), text, fill=white, font=font)
    draw.rectangle((4, 4, 30, 22), outline=white)
    draw.text((8, 6), "GE", fill=white, font=ImageFont.load_default(size=12))
    for depth_cm in range(0, 5):
        y = MARGIN_TOP + int(depth_cm * 10 / PIXEL_MM)
        if y < grey.shape[0]:
            draw.line((COLS - 30, y, COLS - 22, y), fill=white)
            draw.text((COLS - 18, max(y - 6, 0)), str(depth_cm), fill=white, font=ImageFont.load_default(size=11))
    if rng.uniform() < 0.7:
        width, height = draw_calipers(draw, mask, caliper)
        size_text = f"D1 {width * PIXEL_MM / 10:.2f}cm  D2 {height * PIXEL_MM / 10:.2f}cm"
        draw.text((MARGIN_LEFT + 10, grey.shape[0] - 22), size_text, fill=white, font=ImageFont.load_default(size=12))
    return np.asarray(picture), text
