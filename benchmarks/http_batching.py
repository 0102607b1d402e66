"""HTTP throughput of ``POST /embeddings`` at concurrency 1, 8 and 32, with micro-batching on and off.

Starts a live ``reid serve`` (uvicorn) on 127.0.0.1 for each batching setting, fires a bounded number of
requests per concurrency level (and stops early at a time bound), and prints one JSON object: requests/s,
latency percentiles and the mean batch size read from ``/metrics``.

    python benchmarks/http_batching.py --models-dir models --model demo-osnet --requests 256
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _image(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(rng.normal(128, 40, size=(256, 128, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``; None elsewhere).

    Requests per CPU-second of the server is the figure a shared, loaded machine cannot distort much: the
    throughput of a level moves with the other jobs, the server's CPU time per request far less.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _batch_stats(text: str) -> tuple[float, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "reid_batch_size":
            values = {s.name: s.value for s in family.samples}
            return values.get("reid_batch_size_sum", 0.0), values.get("reid_batch_size_count", 0.0)
    return 0.0, 0.0


def multipart_body(
    fields: tuple[str, ...], image: bytes, data: dict[str, str] | None, boundary: str = "reidbenchboundary"
) -> tuple[bytes, str]:
    """One ``multipart/form-data`` body with ``image`` under each file field; returns (body, content type)."""
    parts = []
    for name, value in (data or {}).items():
        disposition = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    for name in fields:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client for one pre-encoded request (like ``wrk``: no per-request
    Python beyond writing the bytes and reading one ``Content-Length`` response), so the load generator
    takes as little as possible of the CPU it shares with the server."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> int:
        """Send the request once and read the whole response; returns the status code."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked responses are not supported by the raw client")
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        """Close the connection (the next :meth:`send` reconnects)."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _level(
    base: str,
    image: bytes,
    concurrency: int,
    requests: int,
    max_seconds: float,
    *,
    path: str = "/embeddings",
    fields: tuple[str, ...] = ("images",),
    data: dict[str, str] | None = None,
    client: str = "raw",
    server_pid: int | None = None,
) -> dict[str, Any]:
    """POST ``image`` (under each of ``fields``) to ``path`` from ``concurrency`` workers.

    Args:
        client: ``raw`` (:class:`RawConnection`, a pre-encoded request per keep-alive connection) or ``httpx``
            (an ``httpx.AsyncClient`` that encodes every request, several times the client CPU per request).
        server_pid: The server process; its CPU time per request is ``server_cpu_ms_per_request``.
    """
    if client not in ("raw", "httpx"):
        raise ValueError(f"client must be raw or httpx, got {client!r}")
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + max_seconds
    url = httpx.URL(base)
    body, content_type = multipart_body(fields, image, data)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as http:
        before = _batch_stats((await http.get("/metrics")).text)

        async def worker() -> None:
            nonlocal sent, errors
            conn = RawConnection(str(url.host), int(url.port or 80), request)
            try:
                while sent < requests and time.perf_counter() < deadline:
                    sent += 1
                    t0 = time.perf_counter()
                    if client == "raw":
                        try:
                            async with asyncio.timeout(60.0):
                                status = await conn.send()
                        except (OSError, EOFError, TimeoutError, ValueError):  # counted as an error
                            await conn.close()
                            status = 0
                    else:
                        files = [(f, (f"{f}.jpg", image, "image/jpeg")) for f in fields]
                        status = (await http.post(path, files=files, data=data)).status_code
                    latencies.append(time.perf_counter() - t0)
                    errors += status != 200
            finally:
                await conn.close()

        cpu_before = process_cpu_s(server_pid) if server_pid else None
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        cpu_after = process_cpu_s(server_pid) if server_pid else None
        after = _batch_stats((await http.get("/metrics")).text)
    images, batches = after[0] - before[0], after[1] - before[1]
    lat_ms = np.asarray(latencies) * 1000.0
    return {
        "concurrency": concurrency,
        "client": client,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 2) if elapsed > 0 else None,
        "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 2) if len(lat_ms) else None,
        "latency_ms_p95": round(float(np.percentile(lat_ms, 95)), 2) if len(lat_ms) else None,
        "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 2) if len(lat_ms) else None,
        "mean_batch_size": round(images / batches, 2) if batches else None,
        "server_cpu_ms_per_request": round((cpu_after - cpu_before) * 1000.0 / len(latencies), 3)
        if cpu_before is not None and cpu_after is not None and latencies
        else None,
    }


def _serve(
    args: argparse.Namespace, max_batch: int, data_dir: Path, workers: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(
        os.environ,
        REID_MAX_BATCH=str(max_batch),
        REID_MAX_WAIT_MS=str(args.max_wait_ms),
        REID_DEVICE=args.device,
        REID_API_KEYS="",
        REID_QUEUE_SIZE="4096",
    )
    cmd = [
        sys.executable,
        "-m",
        "service",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--models-dir",
        str(args.models_dir),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]
    if args.model:
        cmd += ["--model", args.model]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, base)
    return proc, base


def wait_ready(proc: subprocess.Popen[bytes], base: str, timeout_s: float = 60.0) -> None:
    """Wait until the server at ``base`` answers ``/ready`` with 200 (terminated if it never does).

    Raises:
        RuntimeError: The server exited, reported a start-up failure, or was not ready in time.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            r = httpx.get(base + "/ready", timeout=2.0)
            if r.status_code == 200:
                return
            if "not ready" in r.text and "starting" not in r.text:
                raise RuntimeError(f"the server is not ready: {r.json().get('detail')}")
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the server did not become ready within {timeout_s:g} s")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default=None, help="model folder name (default: the service's choice)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=256, help="requests per level (1…10000)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time bound per level")
    parser.add_argument("--max-batch", type=int, default=32, help="REID_MAX_BATCH when batching is on")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--client", default="raw", choices=("raw", "httpx"), help="load generator")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 10000:
        raise SystemExit(f"--requests must be in 1..10000, got {args.requests}")
    if any(not 1 <= c <= 256 for c in args.concurrency):
        raise SystemExit(f"--concurrency values must be in 1..256, got {args.concurrency}")
    image = _image()
    report: dict[str, Any] = {"benchmark": "http_batching", "endpoint": "/embeddings", "runs": []}
    for label, max_batch in (("on", args.max_batch), ("off", 1)):
        with tempfile.TemporaryDirectory() as data_dir:
            proc, base = _serve(args, max_batch, Path(data_dir))
            try:
                ready = httpx.get(base + "/ready").json()
                report.setdefault("model", ready.get("model"))
                report.setdefault("provider", ready.get("provider"))
                for concurrency in args.concurrency:
                    result = asyncio.run(
                        _level(
                            base,
                            image,
                            concurrency,
                            args.requests,
                            args.max_seconds,
                            client=args.client,
                            server_pid=proc.pid,
                        )
                    )
                    report["runs"].append({"batching": label, "max_batch": max_batch, **result})
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
