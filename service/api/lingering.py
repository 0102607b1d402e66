"""Lingering close: an early error answer reaches clients that send their whole body before reading.

When the service answers 4xx/5xx before it has read the request body (a declared ``Content-Length`` over the
upload limit, a refused ``Content-Encoding``, a missing API key, an unknown route …), closing the connection
at once leaves the rest of the body unread in the kernel's receive buffer, and closing a socket with unread
data sends a TCP reset. A client that reads only after sending its last byte — Python's ``urllib.request``
does — then sees ``ConnectionResetError`` instead of the answer. Like nginx's ``lingering_close``, this pure
ASGI middleware sends the answer (with ``Connection: close``), keeps reading and discarding the rest of the
body until the client has sent it all, stops sending, or a bound is reached, and only then lets the server
close the connection. The bounds (bytes, total seconds, seconds without data) keep a client from holding the
connection open; nothing is buffered.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Most bytes discarded after an early answer (a client sending more gets the reset it asked for).
LINGER_MAX_BYTES = 512 * 1024 * 1024
#: Longest drain after an early answer (nginx's ``lingering_time`` is 30 s).
LINGER_MAX_S = 30.0
#: Longest wait for the next piece of body while draining (nginx's ``lingering_timeout`` is 5 s).
LINGER_IDLE_S = 5.0


class LingeringCloseMiddleware:
    """Drain the unread request body after an early error answer, then close the connection.

    Args:
        app: The wrapped ASGI app.
        max_bytes: Most body bytes discarded after the answer.
        max_s: Longest drain, in seconds.
        idle_s: Longest wait for the next body chunk while draining, in seconds.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = LINGER_MAX_BYTES,
        max_s: float = LINGER_MAX_S,
        idle_s: float = LINGER_IDLE_S,
    ) -> None:
        if max_bytes < 0 or max_s <= 0 or idle_s <= 0:
            raise ValueError(f"bounds must be positive, got {max_bytes=}, {max_s=}, {idle_s=}")
        self.app = app
        self.max_bytes = max_bytes
        self.max_s = max_s
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        body_done = False
        lingering = False
        held: Message | None = None  # the answer's last body message, sent after the drain

        async def tracking_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_done = True
            return message

        async def lingering_send(message: Message) -> None:
            nonlocal lingering, held
            if message["type"] == "http.response.start" and message["status"] >= 400 and not body_done:
                lingering = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            elif lingering and message["type"] == "http.response.body" and not message.get("more_body"):
                held = message  # the answer goes out now; the end of the response waits for the drain
                message = {**message, "more_body": True}
            await send(message)

        await self.app(scope, tracking_receive, lingering_send)
        if held is None:
            return
        if not body_done:
            await self._drain(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drain(self, receive: Receive) -> None:
        """Read and discard body chunks until the body ends, the client leaves, or a bound is reached."""
        drained = 0
        deadline = time.monotonic() + self.max_s
        while drained <= self.max_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), timeout=min(self.idle_s, left))
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def _has_body(scope: Scope) -> bool:
    """True when the request announces a body (a non-zero Content-Length, or any Transfer-Encoding)."""
    for key, value in scope.get("headers", []):
        if key == b"transfer-encoding":
            return True
        if key == b"content-length":
            return value.strip() not in (b"0", b"")
    return False
