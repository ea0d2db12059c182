"""Sperm-head pose normalisation: find the stained head, turn its long axis upright, wider end up.

The literature's best clean HuSHeM result used (manually) aligned heads; this is the automatic version,
measured before anything depends on it (docs/experiments.md, *Head alignment*). It fails
soft: where no head is found the image comes back unchanged with ``found=False``.

Steps (scikit-image): the head is the darkest stain, so Otsu's threshold on the smoothed luminance gives
a mask; an opening removes tails and debris thinner than a head; the head is the largest remaining
component near the centre. Its principal axis (second moments) is turned to vertical about the centroid,
which moves to the image centre. A head's long axis has two ends: the tail goes down (faint stain in a
ring just outside the head, on one side by a clear majority); without a clear tail, the wider end (the
acrosome; tapered, pyriform and normal shapes all narrow towards the tail) goes up, measured as which
half of the turned mask holds more head pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import filters, measure, morphology, transform

# A head covers a few percent of a 131 px HuSHeM crop; anything under this share of the image is debris.
MIN_AREA_FRACTION = 0.005
# Components whose centroid lies further than this share of the side from the centre are other cells.
MAX_CENTRE_OFFSET = 0.35
# An opening by a disk of this radius (px, at 131 px) removes tails (2–4 px wide) but not heads (~20 px).
OPENING_RADIUS_AT_131 = 3
# The tail is looked for in a ring this far (px, from, to) around the head, past the head's blurred rim; fewer
# stained pixels there than TAIL_MIN_PX is no tail.
TAIL_RING_PX = (3, 9)
TAIL_MIN_PX = 8


@dataclass(frozen=True)
class AlignedHead:
    """The aligned image, and how it was made (for mapping a saliency map back onto the original)."""

    image: np.ndarray  # (H, W, 3) uint8, same size as the input
    found: bool  # False: no head found, ``image`` is the input unchanged
    angle_deg: float = 0.0  # the turn applied about ``centre`` (``matrix`` is the exact map)
    centre: tuple[float, float] = (0.0, 0.0)  # (row, col) of the head's centroid in the input
    matrix: np.ndarray | None = None  # 3×3 map from output (col, row) to input (col, row) coordinates

    def to_original(self, saliency: np.ndarray) -> np.ndarray:
        """A map drawn over the aligned image (same size), moved back onto the original image's pixels."""
        if not self.found or self.matrix is None:
            return saliency
        back = transform.AffineTransform(matrix=np.linalg.inv(self.matrix))
        return transform.warp(saliency, back, order=1, mode="constant", cval=0.0, preserve_range=True)


def head_mask(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask of the head nearest the centre, mask of faint stain such as tails), or ``None`` when nothing
    head-like is there."""
    h, w = rgb.shape[:2]
    lum = filters.gaussian(rgb.astype(np.float64).mean(axis=2), sigma=1.0, preserve_range=True)
    if float(lum.max() - lum.min()) < 10:  # a flat image: no stain to threshold
        return None
    threshold = filters.threshold_otsu(lum)
    stain = lum < threshold
    # Tails are much paler than heads: halfway between the background (the median) and the head's threshold.
    faint = lum < (np.median(lum) + threshold) / 2
    radius = max(1, round(OPENING_RADIUS_AT_131 * min(h, w) / 131))
    labels = measure.label(ndimage.binary_opening(stain, structure=morphology.disk(radius)))
    best, best_key = None, None
    for region in measure.regionprops(labels):
        if region.area < MIN_AREA_FRACTION * h * w:
            continue
        r, c = region.centroid
        offset = math.hypot((r - h / 2) / h, (c - w / 2) / w)
        if offset > MAX_CENTRE_OFFSET:
            continue
        key = region.area * (1 - offset)  # big and central
        if best_key is None or key > best_key:
            best, best_key = region.label, key
    if best is None:
        return None
    return ndimage.binary_fill_holes(labels == best), faint


def align_head(rgb: np.ndarray) -> AlignedHead:
    """Turn the head's long axis upright, tail down (or wider end up), centred; reflection fills the corners."""
    rgb = np.asarray(rgb)
    masks = head_mask(rgb)
    if masks is None:
        return AlignedHead(image=rgb, found=False)
    mask, faint = masks
    rows, cols = np.nonzero(mask)
    r0, c0 = rows.mean(), cols.mean()
    cov = np.cov(np.stack([cols - c0, rows - r0]))
    evals, evecs = np.linalg.eigh(cov)
    vx, vy = evecs[:, np.argmax(evals)]  # long axis in (x = col, y = row)
    # Turn so that the long axis points along +y (down in the image); the sign is settled below.
    angle = math.atan2(vx, vy)
    h, w = rgb.shape[:2]
    matrix = _output_to_input(angle, (c0, r0), (w / 2 - 0.5, h / 2 - 0.5))
    # Which end is up. The tail leaves the head at its back: stain in a thin ring around the head is tail (or
    # another cell's tail crossing, which is why it needs a clear majority). Without a clear tail, the wider
    # end (the acrosome) goes up: the upper half must hold more head pixels than the lower half.
    near = ndimage.binary_dilation(mask, iterations=TAIL_RING_PX[0])
    ring = _warp_mask(faint & ndimage.binary_dilation(mask, iterations=TAIL_RING_PX[1]) & ~near, matrix)
    tail_up, tail_down = ring[: h // 2].sum(), ring[h - h // 2:].sum()
    if tail_up + tail_down >= TAIL_MIN_PX and max(tail_up, tail_down) >= 2 * min(tail_up, tail_down):
        flip = tail_up > tail_down
    else:
        turned = _warp_mask(mask, matrix)
        flip = turned[h - h // 2:].sum() > turned[: h // 2].sum()
    if flip:
        angle += math.pi
        matrix = _output_to_input(angle, (c0, r0), (w / 2 - 0.5, h / 2 - 0.5))
    out = transform.warp(rgb, transform.AffineTransform(matrix=matrix), order=1, mode="reflect", preserve_range=True)
    return AlignedHead(image=np.clip(np.rint(out), 0, 255).astype(np.uint8), found=True,
                       angle_deg=math.degrees(angle), centre=(float(r0), float(c0)), matrix=matrix)


def _output_to_input(angle: float, centre_in: tuple[float, float], centre_out: tuple[float, float]) -> np.ndarray:
    """3×3 matrix taking output (x, y) to input (x, y): a turn by ``angle`` about the centres."""
    cos, sin = math.cos(angle), math.sin(angle)
    # output point p: input = R(angle) · (p - centre_out) + centre_in, with R rotating +y onto the long axis
    rot = np.array([[cos, sin], [-sin, cos]])
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = np.asarray(centre_in) - rot @ np.asarray(centre_out)
    return m


def _warp_mask(mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return transform.warp(mask.astype(np.float64), transform.AffineTransform(matrix=matrix), order=0,
                          mode="constant", cval=0.0) > 0.5
