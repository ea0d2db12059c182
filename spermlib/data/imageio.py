"""The only place where image files are opened and decoded.

Images are identified by their *content*, never by their extension (480 SMIDS files are PNG data,
some releases name them ``.bmp``).  Every failure is turned into one :class:`ImageError` that names
the file and the reason, so callers (CLI, dashboard) can report it and carry on with a batch.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from spermlib.errors import SpermlibError

# A microscope patch is a few hundred pixels wide; 40 MP is generous and still far below the
# memory a decompression bomb would need.
MAX_PIXELS = 40_000_000

# A file (path, bytes, binary file object) or an image already in memory (PIL, H×W×3 uint8 array).
ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image, np.ndarray]  # noqa: UP007 - a runtime alias
ACCEPTED_SOURCES = "a path, encoded bytes, a binary file object, a PIL.Image or an H×W×3 uint8 numpy array"


class ImageError(SpermlibError):
    """An input that is not a usable image. ``str(err)`` is a complete, user-facing sentence."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


def is_image_source(source: object) -> bool:
    """Whether ``source`` is one of the kinds :func:`load_rgb` decodes (a file object: anything with ``read``)."""
    return isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray)) or callable(
        getattr(source, "read", None))


def _source_name(source: ImageSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return "<array image>"
    return getattr(source, "name", None) or getattr(source, "filename", None) or "<uploaded image>"


def _to_rgb(img: Image.Image, label: str) -> Image.Image:
    """Any PIL mode → 8-bit RGB. 16-bit and float greyscale are rescaled, not clipped; a float image with NaN
    or infinite pixels has no range to rescale (it came out black) and is refused."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ImageError(label, f"the image contains NaN or infinite pixel values ({bad:,} of {arr.size:,} "
                                    "pixels); export it with finite values")
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: transparent regions of an exported image are background.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(source: ImageSource, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` into an RGB ``PIL.Image``.

    ``source`` is a path, bytes or a binary file object (decoded by content), a ``PIL.Image``, or a
    numpy ``H×W×3`` (or ``H×W`` greyscale) ``uint8`` array. EXIF orientation is applied; for
    animated images the first frame is used. Raises :class:`ImageError` for anything that is not a
    complete, decodable image of sane size.
    """
    label = _source_name(source, name)
    if not is_image_source(source):
        raise ImageError(label, f"not an image: expected {ACCEPTED_SOURCES}, got {type(source).__name__}")
    if isinstance(source, np.ndarray):
        source = _array_image(source, label)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError(label, "the file is empty (0 bytes)")
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(label, "no such file")
        if path.stat().st_size == 0:
            raise ImageError(label, "the file is empty (0 bytes)")
    # Pillow's own bomb check is process-global and only warns between 1x and 2x its limit;
    # we check the header size ourselves so the limit is per call and always an error.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(source, Image.Image):
                return _checked_rgb(source, label, max_pixels)
            with Image.open(source) as img:
                img.seek(0)
                return _checked_rgb(img, label, max_pixels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(label, "not a recognised image format (the content is not an image)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(label, "the image is too large (decompression bomb protection)") from None
    except OSError as err:
        msg = str(err)
        if "truncated" in msg.lower() or "end of file" in msg.lower() or "broken" in msg.lower():
            raise ImageError(label, "the image file is truncated or corrupt") from None
        raise ImageError(label, f"the image could not be decoded ({msg})") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as err:
        raise ImageError(label, f"the image could not be decoded ({err})") from None


def _checked_rgb(img: Image.Image, label: str, max_pixels: int) -> Image.Image:
    """Size checks (before decoding the pixels), then an RGB copy detached from any file."""
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(label, f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(label, f"the image is too large ({w}x{h} = {w * h:,} pixels; limit {max_pixels:,})")
    img.load()
    return _to_rgb(ImageOps.exif_transpose(img), label).copy()


def _array_image(arr: np.ndarray, label: str) -> Image.Image:
    """An ``H×W×3`` / ``H×W×4`` / ``H×W`` uint8 array as a PIL image; anything else is an ImageError
    (floats are refused rather than guessed: 0–1 and 0–255 scales are both common)."""
    channels = arr.shape[2] if arr.ndim == 3 else None
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or channels in (1, 3, 4)):
        hint = "; convert 0–1 floats with (a * 255).round().astype(np.uint8)" if arr.dtype.kind == "f" else ""
        raise ImageError(label, f"an array image must be H×W×3 uint8 (RGB), got shape {arr.shape} and dtype "
                                f"{arr.dtype}{hint}")
    if channels == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr))


def load_rgb_array(source: ImageSource, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Like :func:`load_rgb`, as an ``H×W×3`` ``uint8`` array."""
    return np.asarray(load_rgb(source, name=name, max_pixels=max_pixels), dtype=np.uint8)


def pixel_sha256(img: Image.Image | np.ndarray) -> str:
    """sha256 of the decoded RGB pixels plus the shape; equal for pixel-identical files of any format."""
    arr = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    h = hashlib.sha256()
    h.update(f"{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()
