"""spermlib.dashboard.images: the one fitting rule for thumbnails, enlarged views and CAM overlays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from spermlib.dashboard.images import fit, pad_square, side_by_side, thumbnail_bytes
from spermlib.data.datasets import SAMPLE_DATA_ROOT
from spermlib.data.imageio import ImageError

TALL_BMP = SAMPLE_DATA_ROOT / "SMIDS" / "Non-Sperm" / "Normal_2895.bmp"  # 156 × 181 px


@pytest.mark.parametrize("size,side,expected", [((156, 181), 320, (276, 320)), ((400, 100), 100, (100, 25)),
                                                ((64, 64), 64, (64, 64))])
def test_fit_scales_the_longer_side_up_or_down(size, side, expected):
    assert fit(Image.new("RGB", size), side).size == expected
    assert fit(np.zeros((size[1], size[0], 3), np.uint8), side).size == expected  # arrays (CAM overlays) too


def test_pad_square_centres_on_the_border_colour():
    img = Image.new("RGB", (10, 20), (200, 10, 10))
    out = np.asarray(pad_square(img, 20))
    assert out.shape == (20, 20, 3) and (out == (200, 10, 10)).all()


def test_thumbnail_bytes_square_and_not(tmp_path):
    square = Image.open(io.BytesIO(thumbnail_bytes(TALL_BMP, 96)))
    assert square.format == "JPEG" and square.size == (96, 96)
    large = Image.open(io.BytesIO(thumbnail_bytes(TALL_BMP, 320, square=False)))
    assert large.size == (276, 320)
    bogus = tmp_path / "x.png"
    bogus.write_bytes(b"hello")
    with pytest.raises(ImageError):
        thumbnail_bytes(bogus, 96)


def test_side_by_side_puts_fitted_images_in_one_row():
    red = np.zeros((50, 100, 3), np.uint8)
    red[..., 0] = 255
    blue = Image.new("RGB", (30, 30), (0, 0, 255))
    row = side_by_side([red, blue], side=60, gap=4)
    assert row.size == (2 * 60 + 4, 60)
    px = np.asarray(row)
    assert tuple(px[30, 30]) == (255, 0, 0)  # the wide image fills its cell's width, centred vertically
    assert tuple(px[2, 30]) == (255, 255, 255)  # … with background above it
    assert tuple(px[30, 64 + 30]) == (0, 0, 255)  # the small one scaled up into the second cell
    assert tuple(px[30, 62]) == (255, 255, 255)  # the gap
