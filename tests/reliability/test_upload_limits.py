"""Rows 1–3: oversized bodies (declared and chunked), compressed bodies, and pixel bombs.

Rows 1 and 2 run against a live ``reid serve`` (uvicorn, real sockets) so that the server's RSS and its
TMPDIR can be watched; row 3 goes through the app in-process and times the 413.
"""

from __future__ import annotations

import gzip
import io
import os
import select
import socket
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.reliability.conftest import API_KEY, Figure, LiveServer, rss_mb
from tests.timing import within

PROBLEM = "application/problem+json"
MB = 1024 * 1024
UPLOAD_BYTES = 200 * MB


def _http_status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def stream_upload(
    base_url: str, path: str, content_type: str, total: int, chunked: bool, prefix: bytes = b""
) -> tuple[int, float, int, bytes]:
    """Send a ``total``-byte body (``prefix``, then zeros) over a raw socket, reading while sending.

    Returns:
        (status, seconds from the first body byte to the response headers, body bytes sent, raw response).
    """
    url = urlsplit(base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: {content_type}\r\n{framing}\r\n\r\n"
    )
    sock.sendall(head.encode())
    block = b"\0" * MB
    piece = memoryview(b"")
    sent = 0
    response = b""
    t0 = time.perf_counter()
    elapsed = float("nan")
    sock.setblocking(False)
    try:
        while b"\r\n\r\n" not in response:
            if not piece and sent < total:
                size = min(MB, total - sent)
                data = prefix + block[: size - len(prefix)] if sent == 0 else block[:size]
                piece = memoryview(f"{size:x}\r\n".encode() + data + b"\r\n" if chunked else data)
                sent += size
            elif not piece and chunked and sent == total:
                piece, sent = memoryview(b"0\r\n\r\n"), sent + 1
            readable, writable, _ = select.select([sock], [sock] if piece else [], [], 5.0)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response += chunk
                if b"\r\n\r\n" in response:
                    elapsed = time.perf_counter() - t0
            elif writable:
                try:
                    n = sock.send(piece)
                except (BrokenPipeError, ConnectionResetError):
                    piece = memoryview(b"")
                    sent = total + 1
                    continue
                piece = piece[n:]
            elif not readable and not writable:
                break
        if b"\r\n\r\n" in response and elapsed != elapsed:
            elapsed = time.perf_counter() - t0
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    if b"\r\n\r\n" not in response:
        raise AssertionError(f"no response after sending {sent} bytes: {response[:200]!r}")
    return _http_status(response), elapsed, min(sent, total), response


class RssSampler:
    """Samples a process's RSS every few milliseconds in a thread; ``peak_growth`` in MiB."""

    def __init__(self, pid: int, interval_s: float = 0.005) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.baseline = rss_mb(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))

    @property
    def peak_growth(self) -> float:
        """Largest RSS above the baseline, MiB."""
        return self.peak - self.baseline


def _deleted_open_files(pid: int, under: Path) -> list[str]:
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(under)):
            links.append(target)
    return links


@pytest.mark.row(1)
@pytest.mark.parametrize(
    ("chunked", "content_type"),
    [
        (False, "multipart/form-data; boundary=xyz"),
        (True, "multipart/form-data; boundary=xyz"),
        (True, "application/json"),
    ],
    ids=["content-length", "chunked-multipart", "chunked-json"],
)
def test_200mb_upload_is_refused_fast_without_memory_or_temp_files(
    live_server: LiveServer, chunked: bool, content_type: str, figure: Figure
) -> None:
    prefix = b""
    if content_type.startswith("multipart"):  # a real part header, then 200 MB of file content
        prefix = b'--xyz\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n\r\n'
    before = set(live_server.tmp_dir.iterdir())  # start-up leaves a session file of a library there
    with RssSampler(live_server.pid) as rss:
        status, elapsed, sent, raw = stream_upload(
            live_server.base_url, "/embeddings", content_type, UPLOAD_BYTES, chunked, prefix
        )
    assert status == 413, raw[:300]
    assert PROBLEM.encode() in raw.split(b"\r\n\r\n", 1)[0]
    within(elapsed, 1.0, "the 413")
    assert sent < UPLOAD_BYTES, "the server read the whole 200 MB body"
    assert rss.peak_growth < 50, f"server RSS grew {rss.peak_growth:.1f} MiB"
    time.sleep(0.2)
    left = sorted(set(live_server.tmp_dir.iterdir()) - before)
    assert not left, f"temp files left in the server's TMPDIR: {left}"
    open_deleted = _deleted_open_files(live_server.pid, live_server.tmp_dir)
    assert not open_deleted, f"temp files still open in the server: {open_deleted}"
    with live_server.client() as c:
        assert c.get("/health").status_code == 200
    mode = "chunked" if chunked else "content-length"
    kind = content_type.split(";")[0]
    figure(1, f"time to 413 ({mode}, {kind})", elapsed * 1000, "ms", "< 1000")
    figure(1, f"server RSS growth ({mode}, {kind})", rss.peak_growth, "MiB", "< 50")
    figure(1, f"bytes sent before the 413 arrived ({mode}, {kind})", sent / MB, "MiB", "< 200")


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """≈ 250 kB on the wire, 256 MiB inflated (far above the 20 MiB limit)."""
    return _gzip_bomb(256 * MB)


def _gzip_bomb(inflated: int) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as f:
        block = b"\0" * MB
        for _ in range(inflated // MB):
            f.write(block)
    return buf.getvalue()


@pytest.mark.row(2)
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP, identity"])
def test_compressed_body_is_refused_without_inflating(
    live_server: LiveServer, encoding: str, gzip_bomb: bytes, figure: Figure
) -> None:
    bomb = gzip_bomb
    assert len(bomb) < MB
    with RssSampler(live_server.pid) as rss, live_server.client() as c:
        t0 = time.perf_counter()
        r = c.post(
            "/embeddings",
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": encoding},
        )
        elapsed = time.perf_counter() - t0
    assert r.status_code in (413, 415), r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert "content-encoding" in r.json()["detail"].lower()
    assert rss.peak_growth < 50, f"server RSS grew {rss.peak_growth:.1f} MiB"
    figure(2, f"time to {r.status_code} (Content-Encoding: {encoding})", elapsed * 1000, "ms", "413 / 415")
    figure(2, f"server RSS growth ({encoding})", rss.peak_growth, "MiB", "< 50")


@pytest.mark.row(2)
@pytest.mark.anyio
async def test_identity_encoding_is_still_accepted(make_settings, serve, person_images) -> None:
    image = next(iter(person_images.query.values()))
    async with serve(make_settings()) as (_, client):
        r = await client.post(
            "/embeddings", files=[("images", ("a.png", image, "image/png"))],
            headers={"content-encoding": "identity"},
        )  # fmt: skip
    assert r.status_code == 200, r.text


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def real_grey_png(side: int) -> bytes:
    """A complete, decodable ``side`` × ``side`` 8-bit greyscale PNG (all black), built row by row."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_header_claiming(side: int) -> bytes:
    """A 1×1 PNG whose IHDR claims ``side`` × ``side`` pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture(scope="module")
def png_12000() -> bytes:
    """A real 12 000 × 12 000 PNG (≈ 140 kB compressed, 144 megapixels)."""
    data = real_grey_png(12_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (12_000, 12_000)
    return data


@pytest.mark.row(3)
@pytest.mark.anyio
@pytest.mark.parametrize("case", ["header-50000", "real-12000"])
async def test_pixel_bombs_are_413_before_decoding(
    case: str, png_12000: bytes, make_settings, serve, figure: Figure
) -> None:
    data = png_header_claiming(50_000) if case == "header-50000" else png_12000
    async with serve(make_settings()) as (_, client):
        rss0 = rss_mb()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = await client.post("/embeddings", files=[("images", ("bomb.jpg", data, "image/jpeg"))])
            times.append(time.perf_counter() - t0)
            assert r.status_code == 413, r.text
            assert r.headers["content-type"].startswith(PROBLEM)
            assert "pixels" in r.json()["detail"] or "too large" in r.json()["detail"]
        growth = rss_mb() - rss0
    best = min(times)
    within(best, 0.1, "the 413 (best of 3)")
    assert growth < 50, f"RSS grew {growth:.1f} MiB: the image was decoded"
    figure(3, f"time to 413 ({case}, best of 3)", best * 1000, "ms", "< 100")
