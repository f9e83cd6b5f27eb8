"""Burned-in overlay detection and removal for breast ultrasound images.

Scanners burn annotations into the exported pixels: caliper crosses ``+`` with dotted measurement
lines and numbers, body-mark text ("RIGHT BREAST", "RT5"), colour-Doppler ROI boxes and a vendor
logo in the top-left corner. A classifier can learn these as shortcuts, so they are detected and
filled in from the surrounding tissue.

Method (numpy / scipy.ndimage only):

1. **Colour.** In RGB input, pixels whose channel spread (max - min) and saturation
   (spread / max) are both above a threshold are overlay (Doppler boxes and flow, coloured
   calipers). The faint blue tint some scanners give the B-mode image inside a Doppler box is
   below the saturation threshold.
2. **Bright thin marks** on the grey image (white top-hat with a 5x5 square, then connected
   components of the near-white, high top-hat pixels grown by hysteresis):

   * primary marks: ``+``-shaped structures (caliper crosses, letter stroke junctions) found by a
     cross filter (four bright 1-px arms, dark diagonal quadrants), and components seeded by a
     strong near-white top-hat response that are small (area, bounding box), not elongated
     (tissue specular lines are) and much brighter than the ring of pixels around them;
   * secondary marks (dots of dotted measurement lines, digits and calipers on brighter tissue)
     are accepted only when chained, each within ``REACH`` px of the next, to a primary mark;
   * an isolated component must be compact or very contrasted.

3. The union is dilated by ``DILATE`` pixels (anti-aliased stroke edges, colour bleeding).
4. **Filling.** Masked pixels are filled by onion-peel inpainting: repeatedly, every masked
   pixel with known 8-neighbours takes their mean, from the outside of the mask inwards
   (a normalized 3x3 convolution). The fill is smooth (no speckle is synthesised).

Limits: marks lying on bright tissue (low contrast with the ring around them), dim grey text and
body-mark pictograms, and faint dotted lines away from any caliper can be missed; small very
bright isolated tissue echoes can be flagged. Calipers and dotted lines drawn across a lesion are
flagged (and filled) inside the lesion. Thresholds were tuned by eye on BUSI (8-bit images
downscaled to a longer side of at most 512 px); other scanners or resolutions may need other
values. The fill carries no speckle texture, so a large filled area looks smooth.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Colour: channel spread and saturation (spread / max) thresholds, image in [0, 1].
COLOUR_SPREAD = 0.06
COLOUR_SATURATION = 0.12
# Bright marks.
TOPHAT_SIZE = 5  # square structuring element of the white top-hat (px)
SEED_LEVEL = 0.78  # seeds: grey level ...
SEED_TOPHAT = 0.50  # ... and top-hat response
GROW_LEVEL = 0.50  # hysteresis growth: grey level ...
GROW_TOPHAT = 0.18  # ... and top-hat response
MAX_AREA = 250  # largest component kept (px)
MAX_EXTENT = 50  # largest bounding-box side kept (px)
RING_CONTRAST = 0.45  # component 90th-percentile level minus the median of its surrounding ring
RING_WIDTH = 3
MAX_ELONGATION = 6.0  # ratio of the principal standard deviations (tissue lines are long and thin)
SEED_MAX_ELONGATION = 3.5  # stricter limit for primary marks ...
SEED_ELONGATION_EXTENT = 12  # ... whose bounding box is at least this long (px)
# Secondary marks, accepted only in chains that reach a primary mark: dots of dotted lines ...
DOT_MAX_AREA = 12
DOT_LEVEL = 0.50
DOT_TOPHAT = 0.25
DOT_CONTRAST = 0.30  # peak minus ring median
# ... and weaker marks (calipers and digits on brighter tissue).
NEAR_LEVEL = 0.75
NEAR_TOPHAT = 0.30
NEAR_CONTRAST = 0.30
# ... and, within REACH px of an accepted mark (no chaining), faint near-white components.
FAINT_MAX_AREA = 60
FAINT_LEVEL = 0.85
FAINT_TOPHAT = 0.25
FAINT_CONTRAST = 0.18
REACH = 10  # px between chained components
# Crosses ("+" calipers, letter junctions): candidate centres, half-arm lengths, response threshold.
CROSS_LEVEL = 0.60
CROSS_TOPHAT = 0.10
CROSS_SCALES = (3, 4, 5, 6, 7)
CROSS_RESPONSE = 0.18
# A component with no other mark within REACH px is kept only if compact or very contrasted.
LONE_MAX_ELONGATION = 2.5
LONE_TOPHAT = 0.70
DILATE = 2

_EIGHT = np.ones((3, 3), bool)


def _to_grey(image: np.ndarray) -> np.ndarray:
    """Float32 grey image in [0, 1]; RGB is converted with ITU-R 601 luma weights."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        if image.shape[2] < 3:
            raise ValueError(f"expected (rows, cols) or (rows, cols, 3), got shape {image.shape}")
        image = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    elif image.ndim != 2:
        raise ValueError(f"expected (rows, cols) or (rows, cols, 3), got shape {image.shape}")
    return np.clip(image, 0.0, 1.0)


def colour_mask(image: np.ndarray) -> np.ndarray:
    """Pixels with clear colour (channel spread and saturation above threshold); all False for grey."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return np.zeros(image.shape, bool)
    rgb = image[..., :3]
    high = rgb.max(axis=2)
    spread = high - rgb.min(axis=2)
    return (spread > COLOUR_SPREAD) & (spread > COLOUR_SATURATION * np.maximum(high, 1e-6))


def _elongation(component: np.ndarray) -> float:
    """Ratio of the larger to the smaller principal standard deviation of a binary component."""
    rows, cols = np.nonzero(component)
    cov = np.cov(np.stack([rows, cols]).astype(np.float64)) + np.eye(2) / 12.0
    small, large = np.linalg.eigvalsh(cov)
    return float(np.sqrt(large / small))


def _component_features(grey: np.ndarray, tophat: np.ndarray, labels: np.ndarray, wanted: np.ndarray) -> list[dict]:
    """Area, extent, elongation, peak, top-hat peak and ring contrast of each labelled component
    ``wanted[label]`` asks for (the others get an empty dict)."""
    features = []
    pad = RING_WIDTH + 1
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or not wanted[index]:
            features.append({})
            continue
        extent = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        rows = slice(max(box[0].start - pad, 0), box[0].stop + pad)
        cols = slice(max(box[1].start - pad, 0), box[1].stop + pad)
        component = labels[rows, cols] == index
        area = int(component.sum())
        feature = {"area": area, "extent": extent}
        if extent <= MAX_EXTENT and area <= MAX_AREA:
            ring = ndimage.binary_dilation(component, _EIGHT, iterations=RING_WIDTH) & (labels[rows, cols] == 0)
            patch = grey[rows, cols]
            values = patch[component]
            background = float(np.median(patch[ring])) if ring.any() else 1.0
            feature.update(
                peak=float(values.max()),
                tophat=float(tophat[rows, cols][component].max()),
                contrast=float(np.percentile(values, 90)) - background,
                peak_contrast=float(values.max()) - background,
                elongation=_elongation(component) if area >= 10 else 1.0,
            )
        features.append(feature)
    return features


def _component_flags(labels: np.ndarray, pixels: np.ndarray, count: int) -> np.ndarray:
    """Per-label flag: True where any pixel of the component is True in ``pixels``."""
    flags = np.zeros(count + 1, bool)
    flags[np.unique(labels[pixels & (labels > 0)])] = True
    flags[0] = False
    return flags


def cross_mask(grey: np.ndarray, tophat: np.ndarray) -> np.ndarray:
    """Pixels of ``+``-shaped marks: caliper crosses and the stroke junctions of burned-in letters.

    At candidate pixels (bright, thin) the response at half-arm length ``L`` is the darkest of the
    four arm means (1 px wide lines from the pixel to distance ``L``) minus the brightest of the four
    diagonal quadrant means (offsets 2..L in both directions), maximised over ``CROSS_SCALES``.
    Speckle blobs light the quadrants and tissue lines have only two arms, so both score low.
    Where the response reaches ``CROSS_RESPONSE``, pixels within 1 px of the cross axes that are
    brighter than halfway between the quadrants and the arms are returned.
    """
    grey = np.asarray(grey, dtype=np.float32)
    out = np.zeros(grey.shape, bool)
    rows, cols = np.nonzero((grey >= CROSS_LEVEL) & (tophat >= CROSS_TOPHAT))
    if rows.size == 0:
        return out
    pad = max(CROSS_SCALES) + 1
    padded = np.pad(grey.astype(np.float64), pad, mode="reflect")
    integral = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    integral[1:, 1:] = padded.cumsum(0).cumsum(1)
    rows_p, cols_p = rows + pad, cols + pad

    def box_mean(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        top, bottom, left, right = rows_p + r0, rows_p + r1 + 1, cols_p + c0, cols_p + c1 + 1
        total = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
        return total / ((r1 - r0 + 1) * (c1 - c0 + 1))

    best = np.full(rows.size, -1.0)
    best_scale = np.zeros(rows.size, int)
    best_arms = np.zeros(rows.size)
    for scale in CROSS_SCALES:
        arms = np.minimum.reduce(
            [box_mean(0, 0, -scale, -1), box_mean(0, 0, 1, scale), box_mean(-scale, -1, 0, 0), box_mean(1, scale, 0, 0)]
        )
        near, far = (-scale, -2), (2, scale)
        quadrants = np.maximum.reduce([box_mean(*r, *c) for r in (near, far) for c in (near, far)])
        response = arms - quadrants
        better = response > best
        best[better], best_scale[better], best_arms[better] = response[better], scale, arms[better]
    hits = np.nonzero(best >= CROSS_RESPONSE)[0]
    for index in hits:
        row, col, scale = int(rows[index]), int(cols[index]), int(best_scale[index]) + 1
        level = best_arms[index] - best[index] / 2.0
        r0, c0 = max(row - scale, 0), max(col - scale, 0)
        patch = grey[r0 : row + scale + 1, c0 : col + scale + 1]
        near_axes = np.zeros(patch.shape, bool)
        near_axes[max(row - r0 - 1, 0) : row - r0 + 2, :] = True
        near_axes[:, max(col - c0 - 1, 0) : col - c0 + 2] = True
        out[r0 : row + scale + 1, c0 : col + scale + 1] |= near_axes & (patch >= level)
    return out


def bright_mark_mask(grey: np.ndarray) -> np.ndarray:
    """Small, thin, near-white structures that stand out from their surroundings (text, calipers).

    Primary marks are ``+``-shaped structures (:func:`cross_mask`) and connected components seeded
    by a strong near-white top-hat response that pass the size, shape and ring-contrast tests.
    Weaker candidates (dots of dotted lines, digits and calipers on brighter tissue) are added when
    they are chained, each within ``REACH`` px of the next, to a primary mark. Finally a component
    with no other mark within ``REACH`` px is dropped unless it is compact or very contrasted.
    """
    grey = np.asarray(grey, dtype=np.float32)
    tophat = grey - ndimage.grey_opening(grey, size=(TOPHAT_SIZE, TOPHAT_SIZE))
    crosses = cross_mask(grey, tophat)
    seeds = (grey >= SEED_LEVEL) & (tophat >= SEED_TOPHAT)
    if not (seeds.any() or crosses.any()):
        return np.zeros(grey.shape, bool)
    grow = seeds | ((grey >= GROW_LEVEL) & (tophat >= GROW_TOPHAT))
    labels, count = ndimage.label(grow, structure=_EIGHT)
    seeded = _component_flags(labels, seeds, count)
    crossed = _component_flags(labels, crosses, count)
    keep = np.zeros(count + 1, bool)
    near_only = np.zeros(count + 1, bool)
    faint = np.zeros(count + 1, bool)
    lone_ok = crossed.copy()
    # Only components that could pass a test below need their (slow, per-component) features.
    every = np.arange(count + 1)
    peak, top = ndimage.maximum(grey, labels, every), ndimage.maximum(tophat, labels, every)
    area = np.bincount(labels.ravel(), minlength=count + 1)
    wanted = (seeded | crossed
              | ((area <= DOT_MAX_AREA) & (peak >= DOT_LEVEL) & (top >= DOT_TOPHAT))
              | ((peak >= NEAR_LEVEL) & (top >= NEAR_TOPHAT))
              | ((area <= FAINT_MAX_AREA) & (peak >= FAINT_LEVEL) & (top >= FAINT_TOPHAT)))
    for index, feature in enumerate(_component_features(grey, tophat, labels, wanted), start=1):
        if "peak" not in feature:
            continue
        shaped = feature["elongation"] <= MAX_ELONGATION
        compact = shaped and (
            feature["extent"] < SEED_ELONGATION_EXTENT or feature["elongation"] <= SEED_MAX_ELONGATION
        )
        lone_ok[index] |= feature["elongation"] <= LONE_MAX_ELONGATION or feature["tophat"] >= LONE_TOPHAT
        if crossed[index] or (seeded[index] and compact and feature["contrast"] >= RING_CONTRAST):
            keep[index] = True
        elif (
            feature["area"] <= DOT_MAX_AREA
            and feature["peak"] >= DOT_LEVEL
            and feature["tophat"] >= DOT_TOPHAT
            and feature["peak_contrast"] >= DOT_CONTRAST
        ) or (
            shaped
            and feature["peak"] >= NEAR_LEVEL
            and feature["tophat"] >= NEAR_TOPHAT
            and feature["contrast"] >= NEAR_CONTRAST
        ):
            near_only[index] = True
        elif (
            shaped
            and feature["area"] <= FAINT_MAX_AREA
            and feature["peak"] >= FAINT_LEVEL
            and feature["tophat"] >= FAINT_TOPHAT
            and feature["contrast"] >= FAINT_CONTRAST
        ):
            faint[index] = True
    if not (keep.any() or crosses.any()):
        return np.zeros(grey.shape, bool)
    # Chains of components, each within REACH px of the next.
    radius = REACH // 2
    disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
    if near_only.any():
        marks = keep[labels] | crosses
        groups, _ = ndimage.label(ndimage.binary_dilation(marks | near_only[labels], disk), structure=_EIGHT)
        anchored = _component_flags(groups, marks, int(groups.max()))
        keep |= near_only & _component_flags(labels, anchored[groups], count)
    if faint.any():
        # Faint candidates (digits next to calipers on bright tissue): one step only, no chaining.
        near_marks = ndimage.binary_dilation(keep[labels] | crosses, disk, iterations=2)
        keep |= faint & _component_flags(labels, near_marks, count)
    # A mark standing alone must be compact or very contrasted (tissue specular segments are neither).
    kept = keep[labels]
    groups, group_count = ndimage.label(ndimage.binary_dilation(kept | crosses, disk), structure=_EIGHT)
    pairs = np.unique(np.stack([groups[kept], labels[kept]]), axis=1)
    members = np.bincount(pairs[0], minlength=group_count + 1)
    lone = pairs[1][members[pairs[0]] == 1]
    keep[lone[~lone_ok[lone]]] = False
    return keep[labels] | crosses


def find_overlays(image: np.ndarray) -> np.ndarray:
    """Boolean (rows, cols) mask of burned-in overlay pixels.

    ``image`` is a float image in [0, 1], grey (rows, cols) or RGB (rows, cols, 3).
    """
    image = np.asarray(image, dtype=np.float32)
    grey = _to_grey(image)
    mask = colour_mask(image) | bright_mark_mask(grey)
    if DILATE > 0 and mask.any():
        mask = ndimage.binary_dilation(mask, _EIGHT, iterations=DILATE)
    return mask


def inpaint(grey: np.ndarray, mask: np.ndarray, max_iterations: int = 500) -> np.ndarray:
    """Fill ``mask`` pixels of a grey image from the outside in with the mean of known 8-neighbours."""
    out = np.asarray(grey, dtype=np.float32).copy()
    unknown = np.asarray(mask, bool).copy()
    if not unknown.any():
        return out
    if unknown.all():
        out[:] = 0.0
        return out
    out[unknown] = 0.0
    known = (~unknown).astype(np.float32)
    for _ in range(max_iterations):
        total = ndimage.uniform_filter(out * known, size=3, mode="nearest")
        weight = ndimage.uniform_filter(known, size=3, mode="nearest")
        front = unknown & (weight > 1e-6)
        out[front] = total[front] / weight[front]
        known[front] = 1.0
        unknown &= ~front
        if not unknown.any():
            break
    return out


def remove_overlays(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey float32 image in [0, 1] with overlays filled in, and the overlay mask."""
    mask = find_overlays(image)
    cleaned = inpaint(_to_grey(image), mask)
    return np.clip(cleaned, 0.0, 1.0).astype(np.float32), mask
