"""Scanner-like domain shifts of a raw grey ultrasound image, each named, seeded and graded by severity.

A shift is ``apply(image, mask, level, rng) -> (image, mask)``: ``image`` a grey frame (rows, cols)
in [0, 1] as it leaves the scanner (before overlay removal and cropping), ``mask`` its lesion (bool,
same shape; only geometric shifts and the crop margin change it), ``level`` the severity in the
shift's own unit, ``rng`` a NumPy generator for the shifts that draw random patterns. The result is
float32 in [0, 1]. ``SHIFTS`` names each shift with its named severities and the level that leaves
the image unchanged (``identity``; None where no level does, as for JPEG).

Grey levels are read as a log-compressed B-mode display: a grey step of ``g`` is ``g *
DISPLAY_DYNAMIC_RANGE_DB`` dB of echo amplitude, so gain and time-gain compensation add dB, and a
different dynamic range rescales the distance from white.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from BreastFusionLib.crop import lesion_box_from_mask
from BreastFusionLib.synthetic.ultrasound import draw_calipers

DISPLAY_DYNAMIC_RANGE_DB = 60.0  # assumed for BUSI's exported frames (scanners display 40-80 dB)
TGC_SLIDERS = 8  # time-gain compensation sliders, evenly spaced in depth, as on a scanner's panel
SPECKLE_CONTRAST = 0.5  # a scanner's speckle reduction leaves about half of fully developed speckle's dB spread
SPECKLE_FLOOR = 0.1  # amplitude floor (-20 dB of the mean power) of the new speckle: no black pinholes


def _unit(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def resolution(image: np.ndarray, mask: np.ndarray, scale: float, rng: np.random.Generator):
    """Another pixel density: the frame and its lesion mask resampled by ``scale`` (1 unchanged, 0.5 half the pixels a side)."""
    if scale == 1:
        return _unit(image), mask
    shape = [max(8, round(side * scale)) for side in image.shape]
    zoom = [new / old for new, old in zip(shape, image.shape)]
    return _unit(ndimage.zoom(image, zoom, order=1)), ndimage.zoom(mask.astype(np.uint8), zoom, order=0) > 0


def blur(image: np.ndarray, mask: np.ndarray, sigma_px: float, rng: np.random.Generator):
    """A softer point-spread function: Gaussian blur of ``sigma_px`` pixels (0 unchanged)."""
    return _unit(ndimage.gaussian_filter(image, sigma_px)), mask


def gain(image: np.ndarray, mask: np.ndarray, gain_db: float, rng: np.random.Generator):
    """Overall gain: ``gain_db`` dB added to every echo (grey + gain / dynamic range; 0 unchanged)."""
    return _unit(image + gain_db / DISPLAY_DYNAMIC_RANGE_DB), mask


def time_gain(image: np.ndarray, mask: np.ndarray, swing_db: float, rng: np.random.Generator):
    """Time-gain compensation set differently: each of ``TGC_SLIDERS`` depth sliders moved by a random gain within
    +-``swing_db``/2 dB, interpolated over depth (rows; 0 unchanged)."""
    sliders = rng.uniform(-swing_db / 2, swing_db / 2, TGC_SLIDERS)
    depth_db = np.interp(np.arange(image.shape[0]), np.linspace(0, image.shape[0] - 1, TGC_SLIDERS), sliders)
    return _unit(image + depth_db[:, None] / DISPLAY_DYNAMIC_RANGE_DB), mask


def dynamic_range(image: np.ndarray, mask: np.ndarray, range_db: float, rng: np.random.Generator):
    """Another log compression: the display's dynamic range set to ``range_db`` dB (``DISPLAY_DYNAMIC_RANGE_DB``
    unchanged; less is harsher contrast, more is flatter and greyer)."""
    return _unit(1.0 - (1.0 - image) * DISPLAY_DYNAMIC_RANGE_DB / range_db), mask


def speckle(image: np.ndarray, mask: np.ndarray, grain_px: float, rng: np.random.Generator):
    """Another speckle size: the frame smoothed over ``grain_px`` pixels and a new speckle of that grain laid on it,
    in dB like a scanner's log display, at ``SPECKLE_CONTRAST`` of fully developed speckle's (0 unchanged)."""
    if grain_px == 0:
        return _unit(image), mask
    field = (ndimage.gaussian_filter(rng.standard_normal(image.shape), grain_px)
             + 1j * ndimage.gaussian_filter(rng.standard_normal(image.shape), grain_px))
    amplitude = np.abs(field) / np.sqrt(np.mean(np.abs(field) ** 2))
    decibels = 20 * np.log10(np.maximum(amplitude, SPECKLE_FLOOR))
    texture = SPECKLE_CONTRAST * (decibels - decibels.mean()) / DISPLAY_DYNAMIC_RANGE_DB
    return _unit(ndimage.gaussian_filter(image, grain_px) + texture), mask


def jpeg(image: np.ndarray, mask: np.ndarray, quality: float, rng: np.random.Generator):
    """Lossy export: the 8-bit frame saved as JPEG at ``quality`` (1-95, Pillow) and read back."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(_unit(image) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255.0, mask


def crop_margin(image: np.ndarray, mask: np.ndarray, factor: float, rng: np.random.Generator):
    """Another lesion-to-crop ratio: the lesion outlined by its bounding box scaled ``factor`` times about its centre
    (a looser or tighter box drawn by another user; 1 keeps the box, and so the crop)."""
    row0, col0, row1, col1 = lesion_box_from_mask(mask)
    centre_row, centre_col = (row0 + row1) / 2, (col0 + col1) / 2
    half_rows, half_cols = max((row1 - row0) * factor / 2, 0.5), max((col1 - col0) * factor / 2, 0.5)
    box = np.zeros_like(mask, dtype=bool)
    box[max(0, round(centre_row - half_rows)):min(mask.shape[0], round(centre_row + half_rows)),
        max(0, round(centre_col - half_cols)):min(mask.shape[1], round(centre_col + half_cols))] = True
    return _unit(image), box


MARK_KINDS = ("calipers", "dotted_line", "boxed_label", "text")


def mark_layers(shape: tuple[int, int], mask: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The marks that ``marks`` burns in, one uint8 layer per kind of ``MARK_KINDS`` (255 where drawn white):
    '+' calipers on the lesion and their dotted line (``synthetic.ultrasound.draw_calipers``), a boxed body-mark
    label (frame and text) and a measurement text."""
    layers = {kind: Image.new("L", (shape[1], shape[0])) for kind in MARK_KINDS}
    draw = {kind: ImageDraw.Draw(layer) for kind, layer in layers.items()}
    width, height = draw_calipers(draw["calipers"], mask, 255, dots=draw["dotted_line"])
    font = ImageFont.load_default(size=int(rng.integers(12, 17)))
    x, y = int(rng.integers(5, max(6, shape[1] // 2))), int(rng.integers(3, max(4, shape[0] // 8)))
    label = f"{rng.choice(['RT', 'LT'])} BREAST {int(rng.integers(1, 13))}:00"
    draw["boxed_label"].rectangle(draw["boxed_label"].textbbox((x, y), label, font=font), outline=255)
    draw["boxed_label"].text((x + 2, y + 2), label, fill=255, font=font)
    draw["text"].text((x, shape[0] - 20), f"D1 {width / 100:.2f}cm D2 {height / 100:.2f}cm", fill=255, font=font)
    return {kind: np.asarray(layer) for kind, layer in layers.items()}


def marks(image: np.ndarray, mask: np.ndarray, level: float, rng: np.random.Generator):
    """Leftover burned-in marks at grey ``level`` (0 none, 1 white): '+' calipers on the lesion with a dotted line
    (``synthetic.ultrasound.draw_calipers``), a boxed body-mark label and a measurement text (``mark_layers``)."""
    layer = np.maximum.reduce(list(mark_layers(image.shape[:2], mask, rng).values()))
    return _unit(np.maximum(image, level * layer.astype(np.float32) / 255.0)), mask


def flip_left_right(image: np.ndarray, mask: np.ndarray, level: float, rng: np.random.Generator):
    """The probe turned round: the frame mirrored left-right when ``level`` is 1 (0 unchanged)."""
    return (_unit(image[:, ::-1]), mask[:, ::-1]) if level else (_unit(image), mask)


def flip_up_down(image: np.ndarray, mask: np.ndarray, level: float, rng: np.random.Generator):
    """Skin at the bottom: the frame mirrored top-bottom when ``level`` is 1 (never on a scanner; a check of
    the flip augmentation; 0 unchanged)."""
    return (_unit(image[::-1]), mask[::-1]) if level else (_unit(image), mask)


@dataclass(frozen=True)
class Shift:
    """A named shift, its severities (name -> level) and the level that changes nothing (None when none does)."""

    name: str
    apply: Callable[[np.ndarray, np.ndarray, float, np.random.Generator], tuple[np.ndarray, np.ndarray]]
    severities: dict[str, float]
    identity: float | None

    @property
    def description(self) -> str:
        """The shift function's docstring, on one line."""
        return " ".join(self.apply.__doc__.split())


SHIFTS = {shift.name: shift for shift in (
    Shift("resolution", resolution, {"x0.5": 0.5, "x1.5": 1.5}, 1.0),
    Shift("blur", blur, {"sigma 1.5 px": 1.5, "sigma 3 px": 3.0}, 0.0),
    Shift("gain", gain, {"-6 dB": -6.0, "+6 dB": 6.0}, 0.0),
    Shift("time_gain", time_gain, {"+-6 dB": 12.0, "+-12 dB": 24.0}, 0.0),
    Shift("dynamic_range", dynamic_range, {"50 dB": 50.0, "75 dB": 75.0}, DISPLAY_DYNAMIC_RANGE_DB),
    Shift("speckle", speckle, {"grain 1 px": 1.0, "grain 2 px": 2.0}, 0.0),
    Shift("jpeg", jpeg, {"quality 50": 50, "quality 20": 20}, None),
    Shift("crop_margin", crop_margin, {"box x0.75": 0.75, "box x1.5": 1.5}, 1.0),
    Shift("marks", marks, {"faint (grey 0.6)": 0.6, "white": 1.0}, 0.0),
    Shift("flip_left_right", flip_left_right, {"mirrored": 1.0}, 0.0),
    Shift("flip_up_down", flip_up_down, {"upside down": 1.0}, 0.0),
)}


def apply_shift(name: str, severity: str, image: np.ndarray, mask: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``SHIFTS[name]`` at its named ``severity`` on a grey frame and its lesion mask."""
    shift = SHIFTS[name]
    return shift.apply(np.asarray(image, np.float32), np.asarray(mask, bool), shift.severities[severity], rng)
