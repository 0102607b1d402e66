"""Upload limit, counted on the bytes actually streamed (chunked bodies included).

Starlette does not limit body or file-part size, so this pure ASGI middleware does: a declared
``Content-Length`` above the limit is refused before the app runs; otherwise every ``http.request`` chunk is
counted and the first one past the limit raises :class:`RequestBodyTooLarge` (an HTTP 413) inside whatever is
reading the body. The body is never buffered here. A body with a ``Content-Encoding`` other than
``identity`` (a gzip bomb inflates far past any limit) is refused with 415 before it is read: the service
never decompresses request bodies, and images are compressed already.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import RequestBodyTooLarge, problem_response


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413 problem+json.

    Args:
        app: The wrapped ASGI app.
        max_bytes: Largest accepted body in bytes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoding = _header(scope, b"content-encoding")
        if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
            shown = encoding.decode("latin-1")[:64]
            response = problem_response(
                415,
                f"request bodies with Content-Encoding {shown!r} are not accepted: send the body "
                "uncompressed (images are compressed already)",
                title="Unsupported Media Type",
                instance=scope.get("path"),
                headers={"Accept-Encoding": "identity", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = problem_response(
                413,
                f"the request body is {declared} bytes, above the limit of {self.max_bytes} bytes "
                "(REID_MAX_UPLOAD_MB)",
                title="Request body too large",
                instance=scope.get("path"),
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestBodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestBodyTooLarge:
            if started:
                raise
            response = problem_response(
                413,
                f"the request body exceeds the limit of {self.max_bytes} bytes (REID_MAX_UPLOAD_MB)",
                title="Request body too large",
                instance=scope.get("path"),
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
