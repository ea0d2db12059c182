"""Head alignment on drawn heads: upright, wider end up / tail down, centred; soft failure; maps go back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import ellipse, line_aa

from spermlib.data.align import align_head, head_mask

SIZE = 131
BACKGROUND = (236, 170, 200)  # HuSHeM-like pink
HEAD = (110, 40, 110)  # dark purple stain
TAIL = (185, 120, 165)  # paler than the head


def drawn_head(angle_deg: float, centre=(60, 70), tail: bool = True, pear: bool = False) -> np.ndarray:
    """A 131 px crop with an elliptical head whose long axis points along ``angle_deg`` (0 = acrosome up)."""
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = BACKGROUND
    a = math.radians(angle_deg)
    up = np.array([-math.cos(a), -math.sin(a)])  # (row, col) direction towards the acrosome
    r0, c0 = centre
    rr, cc = ellipse(r0, c0, 16, 10, shape=img.shape[:2], rotation=a)
    img[rr, cc] = HEAD
    if pear:  # a wider disc at the acrosome end
        rr, cc = ellipse(r0 + 7 * up[0], c0 + 7 * up[1], 11, 11, shape=img.shape[:2])
        img[rr, cc] = HEAD
    if tail:
        start = np.array([r0, c0]) - 16 * up
        end = np.clip(start - 40 * up, 0, SIZE - 2)  # inside the crop
        for dr, dc in ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1)):  # a tail 3 px wide at any angle
            rr, cc, _ = line_aa(int(start[0]) + dr, int(start[1]) + dc, int(end[0]) + dr, int(end[1]) + dc)
            keep = (rr >= 0) & (rr < SIZE) & (cc >= 0) & (cc < SIZE)
            img[rr[keep], cc[keep]] = TAIL
    return img


def head_rows(img: np.ndarray) -> tuple[float, float]:
    """(row of the head's centroid, row of its widest part) in ``img``."""
    mask, _ = head_mask(img)
    rows, _ = np.nonzero(mask)
    widths = np.bincount(rows, minlength=img.shape[0])
    return float(rows.mean()), float(np.argmax(widths))


@pytest.mark.parametrize("angle", [0, 37, 90, 145, 180, 250, 300])
def test_a_head_with_a_tail_comes_out_upright_tail_down_and_centred(angle):
    out = align_head(drawn_head(angle))
    assert out.found
    mask, faint = head_mask(out.image)
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - SIZE / 2) < 3 and abs(cols.mean() - SIZE / 2) < 3  # centred
    assert np.ptp(rows) > 1.4 * np.ptp(cols)  # long axis vertical
    near_tail = faint & ~ndimage.binary_dilation(mask, iterations=2) & ndimage.binary_dilation(mask, iterations=12)
    tail_rows, _ = np.nonzero(near_tail)  # (further out, reflection-filled corners may repeat the tail)
    assert (tail_rows > rows.mean()).sum() > 4 * (tail_rows < rows.mean()).sum()  # the tail hangs below the head


@pytest.mark.parametrize("angle", [20, 160, 250])
def test_without_a_tail_the_wider_end_goes_up(angle):
    out = align_head(drawn_head(angle, tail=False, pear=True))
    centroid_row, widest_row = head_rows(out.image)
    assert widest_row < centroid_row


@pytest.mark.parametrize("image", [np.full((SIZE, SIZE, 3), 200, np.uint8),
                                   np.random.default_rng(0).integers(190, 196, (SIZE, SIZE, 3), dtype=np.uint8)])
def test_no_head_fails_soft_with_the_image_unchanged(image):
    out = align_head(image)
    assert not out.found
    assert out.image is image or np.array_equal(out.image, image)
    saliency = np.random.default_rng(1).random((SIZE, SIZE))
    assert np.array_equal(out.to_original(saliency), saliency)


def test_a_map_on_the_aligned_image_goes_back_onto_the_head_in_the_original():
    img = drawn_head(120)
    out = align_head(img)
    mask_aligned, _ = head_mask(out.image)
    back = out.to_original(mask_aligned.astype(float)) > 0.5
    mask_orig, _ = head_mask(img)
    iou = (back & mask_orig).sum() / (back | mask_orig).sum()
    assert iou > 0.85
