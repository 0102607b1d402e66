"""Request bodies from JSON or multipart forms (large ones parsed on a worker thread).

Their OpenAPI document is built in :mod:`service.api.openapi`."""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from service.api.errors import ProblemError
from service.api.openapi import MAX_FORM_LIST
from service.core.workers import run_in_worker

M = TypeVar("M", bound=BaseModel)
_MEDIA = "send multipart/form-data (image files) or application/json (base64 images)"
#: Bodies larger than this are parsed and validated (JSON, base64) on a worker thread, not the event loop:
#: parsing and base64-decoding a body of several MiB would stall every other request meanwhile, while for
#: small bodies the hop to a worker costs more than the parse.
INLINE_PARSE_BYTES = 64 * 1024


async def parse_body(request: Request, model: type[M], max_files: int = 1024) -> M:
    """Validate a JSON or multipart body into ``model`` (a form repeats the parts of ``model.list_fields``).

    Bodies over :data:`INLINE_PARSE_BYTES` are parsed (JSON) and validated (base64 decoding included) on a
    worker thread, so the event loop stays free; multipart bodies are split into parts as they stream in.

    Raises:
        ProblemError: 415 for other media types, 400 for malformed JSON or multipart.
        RequestValidationError: Fields that fail validation (answered as 422).
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        body = await request.body()  # JSON has types, so they are checked strictly (``false`` is no number)
        call = functools.partial(_json_model, body, model)
        size = len(body)
    elif media == "multipart/form-data":
        data = await _form_data(request, getattr(model, "list_fields", ()), max_files)
        call = functools.partial(_validate, data, model)
        size = sum(len(v) for v in data.values() for v in (v if isinstance(v, list) else [v]))
    else:
        shown = media or "none"
        raise ProblemError(
            415, f"unsupported content type {shown!r}: {_MEDIA}", title="Unsupported Media Type"
        )
    return call() if size <= INLINE_PARSE_BYTES else await run_in_worker(call)


def _json_model(body: bytes, model: type[M]) -> M:
    """Parse a JSON body and validate it (on a worker thread when large)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProblemError(400, f"the body is not valid JSON: {exc}", title="Malformed JSON") from None
    except RecursionError:
        raise ProblemError(400, "the JSON body is nested too deeply", title="Malformed JSON") from None
    if not isinstance(data, dict):
        raise ProblemError(422, f"the JSON body must be an object, got {type(data).__name__}")
    return _validate(data, model, strict=True)


def _validate(data: dict[str, Any], model: type[M], strict: bool = False) -> M:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None


async def _form_data(request: Request, list_fields: tuple[str, ...], max_files: int) -> dict[str, Any]:
    """The parts of a multipart body: repeated list fields (``image`` counts as ``images``) as lists."""
    try:
        form = await request.form(max_files=max_files, max_fields=256)
    except MultiPartException as exc:
        raise ProblemError(
            400, f"malformed multipart body: {exc.message}", title="Malformed multipart"
        ) from None
    if not form:  # RFC 2046 needs at least one part; a lost or unterminated part also ends up here
        await form.close()
        raise ProblemError(
            400,
            "malformed multipart body: no complete part found (check the boundary parameter and the "
            "closing --boundary-- line)",
            title="Malformed multipart",
        )
    data: dict[str, Any] = {}
    try:
        for key in dict.fromkeys(form.keys()):
            values = [await v.read() if isinstance(v, UploadFile) else v for v in form.getlist(key)]
            target = "images" if key == "image" and "images" in list_fields else key
            if target in list_fields:
                data.setdefault(target, []).extend(values)
            elif len(values) > 1:  # a scalar field given twice: which one was meant?
                raise _form_error(key, f"{key}: given {len(values)} times; give it once")
            else:
                data[target] = values[0]
    finally:
        await form.close()
    for name, values in data.items():  # as the OpenAPI form schema says
        if name != "images" and isinstance(values, list) and len(values) > MAX_FORM_LIST:
            raise _form_error(name, f"{name}: {len(values)} values, above the {MAX_FORM_LIST} of a form")
    return data


def _form_error(name: str, detail: str) -> ProblemError:
    error = {"loc": [name], "msg": detail, "type": "too_long"}
    return ProblemError(422, detail, title="Validation error", extra={"errors": [error]})
