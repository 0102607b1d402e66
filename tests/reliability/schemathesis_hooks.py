"""schemathesis hooks: real images for the image fields, the one constraint JSON Schema cannot state.

The OpenAPI document states every other limit (image count, non-empty parts, metric names, form fields …);
"these bytes decode to a JPEG, PNG, WebP or BMP image" has no JSON Schema keyword, so without these hooks
schemathesis's positive cases send random bytes as images and the service rightly answers 400. Loaded by
``schemathesis.toml`` (``schemathesis run`` from the repository root) and by ``SCHEMATHESIS_HOOKS`` in
``tests/reliability/test_openapi_contract.py``.
"""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import jsonschema_rs
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core.transforms import to_wire_string
from schemathesis.transport.serialization import Binary

#: (format, media type) of every image kind the decoder accepts.
KINDS = (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("BMP", "image/bmp"))
SIZES = ((1, 1), (8, 16), (64, 128))


def _encode(kind: str, size: tuple[int, int], seed: int) -> bytes:
    image = Image.new("RGB", size, ((seed * 67) % 256, (seed * 131) % 256, (seed * 29) % 256))
    out = io.BytesIO()
    image.save(out, format=kind)
    return out.getvalue()


IMAGES: dict[str, list[bytes]] = {
    media: [_encode(kind, size, i) for i, size in enumerate(SIZES)] for kind, media in KINDS
}
ALL_IMAGES = [data for samples in IMAGES.values() for data in samples]

# File parts (sent with a filename). Not schemathesis.openapi.media_type: it sends parts without a filename,
# which a multipart parser reads as text fields, not files.
schemathesis.openapi.format("binary", st.sampled_from(ALL_IMAGES).map(Binary))
schemathesis.openapi.format(  # base64 strings in JSON bodies
    "byte", st.sampled_from(ALL_IMAGES).map(lambda data: base64.b64encode(data).decode("ascii"))
)


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    """Drop negative multipart cases that reach the server as a valid form.

    Every part of a form is text: ``person_id=false``, ``camera_id=["c1"]`` (one part) and ``threshold=[]``
    (no part) are on the wire exactly what a valid form sends. schemathesis already reads query, path and
    header parameters this way ("a mutated one that spells an accepted value is not negative"), but does not
    check multipart bodies that hold files; this reads the parts as the server does and keeps the case only
    when that reading violates the schema.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative or case.media_type != "multipart/form-data":
        return True
    body = case.operation.get_body_for_media_type(case.media_type)
    schema = body.resolved_schema if body is not None else None
    if not isinstance(case.body, dict) or not isinstance(schema, dict):
        return True
    return not jsonschema_rs.validator_for(schema).is_valid(_wire_reading(case.body, schema))


def _parts(value: object) -> list[str]:
    if isinstance(value, Binary):
        return ["f" * len(value.data)]  # a file part: only its length matters to the schema
    if isinstance(value, list):
        return [part for item in value for part in _parts(item)] if all(
            not isinstance(item, list | dict) for item in value
        ) else [json.dumps(value)]
    if isinstance(value, dict):
        return [json.dumps(value)]
    return [to_wire_string(value)]


def _typed(text: str, schema: dict[str, Any]) -> object:
    """The text of a part as the server's form parsing reads it for a field of ``schema``."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            return number if math.isfinite(number) else text
        if kind == "object":
            return json.loads(text)
    except ValueError:
        return text
    return text


def _wire_reading(body: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    reading: dict[str, Any] = {}
    for name, value in body.items():
        prop = properties.get(name, {})
        parts = _parts(value)
        if not parts:
            continue  # no part: the field is absent
        if "items" in prop:
            reading[name] = [_typed(part, prop["items"]) for part in parts]
        else:
            reading[name] = _typed(parts[0], prop) if len(parts) == 1 else parts
    return reading


def _image_size(value: object) -> tuple[int, int] | None:
    """Width and height of an image field's value (a file part, or base64 text), None when unreadable."""
    data = value.data if isinstance(value, Binary) else value
    if isinstance(data, str):
        data = base64.b64decode(data)
    try:
        return Image.open(io.BytesIO(data)).size if isinstance(data, bytes) else None
    except OSError:
        return None


@schemathesis.hook("map_case")
def boxes_inside_their_frame(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """Positive cases with ``boxes``: one frame, and boxes that lie inside it (at least 2×2 px).

    Both rules tie ``boxes`` to the bytes of ``images``, which JSON Schema cannot state; the frame's size
    comes from the image the hooks above chose. A frame too small to hold a 2×2 box goes without boxes.
    """
    meta = case.meta
    body = case.body
    if meta is None or meta.generation.mode.is_negative or not isinstance(body, dict) or "boxes" not in body:
        return case
    images = body.get("images")
    first = images[0] if isinstance(images, list) and images else images
    size = _image_size(first) if first is not None else None
    fixed = {k: v for k, v in body.items() if k != "boxes"}  # a new body: hypothesis may reuse the old one
    if size is not None and min(size) >= 2:
        boxes = [[0, 0, size[0], size[1]]]
        fixed["images"] = [first]
        fixed["boxes"] = json.dumps(boxes) if case.media_type == "multipart/form-data" else boxes
    case.body = fixed
    return case


@schemathesis.hook("filter_case")
def erase_names_what(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    """``DELETE /gallery`` needs ``person_id``, ``created_before`` or both (422 without): query parameters
    cannot be required as "at least one of" in OpenAPI, so positive cases without either are dropped."""
    meta = case.meta
    if case.operation.method.upper() != "DELETE" or case.operation.path != "/gallery":
        return True
    if meta is not None and meta.generation.mode.is_negative:
        return True
    query = case.query or {}
    return "person_id" in query or "created_before" in query
