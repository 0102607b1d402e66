"""LingeringCloseMiddleware alone, on a scripted ASGI exchange: what it sends, what it drains, its bounds.

The live behaviour (urllib, requests, httpx, curl get a 413 for a 60 MiB upload) is in
``tests/reliability/test_early_errors.py``; here the receive side is a script, so the bounds are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from starlette.types import Message, Receive, Scope, Send

from service.api.lingering import LingeringCloseMiddleware

pytestmark = pytest.mark.anyio
CHUNK = b"\0" * 1024


async def early_413(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 413 without reading the body."""
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def reads_then_200(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, then answers 200."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/search", "headers": headers}


class Client:
    """The server side of one connection: a body of ``chunks`` chunks (None: endless), then silence."""

    def __init__(self, chunks: int | None, stall: bool = False) -> None:
        self.chunks = chunks
        self.stall = stall
        self.received = 0
        self.sent: list[Message] = []
        self._iter: Iterator[int] = iter(range(chunks)) if chunks is not None else iter(int, 1)

    async def receive(self) -> Message:
        index = next(self._iter, None)
        if index is None:
            if self.stall:
                await asyncio.sleep(3600)
            return {"type": "http.disconnect"}
        self.received += 1
        last = self.chunks is not None and index == self.chunks - 1
        return {"type": "http.request", "body": CHUNK, "more_body": not last}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def test_early_error_is_sent_with_connection_close_then_the_body_is_drained() -> None:
    client = Client(chunks=100)
    app = LingeringCloseMiddleware(early_413)
    await app(_scope([(b"content-length", b"102400")]), client.receive, client.send)
    start, answer, end = client.sent
    assert start["status"] == 413 and (b"connection", b"close") in start["headers"]
    assert answer == {"type": "http.response.body", "body": b"{}", "more_body": True}  # out before the drain
    assert end == {"type": "http.response.body", "body": b"", "more_body": False}
    assert client.received == 100  # every chunk read, so the close is clean (no reset)


async def test_drain_stops_at_the_byte_bound() -> None:
    client = Client(chunks=None)  # a client that never stops sending
    app = LingeringCloseMiddleware(early_413, max_bytes=50 * len(CHUNK))
    await app(_scope([(b"transfer-encoding", b"chunked")]), client.receive, client.send)
    assert client.received == 51
    assert client.sent[-1]["more_body"] is False


async def test_drain_stops_when_the_client_goes_quiet() -> None:
    client = Client(chunks=3, stall=True)
    app = LingeringCloseMiddleware(early_413, idle_s=0.05, max_s=10.0)
    await asyncio.wait_for(app(_scope([(b"content-length", b"999999")]), client.receive, client.send), 5.0)
    assert client.sent[-1]["more_body"] is False


async def test_answers_after_the_body_and_bodyless_requests_are_untouched() -> None:
    client = Client(chunks=4)
    await LingeringCloseMiddleware(reads_then_200)(
        _scope([(b"content-length", b"4096")]), client.receive, client.send
    )
    assert [m.get("more_body", False) for m in client.sent[1:]] == [False]
    assert all(k != b"connection" for k, _ in client.sent[0]["headers"])
    bodyless = Client(chunks=0)
    await LingeringCloseMiddleware(early_413)(_scope([]), bodyless.receive, bodyless.send)
    assert all(k != b"connection" for k, _ in bodyless.sent[0]["headers"])  # keep-alive stays
    assert bodyless.received == 0 and len(bodyless.sent) == 2
