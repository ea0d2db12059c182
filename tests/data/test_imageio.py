"""spermlib.data.imageio: every bad input is one ImageError naming the file and the reason; every good
(even exotic) input decodes to an H×W×3 uint8 RGB image; pixel hashes ignore the file format."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spermlib.data.imageio import MAX_PIXELS, ImageError, load_rgb, load_rgb_array, pixel_sha256
from spermlib.errors import SpermlibError


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def one_bit_png(width: int, height: int) -> bytes:
    """A complete, valid all-black 1-bit PNG, built row by row with zlib (a 30000×30000 one is
    ~110 kB and takes a fraction of a second; decoding it would need ~900 MB as RGB)."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    block = row * 1000
    idat = b"".join([comp.compress(block) for _ in range(height // 1000)])
    idat += comp.compress(row * (height % 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR was rewritten (valid CRC) to claim ``width×height``."""
    return one_bit_png(8, 8).replace(
        _chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 1, 0, 0, 0, 0)),
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)),
    )


@pytest.fixture(scope="module")
def rgb_array() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)


def expect_error(source, expected_name: str, *reason_words: str, **load_kw) -> ImageError:
    """``load_rgb(source, **load_kw)`` raises an ImageError naming ``expected_name`` whose message
    contains every one of ``reason_words`` (case-insensitive)."""
    with pytest.raises(ImageError) as info:
        load_rgb(source, **load_kw)
    err = info.value
    assert isinstance(err, SpermlibError)  # what the CLI and the app report as one message
    assert err.name == expected_name
    assert str(err).startswith(f"{expected_name}: ")
    text = str(err).lower()
    for word in reason_words:
        assert word in text, f"{word!r} not in {str(err)!r}"
    assert err.reason and err.reason in str(err)
    return err


# --------------------------------------------------------------------------------------------- bad


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is a lab note, not a picture\n" * 20)
    expect_error(path, str(path), "not a recognised image")


def test_text_bytes_with_name(tmp_path: Path) -> None:
    expect_error(b"GIF? no. just text " * 10, "upload.bmp", "not a recognised image", name="upload.bmp")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "GIF"])
def test_truncated_file(tmp_path: Path, rgb_array: np.ndarray, fmt: str) -> None:
    data = encode(Image.fromarray(rgb_array), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, str(path), "truncated or corrupt")


def test_truncated_webp_is_an_image_error(rgb_array: np.ndarray) -> None:
    data = encode(Image.fromarray(rgb_array), "WEBP")
    expect_error(data[: len(data) // 2], "half.webp", name="half.webp")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.bmp"
    path.write_bytes(b"")
    expect_error(path, str(path), "empty", "0 bytes")


def test_empty_bytes() -> None:
    expect_error(b"", "<uploaded image>", "empty", "0 bytes")
    expect_error(b"", "x.png", "empty", name="x.png")


def test_empty_file_object_is_an_image_error() -> None:
    expect_error(io.BytesIO(b""), "<uploaded image>")


def test_nonexistent_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "missing.png"
    expect_error(path, str(path), "no such file")
    expect_error(str(path), str(path), "no such file")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    expect_error(tmp_path, str(tmp_path), "no such file")


def test_small_image_over_lowered_pixel_limit(rgb_array: np.ndarray) -> None:
    data = encode(Image.fromarray(rgb_array), "PNG")
    err = expect_error(data, "big.png", "too large", "40x30", "1,200", "limit 1,000", name="big.png", max_pixels=1000)
    assert "1,000" in err.reason
    # exactly at the limit is fine
    assert load_rgb(data, max_pixels=1200).size == (40, 30)


@pytest.mark.parametrize(
    "width,height",
    [(7000, 7000), (10_000, 10_000), (100_000, 100_000)],  # our limit; Pillow warning band; Pillow error band
)
def test_header_claiming_huge_size(width: int, height: int) -> None:
    data = png_header_claiming(width, height)
    assert len(data) < 200
    expect_error(data, "claims.png", "too large", name="claims.png")


def test_real_decompression_bomb_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = one_bit_png(30_000, 30_000)
    assert len(data) < 300_000  # compresses ~1000:1
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    # it really is a well-formed 30000×30000 PNG (header read lazily, bomb check disabled)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(path) as im:
        assert im.size == (30_000, 30_000)
    # our per-call limit stops it even with Pillow's global protection switched off ...
    expect_error(path, str(path), "too large", "30000x30000", f"{MAX_PIXELS:,}")
    monkeypatch.undo()
    # ... and with it on
    expect_error(path, str(path), "too large")


def test_valid_tiny_one_bit_png_helper_decodes() -> None:
    # guards the helper above: the same construction at a small size is a real, decodable image
    arr = load_rgb_array(one_bit_png(37, 21))
    assert arr.shape == (21, 37, 3)
    assert arr.max() == 0


# -------------------------------------------------------------------------------------------- good


def _assert_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    assert img.mode == "RGB"
    assert img.size == size
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.shape == (size[1], size[0], 3)
    return arr


def _exotic(kind: str) -> tuple[bytes, tuple[int, int], callable]:
    """(encoded file, expected (w, h), check(arr)) for one exotic input."""
    if kind == "L":
        a = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
        def check(arr):
            assert (arr[..., 0] == a).all() and (arr[..., 1] == a).all() and (arr[..., 2] == a).all()
        return encode(Image.fromarray(a, "L"), "PNG"), (64, 10), check
    if kind == "I;16":
        a = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))
        im = Image.fromarray(a)
        assert im.mode == "I;16"
        def check(arr):
            g = arr[..., 0].astype(int)
            assert (arr[..., 0] == arr[..., 1]).all()
            assert g[0, 0] == 0 and g[0, -1] == 255
            assert abs(g[0, 128] - 128) <= 1  # rescaled linearly, not clipped to white
            assert np.unique(g).size > 200 and (np.diff(g[0]) >= 0).all()
        return encode(im, "PNG"), (256, 4), check
    if kind == "I;16 narrow":
        a = np.tile(np.linspace(1000, 1255, 256).round().astype(np.uint16), (2, 1))
        def check(arr):
            g = arr[0, :, 0].astype(int)
            assert g.min() == 0 and g.max() == 255 and np.unique(g).size == 256
        return encode(Image.fromarray(a), "PNG"), (256, 2), check
    if kind == "RGBA":
        a = np.zeros((8, 8, 4), np.uint8)
        a[..., 0] = 200
        a[4:, :, 3] = 255  # bottom half opaque red, top half fully transparent
        def check(arr):
            assert (arr[:4] == 255).all()
            assert (arr[4:] == [200, 0, 0]).all()
        return encode(Image.fromarray(a, "RGBA"), "PNG"), (8, 8), check
    if kind == "LA":
        a = np.zeros((6, 8, 2), np.uint8)
        a[..., 0] = 50
        a[:, 4:, 1] = 255  # right half opaque grey, left half transparent
        def check(arr):
            assert (arr[:, :4] == 255).all() and (arr[:, 4:] == 50).all()
        return encode(Image.fromarray(a, "LA"), "PNG"), (8, 6), check
    if kind in ("P", "P transparent"):
        p = Image.new("P", (8, 8), 0)
        p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
        p.paste(1, (0, 0, 4, 8))  # left half index 1 (blue), right half index 0 (red)
        kw = {"transparency": 0} if kind == "P transparent" else {}
        right = [255, 255, 255] if kind == "P transparent" else [255, 0, 0]
        def check(arr):
            assert (arr[:, :4] == [0, 0, 255]).all() and (arr[:, 4:] == right).all()
        return encode(p, "PNG", **kw), (8, 8), check
    if kind == "CMYK JPEG":
        im = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red in CMYK
        def check(arr):
            r, g, b = arr[..., 0].mean(), arr[..., 1].mean(), arr[..., 2].mean()
            assert r > 220 and g < 40 and b < 40
        data = encode(im, "JPEG", quality=95)
        with Image.open(io.BytesIO(data)) as check_im:
            assert check_im.mode == "CMYK"
        return data, (16, 8), check
    if kind == "animated GIF":
        frames = [Image.new("RGB", (10, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
        with Image.open(io.BytesIO(buf.getvalue())) as g:
            assert g.n_frames == 3
        def check(arr):
            assert (arr == [255, 0, 0]).all()  # the first frame
        return buf.getvalue(), (10, 6), check
    if kind == "EXIF orientation 6":
        a = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high
        a[:10, :10] = 255  # bright block at the stored top-left
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to display"
        def check(arr):
            assert arr[:8, -8:].mean() > 200  # top-left went to top-right
            assert arr[:8, :8].mean() < 50 and arr[-8:, -8:].mean() < 50
        return encode(Image.fromarray(a), "JPEG", exif=exif.tobytes(), quality=95), (20, 40), check
    raise AssertionError(kind)


EXOTIC = ["L", "I;16", "I;16 narrow", "RGBA", "LA", "P", "P transparent", "CMYK JPEG", "animated GIF",
          "EXIF orientation 6"]


@pytest.mark.parametrize("kind", EXOTIC)
@pytest.mark.parametrize("via", ["path", "bytes", "file", "PIL"])
def test_exotic_input_decodes_to_rgb(tmp_path: Path, kind: str, via: str) -> None:
    data, size, check = _exotic(kind)
    if via == "path":
        src = tmp_path / "image.bin"  # deliberately no meaningful extension: content decides
        src.write_bytes(data)
    elif via == "bytes":
        src = data
    elif via == "file":
        src = io.BytesIO(data)
    else:
        src = Image.open(io.BytesIO(data))  # as a notebook user would pass it: opened, not yet loaded
    arr = _assert_rgb(load_rgb(src), size)
    check(arr)
    assert (load_rgb_array(data) == arr).all()


def test_png_with_bmp_extension(tmp_path: Path, rgb_array: np.ndarray) -> None:
    path = tmp_path / "Sperm (92).bmp"
    path.write_bytes(encode(Image.fromarray(rgb_array), "PNG"))
    with Image.open(path) as im:
        assert im.format == "PNG"
    assert (load_rgb_array(path) == rgb_array).all()


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, rgb_array: np.ndarray, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(rgb_array).save(path, format=fmt)
    for src in (path, str(path), path.read_bytes()):
        arr = load_rgb_array(src)
        assert arr.dtype == np.uint8 and arr.shape == rgb_array.shape
        assert (arr == rgb_array).all()


def test_file_object_input_and_its_name_in_errors(tmp_path: Path, rgb_array: np.ndarray) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(rgb_array).save(good)
    with open(good, "rb") as fh:
        assert (load_rgb_array(fh) == rgb_array).all()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all" * 5)
    with open(bad, "rb") as fh:
        expect_error(fh, str(bad), "not a recognised image")
    expect_error(io.BytesIO(b"junk" * 20), "<uploaded image>", "not a recognised image")
    expect_error(io.BytesIO(b"junk" * 20), "upload.png", name="upload.png")


def test_returned_image_is_detached_from_file(tmp_path: Path, rgb_array: np.ndarray) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(rgb_array).save(path)
    img = load_rgb(path)
    path.unlink()  # the pixels were fully loaded; nothing refers to the file any more
    assert (np.asarray(img) == rgb_array).all()


# ------------------------------------------------------------------------------- in-memory images


def test_rgb_array_round_trips_exactly(rgb_array: np.ndarray) -> None:
    img = load_rgb(rgb_array)
    assert img.mode == "RGB" and (np.asarray(img) == rgb_array).all()
    assert (load_rgb_array(rgb_array[:, :, ::-1]) == rgb_array[:, :, ::-1]).all()  # a strided view works too


def test_grey_and_rgba_arrays_become_rgb(rgb_array: np.ndarray) -> None:
    grey = rgb_array[:, :, 0]
    assert (load_rgb_array(grey) == grey[:, :, None]).all()
    assert (load_rgb_array(grey[:, :, None]) == grey[:, :, None]).all()
    rgba = np.dstack([rgb_array, np.zeros_like(grey)])  # fully transparent: composited on white
    assert (load_rgb_array(rgba) == 255).all()


@pytest.mark.parametrize("bad, words", [
    (np.zeros((8, 8, 3), np.float32), ("h×w×3 uint8", "float32", "(a * 255)")),
    (np.zeros((8, 8, 2), np.uint8), ("h×w×3 uint8", "(8, 8, 2)")),
    (np.zeros((2, 8, 8, 3), np.uint8), ("h×w×3 uint8", "(2, 8, 8, 3)")),
    (np.zeros((0, 8, 3), np.uint8), ("no pixels",)),
])
def test_unusable_array_is_an_image_error(bad: np.ndarray, words: tuple[str, ...]) -> None:
    expect_error(bad, "<array image>", *words)
    expect_error(bad, "cell 3", *words, name="cell 3")


def test_pil_image_is_converted_and_checked(rgb_array: np.ndarray) -> None:
    src = Image.fromarray(rgb_array).convert("RGBA")
    out = load_rgb(src)
    assert out.mode == "RGB" and out is not src and (np.asarray(out) == rgb_array).all()
    assert src.mode == "RGBA"  # the caller's image is left as it was
    expect_error(Image.new("RGB", (30, 40)), "<uploaded image>", "too large", max_pixels=1000)


# ------------------------------------------------------------------------------------ pixel hashes


def test_pixel_sha256_same_pixels_png_and_bmp(tmp_path: Path, rgb_array: np.ndarray) -> None:
    png, bmp = tmp_path / "a.png", tmp_path / "b.bmp"
    Image.fromarray(rgb_array).save(png)
    Image.fromarray(rgb_array).save(bmp)
    assert png.read_bytes() != bmp.read_bytes()
    h = pixel_sha256(load_rgb(png))
    assert len(h) == 64 and int(h, 16) >= 0
    assert h == pixel_sha256(load_rgb(bmp))
    assert h == pixel_sha256(load_rgb_array(bmp))  # PIL image and array agree
    assert h == pixel_sha256(rgb_array)


def test_pixel_sha256_differs_for_different_pixels(rgb_array: np.ndarray) -> None:
    other = rgb_array.copy()
    other[0, 0, 0] ^= 1  # one bit of one pixel
    assert pixel_sha256(other) != pixel_sha256(rgb_array)


def test_pixel_sha256_includes_the_shape(rgb_array: np.ndarray) -> None:
    same_bytes = rgb_array.reshape(40, 30, 3)
    assert same_bytes.tobytes() == rgb_array.tobytes()
    assert pixel_sha256(same_bytes) != pixel_sha256(rgb_array)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("via", ["path", "bytes"])
def test_float_tiff_with_nan_or_inf_is_an_image_error_not_a_black_image(tmp_path: Path, bad: float, via: str) -> None:
    pixels = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    pixels[3, 4] = bad
    path = tmp_path / "scan.tif"
    Image.fromarray(pixels, "F").save(path)
    source = str(path) if via == "path" else path.read_bytes()
    expect_error(source, str(path) if via == "path" else "<uploaded image>", "contains nan or infinite pixel values",
                 "1 of 64")


def test_finite_float_tiff_is_rescaled_as_before(tmp_path: Path) -> None:
    pixels = np.linspace(-2.0, 6.0, 64, dtype=np.float32).reshape(8, 8)
    path = tmp_path / "scan.tif"
    Image.fromarray(pixels, "F").save(path)
    rgb = load_rgb_array(path)
    assert rgb.shape == (8, 8, 3) and rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255  # min → 0, max → 255


@pytest.mark.parametrize("source", [None, 7, 3.5, ["a.png"]], ids=["None", "int", "float", "list"])
def test_what_is_not_an_image_source_is_an_image_error_naming_the_accepted_kinds(source) -> None:
    expect_error(source, "photo", "not an image", "a path, encoded bytes", type(source).__name__.lower(),
                 name="photo")
