"""Request bodies and their field types; every field is described (they show in the OpenAPI docs, ``/docs``).

The response bodies are in :mod:`service.api.responses`.

Image fields accept base64 text in JSON (a ``data:image/...;base64,`` prefix is allowed) and file parts in
multipart forms; both arrive here as bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from service.contract.scoring import ServedMetric, describe
from service.core.queries import SearchQuery
from service.gallery.filters import SearchFilter

#: Largest gallery id accepted: 2^53 - 1, the largest integer every JSON parser reads exactly (RFC 7493), so
#: that the limit in the OpenAPI document means the same to a client comparing in doubles. (SQLite rowids are
#: int64; the gallery numbers entries from 1.)
MAX_GALLERY_ID = 2**53 - 1
Metric = ServedMetric
_METRIC_DOC = (
    f"Scoring mode (default: the model's default metric). {describe()}. pairwise re-ranks a descriptor "
    "shortlist in /search."
)
_THRESHOLD_DOC = (
    "Decision threshold; default: the model's calibrated threshold for the metric (an uncalibrated model: "
    "/search decides nothing, /verify answers 422)."
)
CameraId = Annotated[str, Field(max_length=128)]
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: object) -> object:
    """Parse here (JSON bodies are validated strictly, where pydantic takes no string for a datetime)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value.strip()):
        raise ValueError("not an RFC 3339 date-time with a UTC offset (e.g. 2026-12-01T08:00:00Z)")
    try:
        return datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:  # e.g. month 13
        raise ValueError(f"not a valid RFC 3339 date-time: {exc}") from None


#: An RFC 3339 date-time with its UTC offset (no bare dates, no UNIX numbers).
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


def _image_bytes(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        text = "".join(text.split())
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not valid base64 ({exc}); send the image bytes base64-encoded") from None
    return value


def _integral(value: object) -> object:
    """A JSON number with no fraction (``3.0``) is an integer, as in JSON Schema; ``true`` is not one.

    JSON bodies are validated strictly (no ``"3"`` or ``false`` for a number), which would refuse ``3.0``.
    """
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _json_object(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None
    return value


ImageData = Annotated[
    bytes,
    BeforeValidator(_image_bytes),
    WithJsonSchema({
        "type": "string",
        "format": "byte",
        "minLength": 4,
        "description": "Base64-encoded JPEG/PNG/WebP/BMP (a data: URL prefix is allowed); it must decode "
        "to an image (400) of at most REID_MAX_PIXELS pixels (413).",
    }),
]
Metadata = Annotated[dict[str, Any], BeforeValidator(_json_object)]
Box = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]],
    Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in pixels of the upright image."),
]
#: In multipart forms ``boxes`` is one field holding the JSON list.
Boxes = Annotated[list[Box], BeforeValidator(_json_object)]
_BOXES_DOC = (
    "Person boxes [[x1, y1, x2, y2], ...] in pixels of the upright (EXIF-applied) image, x2/y2 exclusive: "
    "with boxes, `images` holds one frame, each box is cut from it and is one item (in order). Boxes "
    "reaching past the border are clipped; each must keep at least 2×2 px; at most "
    "REID_MAX_BOXES_PER_REQUEST boxes. In a multipart form: one field with the JSON list."
)


class _Request(BaseModel):
    """A body that comes as JSON (images base64-encoded) or as a multipart form (images as file parts)."""

    model_config = ConfigDict(extra="forbid")
    #: The image fields: file parts in a form.
    file_fields: ClassVar[tuple[str, ...]] = ()
    #: The list fields: repeated parts in a form.
    list_fields: ClassVar[tuple[str, ...]] = ()


def _one_of(image: str, gallery_id: str) -> dict[str, Any]:
    """JSON Schema for "exactly one of ``image`` and ``gallery_id`` is given (not null)"."""
    return {
        "oneOf": [
            {"required": [image], "properties": {image: {"type": "string"}}},
            {"required": [gallery_id], "properties": {gallery_id: {"type": "integer"}}},
        ]
    }


class VerifyRequest(_Request):
    """Two images (or gallery ids in their place) to compare."""

    model_config = ConfigDict(
        json_schema_extra={"allOf": [_one_of("image_a", "gallery_id_a"), _one_of("image_b", "gallery_id_b")]}
    )
    file_fields = ("image_a", "image_b")

    image_a: ImageData | None = Field(default=None, description="First image (or give gallery_id_a).")
    image_b: ImageData | None = Field(default=None, description="Second image (or give gallery_id_b).")
    gallery_id_a: int | None = Field(
        default=None, ge=1, le=MAX_GALLERY_ID, description="Gallery id used in place of image_a."
    )
    gallery_id_b: int | None = Field(
        default=None, ge=1, le=MAX_GALLERY_ID, description="Gallery id used in place of image_b."
    )
    metric: Metric | None = Field(default=None, description=_METRIC_DOC)
    threshold: float | None = Field(default=None, allow_inf_nan=False, description=_THRESHOLD_DOC)

    _integral_ids = field_validator("gallery_id_a", "gallery_id_b", mode="before")(_integral)

    @model_validator(mode="after")
    def _one_of_each(self) -> VerifyRequest:
        for side in ("a", "b"):
            image, gid = getattr(self, f"image_{side}"), getattr(self, f"gallery_id_{side}")
            if (image is None) == (gid is None):
                raise ValueError(f"give exactly one of image_{side} and gallery_id_{side}")
        return self

    def sides(self) -> tuple[bytes | int, bytes | int]:
        """Each side as image bytes or a gallery id (the validator guarantees exactly one of them)."""
        a = self.image_a if self.image_a is not None else self.gallery_id_a
        b = self.image_b if self.image_b is not None else self.gallery_id_b
        assert a is not None and b is not None
        return a, b


class ImagesRequest(_Request):
    """One or more images."""

    file_fields = list_fields = ("images",)

    images: list[ImageData] = Field(
        min_length=1, max_length=1024, description="The images (1 or more), or one frame with `boxes`."
    )
    boxes: Boxes | None = Field(default=None, min_length=1, max_length=1024, description=_BOXES_DOC)

    @model_validator(mode="after")
    def _one_frame_with_boxes(self) -> ImagesRequest:
        if self.boxes is not None and len(self.images) != 1:
            raise ValueError(f"boxes are cut from one frame: send 1 image with them, not {len(self.images)}")
        return self

    @property
    def item_count(self) -> int:
        """Items the request embeds: its boxes, or else its images."""
        return len(self.boxes) if self.boxes is not None else len(self.images)


class SearchRequest(ImagesRequest):
    """Query images and how to rank the gallery for them."""

    list_fields = ("images", "person_ids", "camera_ids", "exclude_camera_ids")

    top_k: int = Field(default=10, ge=1, le=1000, description="Results per query image (1…1000).")
    _integral_top_k = field_validator("top_k", mode="before")(_integral)
    metric: Metric | None = Field(default=None, description=_METRIC_DOC)
    threshold: float | None = Field(default=None, allow_inf_nan=False, description=_THRESHOLD_DOC)
    exclude_camera_id: str | None = Field(
        default=None,
        max_length=128,
        description="Skip gallery entries from this camera (cross-camera search).",
    )
    person_ids: list[str] | None = Field(
        default=None, max_length=10000, description="Only return gallery entries of these persons."
    )
    camera_ids: list[CameraId] | None = Field(
        default=None, max_length=1000, description="Only return gallery entries from these cameras."
    )
    exclude_camera_ids: list[CameraId] | None = Field(
        default=None, max_length=1000, description="Never return gallery entries from these cameras."
    )
    created_after: Rfc3339 | None = Field(
        default=None,
        description="Only gallery entries enrolled at or after this time (RFC 3339, with a UTC offset).",
    )
    created_before: Rfc3339 | None = Field(
        default=None,
        description="Only gallery entries enrolled strictly before this time (RFC 3339, with a UTC offset).",
    )
    aggregate: Literal["none", "mean"] = Field(
        default="none",
        description="mean: all query images (or boxes) are one person, a tracklet, searched as one query "
        "(one result row): cosine / correlation score = the mean score over the images (the mean of their "
        "L2-normalized embeddings), euclidean = root-mean-square distance, softmax = sigmoid of the mean "
        "head logit, pairwise = mean comparator score over the descriptor shortlist. none: one row per "
        "image.",
    )
    group_by: Literal["entry", "person"] = Field(
        default="entry",
        description="person: one row item per person in `persons` (best score, the entry that gave it, "
        "how many of its entries rank above every person not returned); top_k then counts persons.",
    )

    def query(self) -> SearchQuery:
        """The service layer's query: the filters folded into one (``exclude_camera_id`` joins
        ``exclude_camera_ids``)."""
        excluded = list(self.exclude_camera_ids or ())
        if self.exclude_camera_id is not None:
            excluded.append(self.exclude_camera_id)
        filters = SearchFilter.of(
            camera_ids=self.camera_ids,
            exclude_camera_ids=excluded,
            person_ids=self.person_ids,
            created_after=self.created_after,
            created_before=self.created_before,
        )
        aggregate, by_person = self.aggregate == "mean", self.group_by == "person"
        return SearchQuery(self.top_k, self.metric, self.threshold, filters, aggregate, by_person)


class EnrolRequest(ImagesRequest):
    """Images of one person to add to the gallery."""

    person_id: str = Field(min_length=1, max_length=128, description="Identity of the person in the images.")
    camera_id: str | None = Field(default=None, max_length=128, description="Camera that took the images.")
    metadata: Metadata = Field(default_factory=dict, description="JSON object stored with every entry.")

    @model_validator(mode="after")
    def _small_metadata(self) -> EnrolRequest:
        if len(json.dumps(self.metadata)) > 16384:
            raise ValueError("metadata must serialize to at most 16384 bytes of JSON")
        return self
