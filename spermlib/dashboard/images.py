"""Image sizes for display: one fitting rule for gallery thumbnails, enlarged views and CAM overlays.

Microscope crops are small (HuSHeM heads are ~131 px), so images are scaled *up* as well as down:
a grid of thumbnails of one side stays aligned, and a single image is shown large enough to see.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from spermlib.data.imageio import load_rgb

RESAMPLE = Image.Resampling.LANCZOS


def fit(img: Image.Image | np.ndarray, side: int) -> Image.Image:
    """``img`` scaled (up or down) so that its longer side is ``side`` px; the aspect ratio is kept."""
    img = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img if size == img.size else img.resize(size, RESAMPLE)


def pad_square(img: Image.Image, side: int) -> Image.Image:
    """``img`` (at most ``side`` px) centred on a ``side`` × ``side`` canvas of its own mean border
    colour, so that thumbnails of any aspect line up in a grid without a visible frame."""
    arr = np.asarray(img.convert("RGB"))
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).mean(axis=0)
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in border))
    canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return canvas


def thumbnail_bytes(path: str | Path, side: int, square: bool = True, quality: int = 90) -> bytes:
    """A JPEG of the image file fitted to ``side`` px (padded to a square for grids when ``square``),
    decoded by content; raises :class:`~spermlib.data.imageio.ImageError` for an unreadable file."""
    img = fit(load_rgb(path), side)
    if square:
        img = pad_square(img, side)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def side_by_side(images: list[Image.Image | np.ndarray], side: int, gap: int = 8,
                 background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``images``, each fitted to ``side`` px, in one row with ``gap`` px between them: one picture that
    scales with its column as a whole (separate images would wrap one below the other on a phone)."""
    fitted = [fit(img, side).convert("RGB") for img in images]
    row = Image.new("RGB", (len(fitted) * side + (len(fitted) - 1) * gap, side), background)
    for i, img in enumerate(fitted):
        row.paste(img, (i * (side + gap) + (side - img.width) // 2, (side - img.height) // 2))
    return row
