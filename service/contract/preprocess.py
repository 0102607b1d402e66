"""The image preprocessing contract shared by training and serving.

One implementation, numpy + Pillow only (no torch), used by the training data path and by the service, so that
train and serve cannot drift: decode (JPEG, PNG, WebP or BMP only) → EXIF transpose → RGB → bilinear resize to
(H, W) → scale to [0, 1] → normalize with mean / std → float32 CHW. A frame with person boxes adds one step
after RGB: each box (:func:`clip_box`) is cut out of the upright image, then resized and normalized alike.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: The only decoders Pillow may use: anything else (GIF, PDF, EPS, PSD, TIFF …) is refused.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP")
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Default cap on decoded pixels (width × height), checked from the header before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image (corrupt, truncated, empty)."""


class UnsupportedImageFormatError(ImageDecodeError):
    """The bytes are an image in a format we do not accept (e.g. GIF, PDF, PSD)."""


class ImageTooLargeError(ValueError):
    """The image header declares more pixels than allowed."""


class BoxError(ValueError):
    """A person box that cannot be cut from the image (not finite, empty, or too small after clipping)."""


#: Smallest crop, in pixels per side, that a box may leave after clipping to the image.
MIN_BOX_SIDE = 2


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes a model input: target size and normalization.

    Attributes:
        height: Output height in pixels.
        width: Output width in pixels.
        mean: Per-channel (RGB) mean subtracted after scaling to [0, 1].
        std: Per-channel (RGB) standard deviation divided after subtracting the mean.
    """

    height: int
    width: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"input size must be at least 8×8, got {self.height}×{self.width}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {self.std}")


def open_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes into an RGB Pillow image, refusing other formats and oversized images.

    The pixel count is checked from the header, before the pixel data is decoded.

    Args:
        data: Encoded image bytes.
        max_pixels: Largest allowed width × height, or None for no cap (Pillow's bomb check still applies).

    Returns:
        The decoded image, EXIF-orientation applied, in RGB mode.

    Raises:
        ImageDecodeError: Empty, corrupt or truncated data.
        UnsupportedImageFormatError: A real image in a format outside ``ALLOWED_FORMATS``.
        ImageTooLargeError: More than ``max_pixels`` pixels.
    """
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"the image is too large to decode: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageTooLargeError(f"the image is too large to decode: {exc}") from exc
    except UnidentifiedImageError as exc:
        detected = _sniff_format(data)
        if detected is not None:
            raise UnsupportedImageFormatError(
                f"unsupported image format {detected}; accepted formats are {', '.join(ALLOWED_FORMATS)}"
            ) from exc
        raise ImageDecodeError(
            f"the data is not a decodable image (accepted formats: {', '.join(ALLOWED_FORMATS)})"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # a recognised header that is cut short or corrupt
        raise ImageDecodeError(f"the image header could not be decoded: {exc}") from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"the image has no pixels ({width}×{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}×{height} = {width * height} pixels, above the limit of {max_pixels}"
        )
    try:
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # no copy when there is nothing to rotate
        return _to_rgb(img)
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt streams surface here
        raise ImageDecodeError(f"the {img.format} image could not be decoded: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bit rather than clip (Pillow's convert("L") clips at 255).
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr8 = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency onto black: the same result every time, whatever the hidden colours are.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF", "PDF"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "PSD"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
)


def _sniff_format(data: bytes) -> str | None:
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    return None


def resize_normalize(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Resize an RGB image to the spec's size (bilinear) and normalize it.

    Returns:
        float32 array of shape (3, H, W).
    """
    if img.mode != "RGB":
        img = _to_rgb(img)
    if img.size != (spec.width, spec.height):
        img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def clip_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """The pixel rectangle a box ``[x1, y1, x2, y2]`` cuts from a ``width`` × ``height`` image.

    Coordinates are pixels of the upright (EXIF-applied) image, x right, y down, ``x2``/``y2`` exclusive.
    Fractional edges widen to whole pixels (``x1``, ``y1`` floored, ``x2``, ``y2`` ceiled), then the box is
    clipped to the image, so a box reaching past the border keeps its inside part.

    Raises:
        BoxError: Not 4 finite numbers, ``x2 <= x1`` or ``y2 <= y1``, or less than 2×2 px inside the image.
    """
    if len(box) != 4:
        raise BoxError(f"a box is [x1, y1, x2, y2], got {len(box)} numbers")
    if not all(math.isfinite(v) for v in box):
        raise BoxError(f"box coordinates must be finite numbers, got {list(box)}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise BoxError(f"need x1 < x2 and y1 < y2, got {list(box)}")
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if right - left < MIN_BOX_SIDE or bottom - top < MIN_BOX_SIDE:
        raise BoxError(
            f"box {list(box)} keeps {max(0, right - left)}×{max(0, bottom - top)} px inside the "
            f"{width}×{height} image, below {MIN_BOX_SIDE}×{MIN_BOX_SIDE}"
        )
    return left, top, right, bottom


def preprocess_bytes(
    data: bytes, spec: PreprocessSpec, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode and preprocess one encoded image into a float32 (3, H, W) array."""
    return resize_normalize(open_image(data, max_pixels=max_pixels), spec)


def open_image_file(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Decode an image file exactly as :func:`open_image` decodes bytes; errors name the file.

    Raises:
        FileNotFoundError: The file does not exist.
        ImageDecodeError / ImageTooLargeError: Not an accepted image; the message starts with the path.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {p}") from None
    try:
        return open_image(data, max_pixels=max_pixels)
    except (ImageDecodeError, ImageTooLargeError) as exc:
        raise type(exc)(f"{p}: {exc}") from exc


def preprocess_file(path: str | Path, spec: PreprocessSpec, max_pixels: int | None = None) -> np.ndarray:
    """Read a file and preprocess it exactly as the service would preprocess its bytes.

    Raises:
        FileNotFoundError: The file does not exist.
        ImageDecodeError: The file is not an accepted image; the message names the file.
    """
    return resize_normalize(open_image_file(path, max_pixels=max_pixels), spec)


def stack_batch(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack preprocessed (3, H, W) arrays into one contiguous float32 (N, 3, H, W) batch."""
    if not arrays:
        raise ValueError("cannot build a batch from zero images")
    return np.ascontiguousarray(np.stack(arrays, axis=0), dtype=np.float32)
