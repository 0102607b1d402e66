"""The OpenAPI document states every limit the service enforces (schemathesis checks it against the server).

Request bodies come as JSON (images base64-encoded) or as multipart forms (images as file parts). The JSON
schema is the pydantic model's; the form schema is derived from it: image fields become non-empty binary file
parts of the accepted image types, optional fields lose their ``null`` (a form omits a field instead), a
scalar field is one part (two are refused) and a form carries at most :data:`MAX_FORM_LIST` values of a
list; ``boxes`` is one part of JSON text, described on the form. What depends on the deployment or on the
loaded model is filled in per app by :func:`install_openapi`: ``maxItems`` of the image lists is
``REID_MAX_IMAGES_PER_REQUEST``, of ``boxes`` ``REID_MAX_BOXES_PER_REQUEST``, and ``metric`` lists the scoring
modes of the active model.

What a schema cannot say is in the descriptions: the body limit (``REID_MAX_UPLOAD_MB``, 413), the pixel
limit (``REID_MAX_PIXELS``, 413) and that the bytes must decode to an image (400).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

F = TypeVar("F", bound=Callable[..., Any])

#: Image media types a form part may declare (what the decoder accepts; GIF is refused).
IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/bmp"
#: Most repeated text values of one list field in a form (the form parser accepts 256 fields in all).
MAX_FORM_LIST = 200
_BINARY = {"type": "string", "format": "binary", "minLength": 1}
#: Nested lists that a form carries as one field of JSON text (``boxes``). They are described in the form's
#: description rather than as a string property: a schema for "JSON text of a list of 4-number lists that lie
#: inside the frame" would only be a pattern, and schemathesis's coverage phase sends pattern-valid forms
#: as negative cases; the JSON body's schema states them fully.
JSON_TEXT_FIELDS = ("boxes",)
FORM_BOXES_DOC = (
    "Frame + boxes: send one `images` file and a `boxes` field holding the JSON list [[x1, y1, x2, y2], ...] "
    "(as in the JSON body; at most REID_MAX_BOXES_PER_REQUEST boxes)."
)


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` → X (keeping the description): a form omits a field it has no value for."""
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1:
        return prop
    merged = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**branches[0], **merged}


def _form_schema(json_schema: dict[str, Any], file_fields: tuple[str, ...]) -> dict[str, Any]:
    form = copy.deepcopy(json_schema)
    properties: dict[str, Any] = form["properties"]
    for name, prop in list(properties.items()):
        prop = _without_null(prop)
        if name in JSON_TEXT_FIELDS:  # documented on the form, not as a property: see JSON_TEXT_FIELDS
            del properties[name]
            form["description"] = f"{form.get('description', '')} {FORM_BOXES_DOC}".strip()
            continue
        if name in file_fields:
            keep = {k: v for k, v in prop.items() if k in ("description", "title", "minItems", "maxItems")}
            prop = {**keep, "type": "array", "items": dict(_BINARY)} if prop.get("type") == "array" else {
                **keep, **_BINARY}  # fmt: skip
        elif prop.get("type") == "array":  # one form field per value
            prop["maxItems"] = min(prop.get("maxItems", MAX_FORM_LIST), MAX_FORM_LIST)
        properties[name] = prop
    for rule in form.get("allOf", []):  # exactly-one-of rules: in a form, a given field is never null
        for branch in rule.get("oneOf", []):
            branch.pop("properties", None)
    return form


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that may be JSON (base64 images) or multipart (the model's
    ``file_fields`` as files)."""
    file_fields: tuple[str, ...] = getattr(model, "file_fields", ())
    json_schema = model.model_json_schema()
    form = _form_schema(json_schema, file_fields)
    encoding = {name: {"contentType": IMAGE_TYPES} for name in file_fields}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_schema},
                "multipart/form-data": {"schema": form, "encoding": encoding},
            },
        }
    }


def post_body(
    router: APIRouter,
    path: str,
    body: type[BaseModel],
    answer: type[BaseModel],
    summary: str,
    status: int = 200,
) -> Callable[[F], F]:
    """``router.post`` for an endpoint whose ``body`` comes as JSON or as a multipart form (both documented,
    see :func:`openapi_body`) and whose ``answer`` is the response model."""
    return router.post(
        path, status_code=status, response_model=answer, summary=summary, openapi_extra=openapi_body(body)
    )


def install_openapi(app: FastAPI, max_images: int, max_boxes: int = 64) -> None:
    """Make ``app.openapi()`` state this deployment's image and box limits and the active model's metrics."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = copy.deepcopy(build())  # FastAPI builds (and caches) the static part once
        service = getattr(app.state, "service", None)
        gallery = getattr(service, "gallery", None)
        metrics = list(gallery.metrics) if gallery is not None else None
        for body in _request_bodies(document):
            _apply(body, max_images, max_boxes, metrics)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _request_bodies(document: dict[str, Any]) -> list[dict[str, Any]]:
    bodies = []
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if isinstance(media.get("schema"), dict):
                    bodies.append(media["schema"])
    return bodies


def _apply(schema: dict[str, Any], max_images: int, max_boxes: int, metrics: list[str] | None) -> None:
    properties = schema.get("properties", {})
    images = properties.get("images")
    if images is not None:
        images["maxItems"] = max_images
        images["description"] = f"The images (1 to {max_images}: REID_MAX_IMAGES_PER_REQUEST)"
        images["description"] += ", or one frame with `boxes`." if "boxes" in properties else "."
    boxes = properties.get("boxes")
    for branch in [boxes, *boxes.get("anyOf", [])] if boxes is not None else []:
        if branch.get("type") == "array":  # JSON; a form carries the list as JSON text
            branch["maxItems"] = max_boxes
    metric = properties.get("metric")
    if metric is not None and metrics is not None:
        _set_enums(metric, metrics)
        metric["description"] = metric.get("description", "") + f" Available now: {', '.join(metrics)}."


def _set_enums(schema: Any, values: list[str]) -> None:
    """Replace every ``enum`` inside ``schema`` (its anyOf branches, array items …) by ``values``."""
    if isinstance(schema, dict):
        if "enum" in schema:
            schema["enum"] = values
        for value in schema.values():
            _set_enums(value, values)
    elif isinstance(schema, list):
        for item in schema:
            _set_enums(item, values)

