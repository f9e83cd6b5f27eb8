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
   * faint ``+`` calipers (mid-grey, from grey 0.3): the same cross filter at a lower response,
     accepted only where each arm is a straight thin line (brighter than the lines 3 px beside it)
     and the arms have one grey level, as drawn lines have; they anchor chains (below) but, unlike
     strong crosses, never take the tissue component they touch;
   * secondary marks (dots of dotted measurement lines, digits and calipers on brighter tissue)
     are accepted only when chained, each within ``REACH`` px of the next, to a primary mark;
   * an isolated component must be compact or very contrasted.

3. **Boxed labels:** rectangles of thin bright lines (a left and a right side of the same extent,
   joined by top and bottom lines, each brighter than the pixels 2-3 px outside the box; the inside
   darker than the frame). A label-sized box (inside at most 40 x 320 px) is flagged with its inside:
   its frame's long lines and the text in it form one component too long to be a mark.
4. The union is dilated by ``DILATE`` pixels (anti-aliased stroke edges, colour bleeding).
5. **Filling.** Masked pixels are filled by onion-peel inpainting: repeatedly, every masked
   pixel with known 8-neighbours takes their mean, from the outside of the mask inwards
   (a normalized 3x3 convolution). The fill is smooth (no speckle is synthesised).

Limits: marks lying on bright tissue (low contrast with the ring around them), dim grey text and
body-mark pictograms, faint dotted lines away from any caliper, grey calipers on tissue about as
bright as they are, and boxes whose frame is broken or lies on bright tissue can be missed; small
very bright isolated tissue echoes can be flagged, and two bright letters can be taken for a box
(text is flagged then, a 1 px outline round it). Calipers and dotted lines drawn across a lesion are
flagged (and filled) inside the lesion. Thresholds were tuned by eye on BUSI (8-bit images
downscaled to a longer side of at most 512 px); other scanners or resolutions may need other
values. The fill carries no speckle texture, so a large filled area looks smooth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
# Faint crosses (grey calipers: coloured ones converted to grey, or drawn dim): candidate centres, response,
# how much each arm stands out from the lines RIDGE_OFFSET px beside it, and the largest grey-level spread
# along the arms (a drawn caliper has one level along its strokes, aligned speckle grains do not).
FAINT_CROSS_LEVEL = 0.30
FAINT_CROSS_TOPHAT = 0.06
FAINT_CROSS_RESPONSE = 0.08
FAINT_CROSS_RIDGE = 0.10
FAINT_CROSS_SPREAD = 0.08
FAINT_CROSS_SCALES = (4, 5, 6, 7)
RIDGE_START, RIDGE_OFFSET = 3, 3  # the outer part of each arm (px from the centre), the side lines' distance
# Boxes (a typed label in a thin rectangle): line pixels at least BOX_LEVEL and brighter by BOX_RIDGE than the
# pixel 2 or 3 px outside the box; sides at least BOX_MIN_SIDE px, gaps of BOX_GAP px bridged, BOX_COVERAGE of
# each side drawn; a label-sized box (inside at most BOX_LABEL_HEIGHT x BOX_LABEL_WIDTH px) is flagged whole.
BOX_LEVEL = 0.45
BOX_RIDGE = 0.20
BOX_MIN_SIDE = 9
BOX_GAP = 2
BOX_COVERAGE = 0.9
BOX_MIN_ASPECT = 1.6  # width / height: a typed label is wide; two letters side by side are not
BOX_LABEL_HEIGHT, BOX_LABEL_WIDTH = 40, 320
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


def _exact_features(grey: np.ndarray, labels: np.ndarray, index: int, box: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """(contrast, peak contrast, elongation) of component ``index`` (bounding box rows r0:r1, cols c0:c1),
    one component at a time: the definition that ``_component_features`` reproduces for all at once."""
    r0, r1, c0, c1 = box
    pad = RING_WIDTH + 1
    rows, cols = slice(max(r0 - pad, 0), r1 + pad), slice(max(c0 - pad, 0), c1 + pad)
    component = labels[rows, cols] == index
    ring = ndimage.binary_dilation(component, _EIGHT, iterations=RING_WIDTH) & (labels[rows, cols] == 0)
    patch = grey[rows, cols]
    values = patch[component]
    background = float(np.median(patch[ring])) if ring.any() else 1.0
    return (float(np.percentile(values, 90)) - background, float(values.max()) - background,
            _elongation(component) if values.size >= 10 else 1.0)


def _group_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each group."""
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets


def _ring_medians(grey: np.ndarray, labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, group: np.ndarray,
                  top: np.ndarray, left: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Median grey level of each component's ring (background pixels within RING_WIDTH px, 8-connected;
    1.0 for an empty ring), for components whose pixels are (rows, cols) with component number ``group``
    and bounding-box corner (top, left). Components are processed in batches of equal window size."""
    medians = np.ones(top.size)
    for smallest, limit in ((1, 5), (6, 10), (11, 20), (21, MAX_EXTENT)):
        members = np.flatnonzero((extent >= smallest) & (extent <= limit))
        if members.size == 0:
            continue
        size = limit + 2 * RING_WIDTH
        slot = np.full(top.size, -1)
        slot[members] = np.arange(members.size)
        pixels = slot[group] >= 0
        window = np.zeros((members.size, size, size), np.uint8)
        window[slot[group[pixels]], rows[pixels] - top[group[pixels]] + RING_WIDTH,
               cols[pixels] - left[group[pixels]] + RING_WIDTH] = 1
        near = ndimage.maximum_filter(window, size=(1, 2 * RING_WIDTH + 1, 2 * RING_WIDTH + 1), mode="constant") > 0
        image_rows = top[members, None] - RING_WIDTH + np.arange(size)
        image_cols = left[members, None] - RING_WIDTH + np.arange(size)
        inside = ((image_rows >= 0) & (image_rows < grey.shape[0]))[:, :, None] & \
                 ((image_cols >= 0) & (image_cols < grey.shape[1]))[:, None, :]
        image_rows = np.clip(image_rows, 0, grey.shape[0] - 1)[:, :, None]
        image_cols = np.clip(image_cols, 0, grey.shape[1] - 1)[:, None, :]
        ring = near & inside & (labels[image_rows, image_cols] == 0)
        values = np.where(ring, grey[image_rows, image_cols].astype(np.float64), np.inf).reshape(members.size, -1)
        values.sort(axis=1)
        count = ring.reshape(members.size, -1).sum(axis=1)
        lower = values[np.arange(members.size), np.maximum(count - 1, 0) // 2]
        upper = values[np.arange(members.size), count // 2]
        medians[members] = np.where(count > 0, (lower + upper) / 2.0, 1.0)
    return medians


# The tests each feature meets: near a threshold the fast (vectorized) value is replaced by the exact one.
_THRESHOLDS = {"contrast": (RING_CONTRAST, NEAR_CONTRAST, FAINT_CONTRAST), "peak_contrast": (DOT_CONTRAST,),
               "elongation": (MAX_ELONGATION, SEED_MAX_ELONGATION, LONE_MAX_ELONGATION)}
_GUARD = 1e-6


def _component_table(grey: np.ndarray, tophat: np.ndarray, labels: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Per-label ``area``, ``peak`` (highest grey level), ``tophat`` (highest top-hat response), bounding box
    (``top``, ``bottom``, ``left``, ``right``, inclusive) and ``extent`` (its longest side) of the components
    of ``labels``, as arrays indexed by label (0 is the background), from the pixels sorted by label
    (``order``; ``starts[label]`` is where each label's pixels begin, in raster order)."""
    flat = labels.ravel()
    labelled = np.flatnonzero(flat)
    order = labelled[np.argsort(flat[labelled], kind="stable")]
    area = np.bincount(flat, minlength=count + 1)
    area[0] = 0
    starts = np.cumsum(area) - area
    rows, cols = np.divmod(order, labels.shape[1])
    table = {"area": area, "order": order, "starts": starts, "rows": rows, "cols": cols}
    for name, values, reduce in (("peak", grey.ravel()[order], np.maximum), ("tophat", tophat.ravel()[order], np.maximum),
                                 ("top", rows, np.minimum), ("bottom", rows, np.maximum),
                                 ("left", cols, np.minimum), ("right", cols, np.maximum)):
        per_label = np.zeros(count + 1, values.dtype)
        if count:
            per_label[1:] = reduce.reduceat(values, starts[1:])
        table[name] = per_label
    table["extent"] = np.maximum(table["bottom"] - table["top"], table["right"] - table["left"]) + 1
    return table


def _component_features(grey: np.ndarray, labels: np.ndarray, table: dict[str, np.ndarray],
                        wanted: np.ndarray) -> dict[str, np.ndarray]:
    """``table`` (``_component_table``) plus, for the ``wanted`` labels that pass the size tests
    (``measured``): ``contrast`` (90th percentile of the component minus the median of its ring of
    background pixels within RING_WIDTH px), ``peak_contrast`` (peak minus that median) and
    ``elongation`` (ratio of the principal standard deviations, 1 below 10 px); 0 elsewhere.

    All components at once: per-label reductions, the rings in batches. The few values that land
    within 1e-6 of a test's threshold are recomputed one component at a time (``_exact_features``:
    numpy's own percentile, median and covariance), so every test decides as on the exact values.
    """
    feature = dict(table)
    area, extent, starts, rows, cols = (table[k] for k in ("area", "extent", "starts", "rows", "cols"))
    count = area.size - 1
    measured = wanted & (extent <= MAX_EXTENT) & (area <= MAX_AREA)
    measured[0] = False
    feature["measured"] = measured
    for name in ("contrast", "peak_contrast", "elongation"):
        feature[name] = np.zeros(count + 1)
    chosen = np.flatnonzero(measured)
    if chosen.size == 0:
        return feature
    sizes = area[chosen]
    positions = _group_positions(starts[chosen], sizes)
    group = np.repeat(np.arange(chosen.size), sizes)
    pixel_rows, pixel_cols = rows[positions], cols[positions]
    values = grey.ravel()[table["order"][positions]].astype(np.float64)
    ranked = np.lexsort((values, group))  # values in ascending order within each component
    first = np.cumsum(sizes) - sizes
    rank = 0.9 * (sizes - 1)
    low = np.floor(rank).astype(int)
    high = np.minimum(low + 1, sizes - 1)
    at_low, at_high = values[ranked[first + low]], values[ranked[first + high]]
    percentile90 = at_low + (at_high - at_low) * (rank - low)
    top, left = feature["top"][chosen], feature["left"][chosen]
    background = _ring_medians(grey, labels, pixel_rows, pixel_cols, group, top, left, extent[chosen])
    local_rows, local_cols = (pixel_rows - top[group]).astype(np.float64), (pixel_cols - left[group]).astype(np.float64)
    sums = [np.add.reduceat(v, first) for v in (local_rows, local_cols, local_rows ** 2, local_cols ** 2,
                                                  local_rows * local_cols)]
    mean_r, mean_c = sums[0] / sizes, sums[1] / sizes
    var_r = (sums[2] - sizes * mean_r ** 2) / np.maximum(sizes - 1, 1) + 1 / 12
    var_c = (sums[3] - sizes * mean_c ** 2) / np.maximum(sizes - 1, 1) + 1 / 12
    cov = (sums[4] - sizes * mean_r * mean_c) / np.maximum(sizes - 1, 1)
    half_sum, half_gap = (var_r + var_c) / 2, np.hypot((var_r - var_c) / 2, cov)
    elongation = np.where(sizes >= 10, np.sqrt((half_sum + half_gap) / np.maximum(half_sum - half_gap, 1e-12)), 1.0)
    fast = {"contrast": percentile90 - background, "peak_contrast": feature["peak"][chosen] - background,
            "elongation": elongation}
    near = np.zeros(chosen.size, bool)
    for name, thresholds in _THRESHOLDS.items():
        for threshold in thresholds:
            near |= np.abs(fast[name] - threshold) <= _GUARD
    for index in np.flatnonzero(near):
        label = chosen[index]
        box = (feature["top"][label], feature["bottom"][label] + 1, feature["left"][label], feature["right"][label] + 1)
        fast["contrast"][index], fast["peak_contrast"][index], fast["elongation"][index] = _exact_features(grey, labels, label, box)
    for name, values in fast.items():
        feature[name][chosen] = values
    return feature


def _component_flags(labels: np.ndarray, pixels: np.ndarray, count: int) -> np.ndarray:
    """Per-label flag: True where any pixel of the component is True in ``pixels``."""
    flags = np.zeros(count + 1, bool)
    flags[labels[pixels]] = True
    flags[0] = False
    return flags


def _dilate(mask: np.ndarray, footprint: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndimage.binary_dilation(mask, footprint, iterations)`` for a footprint symmetric about its centre
    whose rows are centred runs (a disk, a square), as row-wise running maxima: much faster."""
    half = footprint.shape[0] // 2
    widths = footprint.sum(axis=1) // 2  # half-width of each row's run
    out = mask.astype(np.uint8)
    for _ in range(iterations):
        runs = {w: ndimage.maximum_filter1d(out, 2 * w + 1, axis=1, mode="constant") if w else out
                for w in set(widths.tolist())}
        grown = np.zeros_like(out)
        for offset, width in zip(range(-half, half + 1), widths):
            source = runs[width]
            if offset >= 0:
                grown[offset:] |= source[: source.shape[0] - offset]
            else:
                grown[:offset] |= source[-offset:]
        out = grown
    return out.astype(bool)


_CROSS_PAD = max(CROSS_SCALES) + 1


def _integral(grey: np.ndarray) -> np.ndarray:
    """Summed-area table of ``grey`` padded by ``_CROSS_PAD`` px (reflected), with a zero first row and column."""
    padded = np.pad(grey.astype(np.float64), _CROSS_PAD, mode="reflect")
    integral = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    integral[1:, 1:] = padded.cumsum(0).cumsum(1)
    return integral


class _BoxMeans:
    """Means of axis-aligned boxes at fixed offsets from many candidate pixels, from one ``_integral`` image."""

    def __init__(self, integral: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        pad = _CROSS_PAD
        self._stride = integral.shape[1]
        self._flat = integral.ravel()
        self._base = (rows + pad) * self._stride + (cols + pad)
        self._corners: dict[int, np.ndarray] = {}  # integral image at each candidate + an offset, gathered once

    def _corner(self, row_offset: int, col_offset: int) -> np.ndarray:
        key = row_offset * self._stride + col_offset
        if key not in self._corners:
            self._corners[key] = self._flat.take(self._base + key)
        return self._corners[key]

    def __call__(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Mean over rows r0..r1 and cols c0..c1 (inclusive offsets from each candidate)."""
        total = (self._corner(r1 + 1, c1 + 1) - self._corner(r0, c1 + 1) - self._corner(r1 + 1, c0)
                 + self._corner(r0, c0))
        return total / ((r1 - r0 + 1) * (c1 - c0 + 1))


def _arms_and_quadrants(box_mean: _BoxMeans, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Darkest of the four arm means (1-px lines out to ``scale``) and brightest of the four diagonal
    quadrant means (offsets 2..scale in both directions)."""
    arms = np.minimum(np.minimum(box_mean(0, 0, -scale, -1), box_mean(0, 0, 1, scale)),
                      np.minimum(box_mean(-scale, -1, 0, 0), box_mean(1, scale, 0, 0)))
    near, far = (-scale, -2), (2, scale)
    quadrants = np.maximum(np.maximum(box_mean(*near, *near), box_mean(*near, *far)),
                           np.maximum(box_mean(*far, *near), box_mean(*far, *far)))
    return arms, quadrants


def _paint_crosses(grey: np.ndarray, rows: np.ndarray, cols: np.ndarray, scale: np.ndarray, arms: np.ndarray,
                   response: np.ndarray) -> np.ndarray:
    """Around each cross centre (rows, cols), within its ``scale`` + 1: the pixels within 1 px of the cross
    axes that are at least halfway from the quadrants to the arms (``arms`` - ``response`` / 2)."""
    out = np.zeros(grey.shape, bool)
    pad = _CROSS_PAD
    reach = scale[:, None] + 1
    level = arms[:, None] - response[:, None] / 2.0
    span = np.arange(-pad, pad + 1)
    band_rows, band_cols = np.meshgrid(span, span, indexing="ij")
    band = (np.abs(band_rows) <= 1) | (np.abs(band_cols) <= 1)
    band_rows, band_cols = band_rows[band], band_cols[band]
    pixel_rows, pixel_cols = rows[:, None] + band_rows, cols[:, None] + band_cols
    chosen = ((np.abs(band_rows) <= reach) & (np.abs(band_cols) <= reach) & (pixel_rows >= 0)
              & (pixel_rows < grey.shape[0]) & (pixel_cols >= 0) & (pixel_cols < grey.shape[1]))
    bright = np.zeros_like(chosen)
    bright[chosen] = grey[pixel_rows[chosen], pixel_cols[chosen]] >= np.broadcast_to(level, chosen.shape)[chosen]
    out[pixel_rows[bright], pixel_cols[bright]] = True
    return out


def _crosses(grey: np.ndarray, rows: np.ndarray, cols: np.ndarray, integral: np.ndarray, scales: tuple[int, ...],
             threshold: float, arms_test: Callable[[_BoxMeans, int], np.ndarray] | None = None) -> np.ndarray:
    """Painted crosses (``_paint_crosses``) at the candidate centres (rows, cols) whose best response
    (arms minus quadrants, over the ``scales`` where ``arms_test`` passes, if given) reaches ``threshold``."""
    box_mean = _BoxMeans(integral, rows, cols)
    best = np.full(rows.size, -1.0)
    best_scale = np.zeros(rows.size, int)
    best_arms = np.zeros(rows.size)
    for scale in scales:
        arms, quadrants = _arms_and_quadrants(box_mean, scale)
        response = arms - quadrants
        better = response > best
        if arms_test is not None:
            better &= arms_test(box_mean, scale)
        best[better], best_scale[better], best_arms[better] = response[better], scale, arms[better]
    hits = np.flatnonzero(best >= threshold)
    return _paint_crosses(grey, rows[hits], cols[hits], best_scale[hits], best_arms[hits], best[hits])


def cross_mask(grey: np.ndarray, tophat: np.ndarray, integral: np.ndarray | None = None) -> np.ndarray:
    """Pixels of ``+``-shaped marks: caliper crosses and the stroke junctions of burned-in letters.

    At candidate pixels (bright, thin) the response at half-arm length ``L`` is the darkest of the
    four arm means (1 px wide lines from the pixel to distance ``L``) minus the brightest of the four
    diagonal quadrant means (offsets 2..L in both directions), maximised over ``CROSS_SCALES``.
    Speckle blobs light the quadrants and tissue lines have only two arms, so both score low.
    Where the response reaches ``CROSS_RESPONSE``, pixels within 1 px of the cross axes that are
    brighter than halfway between the quadrants and the arms are returned.
    """
    grey = np.asarray(grey, dtype=np.float32)
    rows, cols = np.nonzero((grey >= CROSS_LEVEL) & (tophat >= CROSS_TOPHAT))
    if rows.size == 0:
        return np.zeros(grey.shape, bool)
    return _crosses(grey, rows, cols, _integral(grey) if integral is None else integral, CROSS_SCALES, CROSS_RESPONSE)


def _arm_ridge(box_mean: _BoxMeans, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """How much the least distinct arm stands out from the lines beside it, over the outer part of each arm
    (distance ``RIDGE_START`` to ``scale``) against the mean of the two parallel lines ``RIDGE_OFFSET`` px
    away: (min over arms of the arm's mean minus the side lines' mean, min over arms of the arm's darkest
    pixel minus the side lines' mean). 1- and 2-px strokes pass; a round blob, whose arms do not reach
    that far, does not."""
    mean_ridge, pixel_ridge = [], []
    for sign in (1, -1):
        span = (RIDGE_START, scale) if sign > 0 else (-scale, -RIDGE_START)
        for axis in (1, 0):
            def line(across: int, along: tuple[int, int] = span) -> np.ndarray:
                return box_mean(across, across, *along) if axis == 1 else box_mean(*along, across, across)
            side = (line(-RIDGE_OFFSET) + line(RIDGE_OFFSET)) / 2
            darkest = np.minimum.reduce([line(0, (sign * d, sign * d)) for d in range(RIDGE_START, scale + 1)])
            mean_ridge.append(line(0) - side)
            pixel_ridge.append(darkest - side)
    return np.minimum.reduce(mean_ridge), np.minimum.reduce(pixel_ridge)


def _arm_spread(box_mean: _BoxMeans, scale: int) -> np.ndarray:
    """Brightest minus darkest pixel along the four arms (distance 1 to ``scale`` - 1)."""
    pixels = [box_mean(0, 0, d, d) for d in range(1, scale)] + [box_mean(0, 0, -d, -d) for d in range(1, scale)]
    pixels += [box_mean(d, d, 0, 0) for d in range(1, scale)] + [box_mean(-d, -d, 0, 0) for d in range(1, scale)]
    return np.maximum.reduce(pixels) - np.minimum.reduce(pixels)


def _line_contrast(grey: np.ndarray, axis: int, half: int) -> np.ndarray:
    """Mean of the 1-px line of ``2 half + 1`` pixels through each pixel along ``axis`` minus the brighter of
    the two parallel lines ``RIDGE_OFFSET`` px away (a cheap pre-test that cross centres pass both ways)."""
    along = ndimage.uniform_filter1d(grey, 2 * half + 1, axis=axis, mode="reflect")
    k = RIDGE_OFFSET
    padded = np.pad(along, [(k, k) if a != axis else (0, 0) for a in range(2)], mode="edge")
    if axis == 1:
        return along - np.maximum(padded[: -2 * k], padded[2 * k:])
    return along - np.maximum(padded[:, : -2 * k], padded[:, 2 * k:])


def faint_cross_mask(grey: np.ndarray, tophat: np.ndarray, integral: np.ndarray | None = None) -> np.ndarray:
    """Pixels of faint ``+`` calipers: mid-grey crosses, which ``cross_mask`` misses (its centres must be near white).

    Candidates need only a mid-grey level and a weak top-hat. A cross is accepted at a half-arm length
    where, besides the arms-minus-quadrants response of ``cross_mask`` (at least ``FAINT_CROSS_RESPONSE``),
    each of the four arms is straight and thin (brighter than the lines ``RIDGE_OFFSET`` px beside it by
    ``FAINT_CROSS_RIDGE``) and the arms have one grey level (spread at most ``FAINT_CROSS_SPREAD``): speckle
    grains, tissue lines (two arms) and crossings of thick tissue strands (wide arms) fail one of these.
    """
    grey = np.asarray(grey, dtype=np.float32)
    shortest = FAINT_CROSS_SCALES[0]
    rows, cols = np.nonzero((grey >= FAINT_CROSS_LEVEL) & (tophat >= FAINT_CROSS_TOPHAT)
                            & (_line_contrast(grey, 1, shortest) >= FAINT_CROSS_RIDGE / 2)
                            & (_line_contrast(grey, 0, shortest) >= FAINT_CROSS_RIDGE / 2))
    if rows.size == 0:
        return np.zeros(grey.shape, bool)

    def one_level_thin_arms(box_mean: _BoxMeans, scale: int) -> np.ndarray:
        mean_ridge, pixel_ridge = _arm_ridge(box_mean, scale)
        return ((mean_ridge >= FAINT_CROSS_RIDGE) & (pixel_ridge >= FAINT_CROSS_RIDGE / 2)
                & (_arm_spread(box_mean, scale) <= FAINT_CROSS_SPREAD))

    return _crosses(grey, rows, cols, _integral(grey) if integral is None else integral, FAINT_CROSS_SCALES,
                    FAINT_CROSS_RESPONSE, one_level_thin_arms)


@dataclass
class _Marks:
    """Components of bright thin pixels (``labels`` 1..``count``; index 0 is background) and, per
    component, whether it is kept and which weaker tests it passed."""

    labels: np.ndarray
    count: int
    keep: np.ndarray  # primary marks (and, after the steps below, every accepted mark)
    near_only: np.ndarray  # secondary marks: accepted when chained to a primary mark
    faint: np.ndarray  # faint marks: accepted within REACH px of an accepted mark
    lone_ok: np.ndarray  # compact or very contrasted: may stand alone


def _classify_components(grey: np.ndarray, tophat: np.ndarray, seeds: np.ndarray, crosses: np.ndarray) -> _Marks:
    """Label the bright thin pixels grown from ``seeds`` and test each component (size, shape, ring contrast)."""
    grow = seeds | ((grey >= GROW_LEVEL) & (tophat >= GROW_TOPHAT))
    labels, count = ndimage.label(grow, structure=_EIGHT)
    seeded = _component_flags(labels, seeds, count)
    crossed = _component_flags(labels, crosses, count)
    table = _component_table(grey, tophat, labels, count)
    area, peak, top = table["area"], table["peak"], table["tophat"]
    # Only components that could pass a test below need their ring and shape features.
    wanted = (seeded | crossed
              | ((area <= DOT_MAX_AREA) & (peak >= DOT_LEVEL) & (top >= DOT_TOPHAT))
              | ((peak >= NEAR_LEVEL) & (top >= NEAR_TOPHAT))
              | ((area <= FAINT_MAX_AREA) & (peak >= FAINT_LEVEL) & (top >= FAINT_TOPHAT)))
    feature = _component_features(grey, labels, table, wanted)
    measured, contrast, elongation = feature["measured"], feature["contrast"], feature["elongation"]
    peak, top = peak.astype(np.float64), top.astype(np.float64)  # the tests below compare in double precision
    shaped = elongation <= MAX_ELONGATION
    compact = shaped & ((feature["extent"] < SEED_ELONGATION_EXTENT) | (elongation <= SEED_MAX_ELONGATION))
    lone_ok = crossed | (measured & ((elongation <= LONE_MAX_ELONGATION) | (top >= LONE_TOPHAT)))
    keep = measured & (crossed | (seeded & compact & (contrast >= RING_CONTRAST)))
    dot = (area <= DOT_MAX_AREA) & (peak >= DOT_LEVEL) & (top >= DOT_TOPHAT) & (feature["peak_contrast"] >= DOT_CONTRAST)
    near = shaped & (peak >= NEAR_LEVEL) & (top >= NEAR_TOPHAT) & (contrast >= NEAR_CONTRAST)
    near_only = measured & ~keep & (dot | near)
    faint = (measured & ~keep & ~near_only & shaped & (area <= FAINT_MAX_AREA) & (peak >= FAINT_LEVEL)
             & (top >= FAINT_TOPHAT) & (contrast >= FAINT_CONTRAST))
    return _Marks(labels, count, keep, near_only, faint, lone_ok)


def _accept_chained(marks: _Marks, crosses: np.ndarray, disk: np.ndarray) -> None:
    """Accept the secondary marks linked to a primary mark by a chain of components, each within REACH px of the next."""
    if not marks.near_only.any():
        return
    primary = marks.keep[marks.labels] | crosses
    groups, _ = ndimage.label(_dilate(primary | marks.near_only[marks.labels], disk), structure=_EIGHT)
    anchored = _component_flags(groups, primary, int(groups.max()))
    marks.keep |= marks.near_only & _component_flags(marks.labels, anchored[groups], marks.count)


def _accept_faint(marks: _Marks, crosses: np.ndarray, disk: np.ndarray) -> None:
    """Accept faint marks (digits next to calipers on bright tissue) within REACH px of an accepted mark: one step, no chaining."""
    if not marks.faint.any():
        return
    near_marks = _dilate(marks.keep[marks.labels] | crosses, disk, iterations=2)
    marks.keep |= marks.faint & _component_flags(marks.labels, near_marks, marks.count)


def _drop_lone(marks: _Marks, crosses: np.ndarray, disk: np.ndarray) -> None:
    """Drop a mark standing alone unless it is compact or very contrasted (tissue specular segments are neither)."""
    kept = marks.keep[marks.labels]
    groups, group_count = ndimage.label(_dilate(kept | crosses, disk), structure=_EIGHT)
    pairs = np.unique(np.stack([groups[kept], marks.labels[kept]]), axis=1)
    members = np.bincount(pairs[0], minlength=group_count + 1)
    lone = pairs[1][members[pairs[0]] == 1]
    marks.keep[lone[~marks.lone_ok[lone]]] = False


def bright_mark_mask(grey: np.ndarray) -> np.ndarray:
    """Small, thin, near-white structures that stand out from their surroundings (text, calipers).

    Primary marks are ``+``-shaped structures (:func:`cross_mask`) and connected components seeded
    by a strong near-white top-hat response that pass the size, shape and ring-contrast tests.
    Faint grey crosses (:func:`faint_cross_mask`) are marks too, but only their own pixels.
    Weaker candidates (dots of dotted lines, digits and calipers on brighter tissue) are added when
    they are chained, each within ``REACH`` px of the next, to a primary mark or a faint cross. Finally a component
    with no other mark within ``REACH`` px is dropped unless it is compact or very contrasted.
    """
    grey = np.asarray(grey, dtype=np.float32)
    tophat = grey - ndimage.grey_opening(grey, size=(TOPHAT_SIZE, TOPHAT_SIZE))
    integral = _integral(grey)
    crosses = cross_mask(grey, tophat, integral)
    faint, count = ndimage.label(faint_cross_mask(grey, tophat, integral), structure=_EIGHT)
    # Faint crosses on a strong one are left out: their lower paint level would only add the tissue beside it.
    faint_crosses = (faint > 0) & ~_component_flags(faint, crosses, count)[faint]
    seeds = (grey >= SEED_LEVEL) & (tophat >= SEED_TOPHAT)
    anchors = crosses | faint_crosses
    if not (seeds.any() or anchors.any()):
        return np.zeros(grey.shape, bool)
    marks = _classify_components(grey, tophat, seeds, crosses)  # a strong cross takes its component, a faint one not
    if not (marks.keep.any() or anchors.any()):
        return np.zeros(grey.shape, bool)
    radius = REACH // 2
    disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
    _accept_chained(marks, anchors, disk)
    _accept_faint(marks, anchors, disk)
    _drop_lone(marks, anchors, disk)
    return marks.keep[marks.labels] | anchors


def _vertical_runs(lines: np.ndarray) -> np.ndarray:
    """Vertical runs of ``lines`` pixels, gaps of up to ``BOX_GAP`` px bridged, at least ``BOX_MIN_SIDE`` px
    long, as rows of (column, first row, last row)."""
    cols, rows = np.nonzero(lines.T)  # column by column, rows ascending
    if cols.size == 0:
        return np.zeros((0, 3), int)
    starts = np.ones(cols.size, bool)
    starts[1:] = (cols[1:] != cols[:-1]) | (rows[1:] - rows[:-1] > BOX_GAP + 1)
    first = np.flatnonzero(starts)
    last = np.append(first[1:], cols.size) - 1
    runs = np.stack([cols[first], rows[first], rows[last]], axis=1)
    return runs[runs[:, 2] - runs[:, 1] + 1 >= BOX_MIN_SIDE]


def _covered(lines: np.ndarray, row: int, first: int, last: int) -> bool:
    """Whether row ``row`` (+-1 px) of ``lines`` covers ``BOX_COVERAGE`` of columns first..last."""
    band = lines[max(row - 1, 0):row + 2, first:last + 1].any(axis=0)
    return band.size > 0 and band.mean() >= BOX_COVERAGE


def boxed_label_mask(grey: np.ndarray) -> np.ndarray:
    """Rectangles drawn with thin bright lines, with the label inside the small ones.

    A side of a box is a straight run of pixels at least ``BOX_LEVEL`` and brighter by ``BOX_RIDGE`` than
    the pixel 2 or 3 px outside the box (text may touch the frame from inside, or overflow it by 2 px).
    A box is a left and a right side of the same extent (within 2 px) joined at both ends by top and
    bottom lines covering ``BOX_COVERAGE`` of the width, at least ``BOX_MIN_ASPECT`` times wider than
    tall, its inside darker than its frame (median at least ``BOX_RIDGE`` below: a filled bright patch
    is not a box). Its outline (+-1 px) is returned, with its whole inside when it is label-sized
    (``BOX_LABEL_HEIGHT`` x ``BOX_LABEL_WIDTH`` at most): text in a box, which
    ``bright_mark_mask`` misses because frame and text form one long component.
    """
    grey = np.asarray(grey, dtype=np.float32)
    out = np.zeros(grey.shape, bool)
    padded = np.pad(grey, 3, mode="edge")
    rows, cols = grey.shape

    def outside(row_step: int, col_step: int) -> np.ndarray:  # the darker of the pixels 2 and 3 px away
        return np.minimum(*(padded[3 + k * row_step:3 + k * row_step + rows, 3 + k * col_step:3 + k * col_step + cols]
                            for k in (2, 3)))

    bright = grey >= BOX_LEVEL
    lefts = _vertical_runs(bright & (grey - outside(0, -1) >= BOX_RIDGE))
    rights = _vertical_runs(bright & (grey - outside(0, 1) >= BOX_RIDGE))
    if lefts.size == 0 or rights.size == 0:
        return out
    # Pairs (left side, right side) of matching extent, at least BOX_MIN_SIDE apart.
    pairs = np.argwhere((rights[None, :, 0] - lefts[:, None, 0] >= BOX_MIN_SIDE)
                        & (np.abs(rights[None, :, 1] - lefts[:, None, 1]) <= 2)
                        & (np.abs(rights[None, :, 2] - lefts[:, None, 2]) <= 2))
    if pairs.size == 0:
        return out
    tops = bright & (grey - outside(-1, 0) >= BOX_RIDGE)
    bottoms = bright & (grey - outside(1, 0) >= BOX_RIDGE)
    for left, right in pairs:
        x0, x1 = lefts[left, 0], rights[right, 0]
        y0, y1 = min(lefts[left, 1], rights[right, 1]), max(lefts[left, 2], rights[right, 2])
        if x1 - x0 < BOX_MIN_ASPECT * (y1 - y0):
            continue
        if not (_covered(tops, y0, x0, x1) and _covered(bottoms, y1, x0, x1)):
            continue
        frame = np.concatenate([grey[y0, x0:x1 + 1], grey[y1, x0:x1 + 1], grey[y0:y1 + 1, x0], grey[y0:y1 + 1, x1]])
        inside = grey[y0 + 2:y1 - 1, x0 + 2:x1 - 1]
        if inside.size == 0 or np.median(inside) > np.median(frame) - BOX_RIDGE:
            continue
        out[max(y0 - 1, 0):y1 + 2, max(x0 - 1, 0):x1 + 2] = True
        if y1 - y0 > BOX_LABEL_HEIGHT or x1 - x0 > BOX_LABEL_WIDTH:  # a large box keeps its inside
            out[y0 + 2:y1 - 1, x0 + 2:x1 - 1] = False
    return out


def find_overlays(image: np.ndarray) -> np.ndarray:
    """Boolean (rows, cols) mask of burned-in overlay pixels.

    ``image`` is a float image in [0, 1], grey (rows, cols) or RGB (rows, cols, 3).
    """
    image = np.asarray(image, dtype=np.float32)
    grey = _to_grey(image)
    mask = colour_mask(image) | bright_mark_mask(grey) | boxed_label_mask(grey)
    if DILATE > 0 and mask.any():
        mask = _dilate(mask, _EIGHT, iterations=DILATE)
    return mask


def inpaint(grey: np.ndarray, mask: np.ndarray, max_iterations: int = 500) -> np.ndarray:
    """Fill ``mask`` pixels of a grey image from the outside in with the mean of known 8-neighbours.

    Mask pixels closer than 3 px are filled together, within the bounding box of their group plus
    1 px: pixels of other groups never enter a filled pixel's 3x3 neighbourhood, so this is the
    whole-image fill, group by group.
    """
    out = np.asarray(grey, dtype=np.float32).copy()
    mask = np.asarray(mask, bool)
    if not mask.any():
        return out
    if mask.all():
        out[:] = 0.0
        return out
    groups, _ = ndimage.label(_dilate(mask, _EIGHT), structure=_EIGHT)
    for index, window in enumerate(ndimage.find_objects(groups), start=1):
        _fill(out[window], mask[window] & (groups[window] == index), max_iterations)
    return out


def _fill(values: np.ndarray, unknown: np.ndarray, max_iterations: int) -> None:
    """Onion-peel fill of ``values`` (in place) where ``unknown``: each pass sets the unknown pixels
    with known 8-neighbours to their mean (a normalized 3x3 box filter)."""
    values[unknown] = 0.0
    known = (~unknown).astype(np.float32)
    for _ in range(max_iterations):
        total = ndimage.uniform_filter(values * known, size=3, mode="nearest")
        weight = ndimage.uniform_filter(known, size=3, mode="nearest")
        front = unknown & (weight > 1e-6)
        values[front] = total[front] / weight[front]
        known[front] = 1.0
        unknown &= ~front
        if not unknown.any():
            break


def remove_overlays(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey float32 image in [0, 1] with overlays filled in, and the overlay mask."""
    mask = find_overlays(image)
    cleaned = inpaint(_to_grey(image), mask)
    return np.clip(cleaned, 0.0, 1.0).astype(np.float32), mask
