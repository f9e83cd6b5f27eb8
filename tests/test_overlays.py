"""Burned-in overlay detection and removal (BreastFusionLib.us.overlays)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from BreastFusionLib.evaluation.domain_shift import mark_layers
from BreastFusionLib.synthetic.latent import sample_lesions
from BreastFusionLib.synthetic.ultrasound import render_us
from BreastFusionLib.us.overlays import find_overlays, remove_overlays

BUSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "BUSI"


def speckle(shape: tuple[int, int] = (256, 320), seed: int = 0) -> np.ndarray:
    """Ultrasound-like speckle: smoothed Rayleigh noise with a few brighter tissue bands, in [0, 1]."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.rayleigh(1.0, shape), sigma=(0.8, 1.6))
    rows = np.arange(shape[0])[:, None]
    bands = 1.0 + 0.4 * np.sin(rows / 13.0) ** 2
    image = noise * bands
    image = image / np.percentile(image, 99.5) * 0.75
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def draw_marks(image: np.ndarray) -> np.ndarray:
    """Draw near-white text-like strokes, ``+`` calipers and a dotted line in place; returns their mask."""
    marks = np.zeros(image.shape, bool)
    # Text-like block letters, 2 px strokes, 10 px tall: "E", "L", "T", "H".
    top, left = 200, 30
    letters = [
        [(0, 0, 10, 2), (0, 0, 2, 7), (4, 0, 2, 6), (8, 0, 2, 7)],  # E
        [(0, 0, 10, 2), (8, 0, 2, 7)],  # L
        [(0, 0, 2, 8), (0, 3, 10, 2)],  # T
        [(0, 0, 10, 2), (0, 6, 10, 2), (4, 0, 2, 8)],  # H
    ]
    for number, strokes in enumerate(letters):
        for row, col, height, width in strokes:
            r0, c0 = top + row, left + number * 11 + col
            marks[r0 : r0 + height, c0 : c0 + width] = True
    # Two "+" calipers (9 px arms, 1 px wide) joined by a dotted line.
    for row, col in ((60, 100), (90, 200)):
        marks[row - 4 : row + 5, col] = True
        marks[row, col - 4 : col + 5] = True
    for step in range(1, 16):
        col = 100 + step * 6
        row = int(round(60 + (col - 100) * 30 / 100))
        marks[row, col : col + 2] = True
    image[marks] = 0.95
    return marks


@pytest.mark.parametrize("gain", [1.0, 1.33])  # 1.33: the brightest 0.5% of the speckle saturates
def test_speckle_alone_is_not_flagged(gain: float) -> None:
    for seed in range(3):
        image = np.clip(speckle(seed=seed) * gain, 0.0, 1.0)
        assert find_overlays(image).mean() < 0.005


def test_grey_marks_are_found_and_removed() -> None:
    image = speckle(seed=1)
    marks = draw_marks(image)
    cleaned, mask = remove_overlays(image)
    assert mask.shape == image.shape and mask.dtype == bool
    assert cleaned.shape == image.shape and cleaned.dtype == np.float32
    assert 0.0 <= cleaned.min() and cleaned.max() <= 1.0
    recall = (mask & marks).sum() / marks.sum()
    assert recall >= 0.9, recall
    # Nothing near-white is left where the marks were, and the rest of the image is untouched.
    assert cleaned[marks].max() < 0.85
    np.testing.assert_allclose(cleaned[~mask], image[~mask], atol=1e-6)
    # Few flagged pixels away from the marks.
    far = ~ndimage.binary_dilation(marks, iterations=4)
    assert (mask & far).sum() < 0.005 * far.sum()


def test_rgb_input_with_colour_box() -> None:
    grey = speckle(seed=2)
    marks = draw_marks(grey)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    colour = np.zeros(grey.shape, bool)
    colour[30:140, 40:42] = colour[30:140, 240:242] = True  # Doppler ROI box outline (olive)
    colour[30:32, 40:242] = colour[138:140, 40:242] = True
    rgb[colour] = (0.55, 0.55, 0.35)
    flow = np.zeros(grey.shape, bool)
    flow[100:112, 150:166] = True  # colour flow blob (red)
    rgb[flow] = (0.85, 0.15, 0.1)
    rgb[150:160, 250:270] = (0.9, 0.85, 0.1)  # yellow caliper-coloured block
    cleaned, mask = remove_overlays(rgb)
    assert cleaned.shape == grey.shape and cleaned.dtype == np.float32
    drawn = marks | colour | flow
    drawn[150:160, 250:270] = True
    assert (mask & drawn).sum() / drawn.sum() >= 0.9
    # Colour is gone: the cleaned image is grey, and the flow blob was filled from the speckle around it.
    assert abs(float(cleaned[flow].mean()) - float(grey[~drawn].mean())) < 0.15
    # The grey RGB image of the same content gives the same mask as the grey image for the bright marks.
    grey_rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_array_equal(find_overlays(grey_rgb), find_overlays(grey))


def test_bad_shape_raises() -> None:
    with pytest.raises(ValueError):
        find_overlays(np.zeros((4, 4, 4, 1), np.float32))


def _load_busi(name: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    image = np.asarray(Image.open(BUSI / f"{name}.png").convert("L"), dtype=np.float32) / 255.0
    lesion = np.asarray(Image.open(BUSI / f"{name}_mask.png").convert("L")) > 127
    return image, lesion


@pytest.mark.slow
def test_busi_calipers_and_text_found_lesion_untouched() -> None:
    if not BUSI.is_dir():
        pytest.skip(f"BUSI not staged at {BUSI}")
    # benign (11): four "+" calipers on the border of a small cyst, on bright tissue (checked by eye).
    image, lesion = _load_busi("benign/benign (11)")
    cleaned, mask = remove_overlays(image)
    assert cleaned.shape == image.shape and cleaned.dtype == np.float32
    calipers = [(100, 326), (101, 297), (119, 261), (134, 309)]
    for row, col in calipers:
        assert mask[row - 1 : row + 2, col - 1 : col + 2].any(), (row, col)
        assert cleaned[row - 2 : row + 3, col - 2 : col + 3].max() < 0.85
    assert mask.mean() < 0.01
    # The calipers are drawn on the lesion border; apart from them the lesion is untouched.
    near_calipers = np.zeros(mask.shape, bool)
    for row, col in calipers:
        near_calipers[row - 9 : row + 10, col - 9 : col + 10] = True
    assert (mask & lesion & ~near_calipers).sum() < 0.05 * lesion.sum()

    # benign (2): body-mark text "RIGHT BREAST" beside an oval lesion.
    image, lesion = _load_busi("benign/benign (2)")
    _, mask = remove_overlays(image)
    assert mask[263:297, 0:128].sum() > 1000  # the text
    assert (mask & lesion).sum() < 0.05 * lesion.sum()
    assert mask.mean() < 0.03


# Masks of the one-component-at-a-time implementation (commit cf84959, before the vectorised one):
# (flagged pixels, first 16 hex digits of the SHA-256 of np.packbits(mask)). The vectorised version
# gave the same masks and the same filled images on 844 images (all 780 BUSI images, 64 synthetic).
# The boxed-label and faint-cross detectors then only added pixels (training/bench_overlays.py): a few
# letter-stroke pixels in the frames, calipers on bright tissue (benign 359, malignant 129).
REFERENCE_MASKS = {
    "marks0": (1238, "65cd793cd32300ea"), "marks1": (1232, "2df60f3a6624d009"), "marks2": (1275, "37e90944c07caf32"),
    "frame0": (4470, "5f1d42ba6ec04e03"), "frame1": (8616, "3e6f1aaf4b4ff01f"),
    "frame2": (4153, "30fd4bb72f935347"), "frame3": (4009, "41f61f9d9a1bb7c0"),  # RGB frames
}
REFERENCE_BUSI_MASKS = {
    "benign/benign (2)": (2652, "97afca5422ae8e54"), "benign/benign (11)": (1042, "63481a8844eecb1b"),
    "benign/benign (250)": (2956, "23a45dc4883c134d"), "benign/benign (359)": (1883, "05dd18f943b11c23"),
    "malignant/malignant (10)": (2875, "268a1a3cbf998e8d"), "malignant/malignant (50)": (187, "a2269406ac7b2077"),
    "malignant/malignant (129)": (4691, "ff6e7d597b90b8e0"),
}


def _fingerprint(mask: np.ndarray) -> tuple[int, str]:
    return int(mask.sum()), hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:16]


def test_masks_are_those_of_the_reference_implementation_on_synthetic_images() -> None:
    images = {}
    for seed in range(3):
        images[f"marks{seed}"] = speckle(seed=seed)
        draw_marks(images[f"marks{seed}"])
    for index, spec in enumerate(sample_lesions(4, seed=5)):  # speckle-rich frames with text, ruler, calipers
        images[f"frame{index}"] = render_us(spec, np.random.default_rng(index))[0].astype(np.float32) / 255.0
    assert {name: _fingerprint(find_overlays(image)) for name, image in images.items()} == REFERENCE_MASKS


@pytest.mark.slow
def test_masks_are_those_of_the_reference_implementation_on_busi() -> None:
    if not BUSI.is_dir():
        pytest.skip(f"BUSI not staged at {BUSI}")
    found = {name: _fingerprint(find_overlays(_load_busi(name)[0])) for name in REFERENCE_BUSI_MASKS}
    assert found == REFERENCE_BUSI_MASKS


def _lesion(shape: tuple[int, int], centre: tuple[int, int], radii: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxed_label_and_faint_calipers_are_found(seed: int) -> None:
    """The domain-shift suite's marks (``mark_layers``) on speckle: a white boxed label, and the '+' calipers
    drawn opaque in grey 0.6 (as scanners draw them; main's near-white cross filter found 25-50% of them)."""
    image = speckle(seed=seed) * 0.8
    lesion = _lesion(image.shape, (150, 170), (25, 45))
    image[lesion] *= 0.4
    layers = mark_layers(image.shape, lesion, np.random.default_rng(seed))
    label = layers["boxed_label"].astype(np.float32) / 255.0
    calipers = layers["calipers"] > 127
    marked = np.maximum(image, label)
    marked[calipers] = 0.6
    mask = find_overlays(marked)
    drawn_label = label - image >= 0.1
    assert (mask & drawn_label).sum() >= 0.95 * drawn_label.sum()
    assert (mask & calipers).sum() >= 0.9 * calipers.sum()
    far = ~ndimage.binary_dilation(ndimage.binary_fill_holes(label > 0) | calipers, np.ones((3, 3), bool), iterations=3)
    assert (mask & far).sum() < 30  # a few speckle pixels on a cross axis, beyond the 3 px margin


def test_lesion_with_bright_rim_and_specular_lines_is_not_flagged() -> None:
    """Tissue the new detectors must leave alone: a dark oval with a bright 2 px rim and posterior enhancement,
    long bright specular lines, and a bright rectangle-like pair of tissue strands."""
    image = speckle(seed=4)
    lesion = _lesion(image.shape, (120, 160), (22, 40))
    rim = _lesion(image.shape, (120, 160), (24, 42)) & ~lesion
    image[lesion] *= 0.3
    image[rim] = np.maximum(image[rim], 0.85)
    below = _lesion(image.shape, (170, 160), (25, 38)) & ~lesion
    image[below] = np.clip(image[below] * 1.5, 0.0, 1.0)  # posterior acoustic enhancement
    image[40:42, 20:300] = 0.9  # specular lines: long, thin, bright
    image[60, 30:150] = 0.75
    image[200:203, 40:280] = np.maximum(image[200:203, 40:280], 0.8)
    image[212:215, 40:280] = np.maximum(image[212:215, 40:280], 0.8)
    assert find_overlays(image).sum() == 0
