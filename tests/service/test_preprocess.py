"""The preprocessing contract: formats, orientation, modes, errors, exact numbers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.contract.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessSpec,
    UnsupportedImageFormatError,
    open_image,
    preprocess_bytes,
    preprocess_file,
    resize_normalize,
)

SPEC = PreprocessSpec(height=16, width=8)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pattern(w: int = 8, h: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_accepted_formats_give_float32_chw(fmt):
    out = preprocess_bytes(_encode(_pattern(), fmt), SPEC)
    assert out.shape == (3, 16, 8) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_exact_normalization_values():
    img = Image.new("RGB", (8, 16), (255, 0, 128))
    spec = PreprocessSpec(height=16, width=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    out = resize_normalize(img, spec)
    expected = [(1.0 - 0.5) / 0.5, (0.0 - 0.5) / 0.25, 128 / 255 - 0.5]
    np.testing.assert_allclose(out[:, 0, 0], expected, atol=1e-6)


def test_resize_is_pillow_bilinear():
    img = _pattern(32, 64)
    out = resize_normalize(img, PreprocessSpec(height=16, width=8, mean=(0, 0, 0), std=(1, 1, 1)))
    expected = np.asarray(img.resize((8, 16), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(out, expected.transpose(2, 0, 1))


@pytest.mark.parametrize(
    "payload,kind",
    [
        (b"GIF89a" + b"\x00" * 50, UnsupportedImageFormatError),
        (b"%PDF-1.4\n" + b"\x00" * 50, UnsupportedImageFormatError),
        (b"8BPS" + b"\x00" * 50, UnsupportedImageFormatError),
        (b"", ImageDecodeError),
        (b"not an image at all", ImageDecodeError),
    ],
)
def test_refused_inputs(payload, kind):
    with pytest.raises(kind):
        open_image(payload)


def test_real_gif_is_refused_even_though_pillow_can_read_it():
    with pytest.raises(UnsupportedImageFormatError, match="GIF"):
        open_image(_encode(_pattern(), "GIF"))


def test_truncated_jpeg_is_a_decode_error():
    data = _encode(_pattern(64, 128), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError):
        open_image(data[: len(data) // 2])


def test_pixel_cap_is_checked_from_the_header():
    data = _encode(Image.new("RGB", (300, 200)), "PNG")
    with pytest.raises(ImageTooLargeError, match="60000 pixels"):
        open_image(data, max_pixels=50_000)
    assert open_image(data, max_pixels=60_000).size == (300, 200)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    decoded = open_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (10, 20)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "1"])
def test_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img = _pattern().convert(mode) if mode not in ("I;16",) else Image.new("I;16", (8, 16), 40000)
    decoded = open_image(_encode(img, fmt))
    assert decoded.mode == "RGB" and decoded.size == (8, 16)
    if mode == "I;16":
        assert decoded.getpixel((0, 0))[0] == round(40000 / 65535 * 255)


def test_preprocess_file_names_the_file(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"hello")
    with pytest.raises(ImageDecodeError, match=r"x\.jpg"):
        preprocess_file(bad, SPEC)
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        preprocess_file(tmp_path / "missing.jpg", SPEC)


def test_spec_validation():
    with pytest.raises(ValueError, match="std"):
        PreprocessSpec(height=16, width=8, std=(0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="at least 8"):
        PreprocessSpec(height=4, width=8)
