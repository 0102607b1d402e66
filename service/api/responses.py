"""Hot endpoints' JSON answers, serialized once.

A route that returns a pydantic model has FastAPI validate it again against ``response_model``, turn it into
plain Python objects and ``json.dumps`` those: three passes over the answer per request. The model was
validated when it was built, so :func:`json_response` serializes it once, in pydantic-core (Rust), to the same
JSON document. The routes keep ``response_model=`` so the OpenAPI document still describes the answer.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


class JSONBytesResponse(Response):
    """An ``application/json`` response whose body is already serialized."""

    media_type = "application/json"


def json_response(model: BaseModel) -> Response:
    """The answer ``model`` as an ``application/json`` response (by alias, like FastAPI's own path)."""
    return JSONBytesResponse(model.__pydantic_serializer__.to_json(model, by_alias=True))
