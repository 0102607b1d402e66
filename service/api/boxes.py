"""Frame + boxes: one decoded frame, each person box cut out and embedded as one item.

A tracker holds a frame and N boxes; instead of N crops encoded and uploaded one by one, it sends the frame
once with ``boxes``. The frame is decoded once, every box is checked against the upright image first (a bad
box is a 422 naming its index, before any model work), then each box is cropped, resized and normalized by the
shared preprocessing (:func:`service.contract.preprocess.crop_box`) and all of them go to the micro-batcher
together.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.api.deps import Ready
from service.api.errors import ProblemError, image_error
from service.api.inputs import embed_images, embed_prepared
from service.api.schemas import ImagesRequest
from service.contract.preprocess import (
    BoxError,
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessSpec,
    clip_box,
    open_image,
    resize_normalize,
)


@dataclass(frozen=True)
class Embedded:
    """A request's items embedded: model outputs, the items' image bytes, timings.

    Attributes:
        rows: Model outputs (N, D) (pairwise models: descriptor and encoding, see ``ModelRuntime.split``).
        images: Per item, the bytes to store when images are kept: the image, or the box crop as PNG
            (empty when not asked for).
        decode_ms: Decoding and preprocessing.
        inference_ms: Queueing and running the model.
    """

    rows: np.ndarray
    images: list[bytes]
    decode_ms: float
    inference_ms: float


def box_problem(index: int, exc: BoxError) -> ProblemError:
    """A 422 naming the bad box (``boxes[index]``), shaped like a validation error."""
    return ProblemError(
        422,
        f"boxes[{index}]: {exc}",
        title="Invalid box",
        extra={"errors": [{"loc": ["boxes", str(index)], "msg": str(exc), "type": "value_error.box"}]},
    )


def check_boxes(boxes: Sequence[Sequence[float]], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Pixel rectangles of every box in a ``width`` × ``height`` frame.

    Raises:
        ProblemError: 422 naming the first box that cannot be cut.
    """
    rects = []
    for i, box in enumerate(boxes):
        try:
            rects.append(clip_box(box, width, height))
        except BoxError as exc:
            raise box_problem(i, exc) from None
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
        ProblemError: 400/413 for a bad frame, 422 naming the first bad box.
    """
    try:
        img = open_image(frame, max_pixels=max_pixels)
    except (ImageDecodeError, ImageTooLargeError) as exc:
        raise image_error(exc, "images[0]") from None
    arrays = []
    for rect in check_boxes(boxes, img.width, img.height):
        crop = img.crop(rect)
        arrays.append(resize_normalize(crop, spec))
        if crops_out is not None:
            crops_out.append(_png(crop))
    return arrays


async def embed_items(ready: Ready, body: ImagesRequest, keep_images: bool = False) -> Embedded:
    """Embed a request's items: its images, or the boxes of its one frame.

    Args:
        ready: The loaded service.
        body: The validated request.
        keep_images: Also return each item's bytes (the image, or the crop as PNG) to store.

    Raises:
        ProblemError: 413/422 for too many images / boxes, 400/413/422 for a bad image or box, 503 when the
            inference queue is full.
    """
    if body.boxes is None:
        rows, decode_ms, inference_ms = await embed_images(ready, body.images, "images")
        return Embedded(rows, list(body.images) if keep_images else [], decode_ms, inference_ms)
    settings = ready.state.settings
    limit = settings.max_boxes_per_request
    if len(body.boxes) > limit:
        raise ProblemError(
            422,
            f"boxes[{limit}]: {len(body.boxes)} boxes in one request, above the limit of {limit} "
            "(REID_MAX_BOXES_PER_REQUEST)",
            title="Too many boxes",
            extra={"errors": [{"loc": ["boxes", str(limit)], "msg": "too many boxes", "type": "too_long"}]},
        )
    crops: list[bytes] = []
    prepare = functools.partial(
        preprocess_boxes,
        body.images[0],
        body.boxes,
        ready.runtime.spec,
        settings.max_pixels,
        crops if keep_images else None,
    )
    rows, decode_ms, inference_ms = await embed_prepared(ready, len(body.boxes), prepare)
    return Embedded(rows, crops, decode_ms, inference_ms)
