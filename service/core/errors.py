"""What can go wrong in a request, in the service's terms; :mod:`service.api.errors` maps each to a status.

Two more families come from the layers below and are mapped the same way: the batcher's
:class:`~service.inference.batching.QueueFullError` and the executor's
:class:`~service.inference.executor.InferenceStoppedError` (both 503 with ``Retry-After``).
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service cannot fulfil as asked; the message says why and how to fix it."""


class NotFoundError(ServiceError):
    """An unknown gallery id, or a person without entries."""


class NoEmbeddingError(ServiceError):
    """The gallery entry has no embedding (or comparator encoding) for the active model."""


class MetricUnavailableError(ServiceError):
    """The scoring metric is not offered by the active model."""


class UncalibratedError(ServiceError):
    """A decision was asked of a metric without a calibrated threshold (a fresh import) and none was given."""


class TooManyImagesError(ServiceError):
    """More images in one request than ``REID_MAX_IMAGES_PER_REQUEST``."""


class BadImageError(ServiceError):
    """An image that cannot be decoded (``too_large=False``) or has too many pixels (``too_large=True``).

    Args:
        field: The request field holding the image (``images[2]``, ``image_a``).
        cause: The preprocessing error.
        too_large: True for a pixel-limit error.
    """

    def __init__(self, field: str, cause: Exception, too_large: bool) -> None:
        super().__init__(f"{field}: {cause}")
        self.field = field
        self.too_large = too_large


class BadBoxError(ServiceError):
    """A person box that cannot be cut from its frame (422 naming ``boxes[index]``).

    Args:
        index: Position of the box in the request.
        cause: What is wrong with it.
    """

    def __init__(self, index: int, cause: Exception | str) -> None:
        super().__init__(f"boxes[{index}]: {cause}")
        self.index = index


class TooManyBoxesError(BadBoxError):
    """More boxes in one request than ``REID_MAX_BOXES_PER_REQUEST`` (names the first box over the limit)."""
