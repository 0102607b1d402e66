"""RFC 9457 problem details: every error the service returns is ``application/problem+json``.

Bad input never becomes a 500: decode errors are 400, oversized bodies and images 413, unsupported request
media types 415, validation errors 422, unknown ids 404, missing or wrong API keys 401, and "not ready" or
"queue full" 503 (with ``Retry-After``).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.errors import (
    BadBoxError,
    BadImageError,
    MetricUnavailableError,
    NoEmbeddingError,
    NotFoundError,
    ServiceError,
    TooManyBoxesError,
    TooManyImagesError,
    UncalibratedError,
)
from service.gallery.protocol import GalleryUnavailableError
from service.inference.batching import QueueFullError
from service.inference.executor import InferenceStoppedError

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger(__name__)


class Problem(BaseModel):
    """An RFC 9457 problem details object (extension members may follow)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="Problem type URI ('about:blank': see title).")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, and how to fix it.")
    instance: str | None = Field(default=None, description="The request path.")


_ERROR_DESCRIPTIONS = {
    400: "Malformed body or undecodable image.",
    401: "Missing or invalid API key (when REID_API_KEYS is set).",
    404: "Unknown gallery id or person.",
    409: "The gallery entry has no embedding for the active model.",
    413: "Body over REID_MAX_UPLOAD_MB or image over REID_MAX_PIXELS.",
    415: "Unsupported request media type or content encoding.",
    422: "Request validation failed (too many images included); `errors` lists each problem.",
    503: "Not ready (`detail` says why) or the inference queue is full; see Retry-After.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting error statuses as ``application/problem+json``."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": _ERROR_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


class ProblemError(Exception):
    """An error answered as problem+json.

    Args:
        status: HTTP status code.
        detail: A human-readable explanation specific to this occurrence.
        title: Short summary of the problem type (defaults to the status phrase).
        headers: Extra response headers (e.g. ``Retry-After``).
        extra: Extension members added to the problem object.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra or {}


class RequestBodyTooLarge(StarletteHTTPException):
    """Raised while streaming a body past the upload limit (an HTTPException: no layer makes it a 500)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body exceeds the limit of {limit} bytes")


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


#: The status and title of each service error (a subclass takes its first listed base's entry).
_SERVICE_STATUS: dict[type[ServiceError], tuple[int, str | None]] = {
    NotFoundError: (404, None),
    NoEmbeddingError: (409, None),
    MetricUnavailableError: (422, None),
    UncalibratedError: (422, "Uncalibrated model"),
    TooManyImagesError: (422, "Too many images"),  # the OpenAPI document's maxItems
    TooManyBoxesError: (422, "Too many boxes"),
    BadBoxError: (422, "Invalid box"),
}


def _service_status(exc: ServiceError) -> tuple[int, str | None]:
    if isinstance(exc, BadImageError):
        return (413, "Image too large") if exc.too_large else (400, "Invalid image")
    for kind in type(exc).__mro__:
        if kind in _SERVICE_STATUS:
            return _SERVICE_STATUS[kind]
    return 400, None


def _validation_detail(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    cleaned = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        cleaned.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    first = cleaned[0] if cleaned else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "request"
    more = f" (and {len(cleaned) - 1} more)" if len(cleaned) > 1 else ""
    return f"{where}: {first['msg']}{more}", cleaned


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI paths allow on the request's path (HEAD with GET, as Starlette serves it)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            methods.update(m.upper() for m in operations)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            title=exc.title,
            instance=request.url.path,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> JSONResponse:
        status, title = _service_status(exc)
        extra = None
        if isinstance(exc, BadBoxError):  # shaped like a validation error, naming the box
            loc = ["boxes", str(exc.index)]
            extra = {"errors": [{"loc": loc, "msg": str(exc), "type": "value_error.box"}]}
        return problem_response(status, str(exc), title=title, instance=request.url.path, extra=extra)

    @app.exception_handler(QueueFullError)
    @app.exception_handler(InferenceStoppedError)
    @app.exception_handler(GalleryUnavailableError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        retry = str(request.app.state.settings.retry_after_s)
        return problem_response(
            503,
            f"{exc}; retry after {retry} s",
            title="Service Unavailable",
            instance=request.url.path,
            headers={"Retry-After": retry},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(list(exc.errors()))
        return problem_response(
            422, detail, title="Validation error", instance=request.url.path, extra={"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            allowed = _allowed_methods(request)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
                detail = f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}"
        return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; see the server log", instance=request.url.path)
