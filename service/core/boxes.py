"""A request's model inputs: whole images, or a frame + boxes (each person box cut out as one item).

A tracker holds a frame and N boxes; instead of N crops encoded and uploaded one by one, it sends the frame
once with ``boxes``. The frame is decoded once, every box is checked against the upright image first (a bad
box is a :class:`~service.core.errors.BadBoxError` naming its index, before any model work), then each box is
cropped, resized and normalized by the shared preprocessing (:func:`service.contract.preprocess.clip_box`,
:func:`~service.contract.preprocess.resize_normalize`); :meth:`ReidService.embed` batches them together.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from service.config import Settings
from service.contract.preprocess import (
    BoxError,
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessSpec,
    clip_box,
    open_image,
    preprocess_bytes,
    resize_normalize,
)
from service.core.errors import BadBoxError, BadImageError, TooManyBoxesError, TooManyImagesError


def check_boxes(boxes: Sequence[Sequence[float]], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Pixel rectangles of every box in a ``width`` × ``height`` frame.

    Raises:
        BadBoxError: The first box that cannot be cut, with its index.
    """
    rects = []
    for i, box in enumerate(boxes):
        try:
            rects.append(clip_box(box, width, height))
        except BoxError as exc:
            raise BadBoxError(i, exc) from None
    return rects


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def preprocess_boxes(
    frame: bytes,
    boxes: Sequence[Sequence[float]],
    spec: PreprocessSpec,
    max_pixels: int,
    crops_out: list[bytes] | None = None,
) -> list[np.ndarray]:
    """Decode a frame once and preprocess every box crop of it, in order.

    Args:
        frame: The encoded frame.
        boxes: ``[x1, y1, x2, y2]`` per person, in pixels of the upright frame.
        spec: The model's preprocessing.
        max_pixels: Largest frame width × height.
        crops_out: When given, each crop is appended as PNG bytes (to store it in the gallery: a model switch
            re-embeds the stored crop, not the frame).

    Raises:
        BadImageError: The frame does not decode or has too many pixels (field ``images[0]``).
        BadBoxError: The first box that cannot be cut.
    """
    try:
        img = open_image(frame, max_pixels=max_pixels)
    except ImageTooLargeError as exc:
        raise BadImageError("images[0]", exc, too_large=True) from None
    except ImageDecodeError as exc:
        raise BadImageError("images[0]", exc, too_large=False) from None
    arrays = []
    for rect in check_boxes(boxes, img.width, img.height):
        crop = img.crop(rect)
        arrays.append(resize_normalize(crop, spec))
        if crops_out is not None:
            crops_out.append(_png(crop))
    return arrays


def preprocess_images(
    images: list[bytes], spec: PreprocessSpec, max_pixels: int, fields: list[str]
) -> list[np.ndarray]:
    """Decode and preprocess whole images, in order.

    Raises:
        BadImageError: An image that does not decode or has too many pixels (its field is named).
    """
    arrays = []
    for data, field in zip(images, fields, strict=True):
        try:
            arrays.append(preprocess_bytes(data, spec, max_pixels=max_pixels))
        except ImageTooLargeError as exc:
            raise BadImageError(field, exc, too_large=True) from None
        except ImageDecodeError as exc:
            raise BadImageError(field, exc, too_large=False) from None
    return arrays


def item_preparer(
    images: list[bytes],
    field: str | list[str],
    boxes: list[list[float]] | None,
    spec: PreprocessSpec,
    settings: Settings,
    crops_out: list[bytes] | None = None,
) -> tuple[int, Callable[[], list[np.ndarray]]]:
    """How many model inputs a request holds (its images, or the boxes of its one frame) and the call that
    decodes and preprocesses them (run on a worker).

    Raises:
        TooManyImagesError: More than ``REID_MAX_IMAGES_PER_REQUEST`` images.
        TooManyBoxesError: More than ``REID_MAX_BOXES_PER_REQUEST`` boxes.
    """
    if boxes is not None:
        limit = settings.max_boxes_per_request
        if len(boxes) > limit:
            raise TooManyBoxesError(
                limit,
                f"{len(boxes)} boxes in one request, above the limit of {limit} (REID_MAX_BOXES_PER_REQUEST)",
            )
        return len(boxes), functools.partial(
            preprocess_boxes, images[0], boxes, spec, settings.max_pixels, crops_out
        )
    if len(images) > settings.max_images_per_request:
        raise TooManyImagesError(
            f"{len(images)} images in one request, above the limit of {settings.max_images_per_request} "
            "(REID_MAX_IMAGES_PER_REQUEST)"
        )
    fields = field if isinstance(field, list) else [f"{field}[{i}]" for i in range(len(images))]
    return len(images), functools.partial(preprocess_images, images, spec, settings.max_pixels, fields)
