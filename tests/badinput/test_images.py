"""Odd and broken images: files that are not images, decompression bombs, 1-pixel-wide images,
16-bit, CMYK, palette + transparency, EXIF rotation, float arrays out of range or with NaN, wrong
channel counts and mixed sizes.

Choices pinned here (README, "Bad input and safety"):
- EXIF orientation is NOT applied, by the file loader nor by the processor: the pixels are used
  as stored, as transformers' ConvNextImageProcessor, timm and torchvision's loaders do.
- Alpha is dropped, not composited (``Image.convert("RGB")``): a transparent pixel keeps its
  stored colour.
- 16-bit grayscale files are scaled to 8 bits by the file loader (PIL alone would clip them at 255);
  a 16-bit PIL image given to the processor directly is converted like ``convert("RGB")`` (clipped),
  which tests/core/test_image_processor.py pins as that module's contract.
- PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) stays in force.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from badinput.support import expect_error, has_module

pytestmark = pytest.mark.skipif(not (has_module("convnext_common.processing") and
                                     has_module("convnext_app.imagefolder")),
                                reason="the image processor or the image loader is not present")

SIZE = 32  # shortest_edge: small, so every case is fast; the rules are the same as for 224


@pytest.fixture(scope="module")
def processor():
    from convnext_common.processing import ConvNextImageProcessor

    return ConvNextImageProcessor(size={"shortest_edge": SIZE}, image_mean=[0.485, 0.456, 0.406],
                                  image_std=[0.229, 0.224, 0.225])


def load_image(path):
    from convnext_app.imagefolder import load_image as load

    return load(path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming ``width`` x ``height`` RGB, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + end


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) % 256)], -1).astype(np.uint8)


def _noise(w: int, h: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _png_bytes(img: Image.Image, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


# --- files that cannot be read ----------------------------------------------------------------------
#: id -> (file name, bytes, problem regex)
UNREADABLE = {
    "text-file-named-jpg": ("cat.jpg", b"this is a caption, not a picture\n", r"not an image"),
    "zero-byte-png": ("empty.png", b"", r"not an image"),
    "truncated-png": ("cut.png", _png_bytes(_noise(64, 64))[:6000], r"could not read.*truncated"),
    "truncated-jpeg": ("cut.jpg", _jpeg_bytes(_noise(64, 64))[:1500], r"could not read.*truncated"),
    "png-header-without-pixels": ("hollow.png", png_header_only(64, 64), r"could not read"),
    "decompression-bomb-png": ("bomb.png", png_header_only(100_000, 100_000), r"decompression bomb"),
    "html-page-saved-as-png": ("page.png", b"<!DOCTYPE html><html><body>404</body></html>", r"not an image"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_unreadable_image_file(tmp_path, case):
    from convnext_app.imagefolder import ImageReadError

    name, data, problem = UNREADABLE[case]
    path = tmp_path / name
    path.write_bytes(data)
    error = expect_error(lambda: load_image(path), ImageReadError, str(path), problem=problem)
    assert isinstance(error, OSError)


def test_missing_image_file(tmp_path):
    expect_error(lambda: load_image(tmp_path / "nope.png"), FileNotFoundError, str(tmp_path / "nope.png"))


def test_pil_pixel_limit_stays_in_force(tmp_path, monkeypatch):
    """Importing our modules leaves PIL's limit on; a lowered limit is honoured by the loader."""
    import convnext_app.cli  # noqa: F401
    import convnext_app.imagefolder  # noqa: F401
    import convnext_common.processing  # noqa: F401
    from convnext_app.imagefolder import ImageReadError

    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 80_000_000
    path = tmp_path / "ordinary.png"
    path.write_bytes(_png_bytes(Image.fromarray(_gradient(100, 100))))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10_000 pixels > 2 x 1000: a "bomb" now
    expect_error(lambda: load_image(path), ImageReadError, str(path), problem=r"decompression bomb")


# --- files that load: what the loader makes of them ---------------------------------------------------
def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    loaded = np.asarray(load_image(path))
    expected = np.round(values / 257.0)
    assert loaded.shape == (64, 64, 3)
    assert np.abs(loaded[:, :, 0].astype(np.int64) - expected).max() <= 1
    assert (loaded == 255).mean() < 0.01  # PIL's plain convert("RGB") makes ~99% of it white


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (40, 30)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_drops_alpha(tmp_path):
    """Transparent palette entries keep their stored colour (alpha dropped, not composited on white)."""
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 255] + [255, 0, 0] * 255)
    img.paste(1, (10, 0, 20, 20))
    path = tmp_path / "sticker.png"
    img.save(path, transparency=0)  # palette entry 0 (blue) is fully transparent
    rgb = np.asarray(load_image(path))
    assert tuple(rgb[5, 5]) == (0, 0, 255) and tuple(rgb[5, 15]) == (255, 0, 0)


def test_rgba_drops_alpha(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (10, 200, 30, 0)).save(path)
    assert tuple(np.asarray(load_image(path))[0, 0]) == (10, 200, 30)


def test_exif_rotation_is_not_applied(tmp_path, processor):
    """A JPEG whose EXIF says "rotate 90" is used as stored, by the loader and by the processor."""
    stored = Image.fromarray(_gradient(60, 20))  # 60 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert loaded.size == (60, 20)  # not (20, 60)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(processor(loaded, return_tensors="np").pixel_values,
                                  processor(pixels, return_tensors="np").pixel_values)


# --- the processor on unusual but valid images ----------------------------------------------------------
def _p(mode, size, color):
    return lambda: Image.new(mode, size, color)


#: id -> builder of the image (or batch); every one gives (N, 3, SIZE, SIZE) finite float32
VALID = {
    "1x1-pil": (_p("RGB", (1, 1), (10, 200, 30)), 1),
    "1x1-array": (lambda: np.full((1, 1, 3), 77, np.uint8), 1),
    "10000-wide-1-high": (lambda: Image.fromarray(_gradient(10000, 1)), 1),
    "1-wide-300-high": (lambda: Image.fromarray(_gradient(1, 300)), 1),
    "cmyk": (_p("CMYK", (50, 40), (0, 255, 0, 0)), 1),
    "palette": (lambda: Image.fromarray(_gradient(30, 30)).convert("P"), 1),
    "rgba": (_p("RGBA", (30, 30), (255, 0, 0, 0)), 1),
    "la": (_p("LA", (30, 30), (128, 0)), 1),
    "grayscale-L": (_p("L", (30, 40), 99), 1),
    "float-F-mode": (_p("F", (30, 30), 0.5), 1),
    "bilevel-1-mode": (_p("1", (30, 30), 1), 1),
    "bool-array": (lambda: np.ones((8, 8, 3), bool), 1),
    "float16-array-in-0-1": (lambda: np.full((8, 8, 3), 0.5, np.float16), 1),
    "float64-array-integer-valued": (lambda: np.full((8, 8, 3), 200.0), 1),
    "chw-array": (lambda: np.zeros((3, 10, 12), np.uint8), 1),
    "hw-array": (lambda: np.zeros((10, 12), np.uint8), 1),
    "mixed-sizes-and-kinds": (lambda: [np.zeros((32, 40, 3), np.uint8), Image.new("L", (5, 90)),
                                       np.ones((3, 200, 7), np.float32)], 3),
    "batch-4d": (lambda: np.zeros((2, 20, 30, 3), np.uint8), 2),
}


@pytest.mark.filterwarnings("ignore:The images look already rescaled")
@pytest.mark.parametrize("case", VALID)
def test_processor_gives_the_documented_shape(processor, case):
    build, n = VALID[case]
    out = processor(build(), return_tensors="np").pixel_values
    assert out.shape == (n, 3, SIZE, SIZE) and out.dtype == np.float32
    assert np.isfinite(out).all()


# --- the processor refuses what it cannot process -----------------------------------------------------
def _batch(*items):
    return lambda: list(items)


#: id -> (builder, call options, names the message must contain, problem regex)
REFUSED = {
    "float-outside-0-1": (lambda: np.linspace(-1, 2, 300).reshape(10, 10, 3), {}, ["image"], r"\[0, 1\]"),
    "float-with-nan": (lambda: np.where(np.eye(8)[:, :, None] > 0, np.nan, 0.5) * np.ones((8, 8, 3)), {},
                       ["image"], r"NaN"),
    "float-with-inf": (lambda: np.full((8, 8, 3), np.inf), {}, ["image"], r"NaN or infinite"),
    "float-nan-without-resize": (lambda: np.full((8, 8, 3), np.nan, np.float32), {"do_resize": False}, ["image"],
                                 r"NaN"),
    "nan-in-second-image-of-batch": (_batch(np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), np.nan)), {},
                                     ["images[1]"], r"NaN"),
    "four-channels-hwc": (lambda: np.zeros((32, 32, 4), np.uint8), {}, ["(32, 32, 4)"], r"channel"),
    "two-channels-hwc": (lambda: np.zeros((32, 32, 2), np.uint8), {}, ["(32, 32, 2)"], r"channel"),
    "five-channels-chw": (lambda: np.zeros((5, 32, 32), np.uint8), {"input_data_format": "channels_first"},
                          ["5 channels"], r"image_mean has 3 values"),
    "mixed-sizes-stacked-without-resize": (_batch(np.zeros((32, 40, 3), np.uint8), np.zeros((50, 20, 3), np.uint8)),
                                           {"do_resize": False}, ["(3, 32, 40)", "(3, 50, 20)"], r"different sizes"),
    "uint16-array-above-255": (lambda: np.full((8, 8, 3), 4000, np.uint16), {}, ["image"], r"\[0, 255\]"),
    "negative-integers": (lambda: np.full((8, 8, 3), -3, np.int32), {}, ["image"], r"\[0, 255\]"),
    "zero-height": (lambda: np.zeros((0, 10, 3), np.uint8), {}, ["image"], r"empty image"),
    "zero-size-pil": (_p("RGB", (0, 5), 0), {}, ["image"], r"empty image"),
    "object-dtype": (lambda: np.array([[None, None]], dtype=object), {}, ["image"], r"dtype object"),
    "complex-dtype": (lambda: np.zeros((8, 8, 3), np.complex64), {}, ["image"], r"dtype complex64"),
    "five-dimensional": (lambda: np.zeros((1, 1, 3, 8, 8)), {}, ["images"], r"4-D batch"),
    "empty-list": (lambda: [], {}, ["images"], r"empty list"),
    "none": (lambda: None, {}, ["images"], r"None"),
    "a-file-name-instead-of-an-image": (lambda: "cat.jpg", {}, ["images", "str"], r"unsupported image type"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_processor_refuses(processor, case):
    build, options, names, problem = REFUSED[case]
    expect_error(lambda: processor(build(), return_tensors="np", **options), ValueError, *names, problem=problem)


# --- degenerate aspect ratios -----------------------------------------------------------------------------
def test_tall_one_pixel_wide_image_needs_no_gigapixel_intermediate(processor, monkeypatch):
    from convnext_common.processing import ConvNextImageProcessor

    limit = 1 << 26  # 67M pixels: far beyond any non-degenerate image's resize
    real_resize = Image.Image.resize

    def guarded_resize(self, size, *args, **kwargs):
        assert size[0] * size[1] <= limit, f"asked PIL for a {size[0]} x {size[1]} intermediate image"
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", guarded_resize)
    tall = Image.fromarray(_gradient(1, 10000))
    out = ConvNextImageProcessor(size={"shortest_edge": 224})(tall, return_tensors="np").pixel_values
    assert out.shape == (1, 3, 224, 224) and np.isfinite(out).all()


@pytest.mark.parametrize("name", ["china.jpg", "portrait_427x150.png"])
def test_boxed_resize_fallback_agrees_with_the_full_resize(monkeypatch, name):
    """The gigapixel guard's boxed resize stays within docs/DESIGN.md's fast-processor tolerance."""
    import convnext_common.processing as processing
    from tests.conftest import FIXTURES

    image = Image.open(FIXTURES / "images" / name).convert("RGB")
    proc = processing.ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875, resample=3)
    full = proc(image, return_tensors="np").pixel_values
    monkeypatch.setattr(processing.pil_resize, "MAX_INTERMEDIATE_PIXELS", 1)
    monkeypatch.setattr(processing.pil_resize, "_split_plan", lambda *args, **kwargs: None)
    boxed = proc(image, return_tensors="np").pixel_values
    assert np.abs(full - boxed).max() <= 0.05 and np.abs(full - boxed).mean() <= 0.005
