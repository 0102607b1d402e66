"""Row 1, lingering close: an early 4xx reaches clients that send their whole body before reading.

The server refuses a 60 MiB upload (limit 20 MiB) as soon as it sees ``Content-Length``. Python's
``urllib.request`` reads the answer only after sending the last byte; when the server closed the socket with
unread data, the kernel answered the rest with a TCP reset and urllib saw ``ConnectionResetError`` instead of
the 413 (requests, httpx and curl happened to read it). The service now keeps reading and discarding the rest
of the body (bounded in bytes and seconds) before it closes, as nginx's lingering close does, so each of these
clients gets the 413 problem+json.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests

from tests.reliability.conftest import API_KEY, LiveServer

PROBLEM = "application/problem+json"
MB = 1024 * 1024
UPLOAD = 60 * MB
BOUNDARY = "reid-lingering-test"


@pytest.fixture(scope="module")
def multipart_60mb() -> bytes:
    """A 60 MiB multipart body with one ``images`` part (zeros: the size is refused before any decode)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head + bytes(UPLOAD - len(head) - len(tail)) + tail


def _headers() -> dict[str, str]:
    return {"X-API-Key": API_KEY, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _urllib(url: str, body: bytes, tmp: Path) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, headers=_headers(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def _requests(url: str, body: bytes, tmp: Path) -> tuple[int, str, bytes]:
    response = requests.post(url, data=body, headers=_headers(), timeout=60)
    return response.status_code, response.headers["Content-Type"], response.content


def _httpx(url: str, body: bytes, tmp: Path) -> tuple[int, str, bytes]:
    response = httpx.post(url, content=body, headers=_headers(), timeout=60)
    return response.status_code, response.headers["Content-Type"], response.content


def _curl(url: str, body: bytes, tmp: Path, expect: bool = True) -> tuple[int, str, bytes]:
    """curl as it comes (``Expect: 100-continue``), or with ``Expect:`` emptied so it sends at once."""
    path = tmp / "upload.bin"
    path.write_bytes(body)
    out = tmp / "answer.json"
    cmd = ["curl", "-sS", "-o", str(out), "-w", "%{http_code} %{content_type}", "-X", "POST"]
    for name, value in _headers().items():
        cmd += ["-H", f"{name}: {value}"]
    if not expect:
        cmd += ["-H", "Expect:"]
    cmd += ["--data-binary", f"@{path}", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    code, content_type = proc.stdout.split(" ", 1)
    return int(code), content_type, out.read_bytes()


CLIENTS: dict[str, Callable[[str, bytes, Path], tuple[int, str, bytes]]] = {
    "urllib": _urllib,
    "requests": _requests,
    "httpx": _httpx,
    "curl": _curl,
    "curl-no-expect": lambda url, body, tmp: _curl(url, body, tmp, expect=False),
}


@pytest.mark.row(1)
@pytest.mark.parametrize("client", list(CLIENTS))
def test_60mb_upload_gets_413_problem_json_in_every_client(
    live_server: LiveServer, multipart_60mb: bytes, client: str, tmp_path: Path
) -> None:
    status, content_type, body = CLIENTS[client](f"{live_server.base_url}/search", multipart_60mb, tmp_path)
    assert status == 413, body[:300]
    assert content_type.split(";")[0].strip() == PROBLEM
    problem = json.loads(body)
    assert problem["status"] == 413 and "REID_MAX_UPLOAD_MB" in problem["detail"]
    with live_server.client() as c:  # the drained connection left the server healthy
        assert c.get("/health").status_code == 200
