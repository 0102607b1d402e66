"""HTTP throughput of ``POST /embeddings`` at concurrency 1, 8 and 32, with micro-batching on and off.

Starts a live ``reid serve`` (uvicorn) on 127.0.0.1 for each batching setting, fires a bounded number of
requests per concurrency level (and stops early at a time bound), and prints one JSON object: requests/s,
latency percentiles and the mean batch size read from ``/metrics``.

    python benchmarks/http_batching.py --models-dir models --model demo-osnet --requests 256
"""

from __future__ import annotations

import argparse
import asyncio
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


def _batch_stats(text: str) -> tuple[float, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "reid_batch_size":
            values = {s.name: s.value for s in family.samples}
            return values.get("reid_batch_size_sum", 0.0), values.get("reid_batch_size_count", 0.0)
    return 0.0, 0.0


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
) -> dict[str, Any]:
    """POST ``image`` (under each of ``fields``) to ``path`` from ``concurrency`` workers."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as client:
        before = _batch_stats((await client.get("/metrics")).text)

        async def worker() -> None:
            nonlocal sent, errors
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                files = [(f, (f"{f}.jpg", image, "image/jpeg")) for f in fields]
                r = await client.post(path, files=files, data=data)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        after = _batch_stats((await client.get("/metrics")).text)
    images, batches = after[0] - before[0], after[1] - before[1]
    lat_ms = np.asarray(latencies) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 2) if elapsed > 0 else None,
        "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 2) if len(lat_ms) else None,
        "latency_ms_p95": round(float(np.percentile(lat_ms, 95)), 2) if len(lat_ms) else None,
        "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 2) if len(lat_ms) else None,
        "mean_batch_size": round(images / batches, 2) if batches else None,
    }


def _serve(args: argparse.Namespace, max_batch: int, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
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
        "training",
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
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            r = httpx.get(base + "/ready", timeout=2.0)
            if r.status_code == 200:
                return proc, base
            if "not ready" in r.text and "starting" not in r.text:
                raise RuntimeError(f"the server is not ready: {r.json().get('detail')}")
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not become ready within 60 s")


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
                    result = asyncio.run(_level(base, image, concurrency, args.requests, args.max_seconds))
                    report["runs"].append({"batching": label, "max_batch": max_batch, **result})
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
