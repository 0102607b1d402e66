"""The tracking-pipeline load of ``reid bench http --pipeline``: frame + boxes vs the same crops one by one.

A camera pipeline holds a 1280×720 frame with N person boxes. Two ways to get them embedded (or searched):

* ``frame_boxes``: one request per frame, the JPEG frame plus ``boxes`` (decoded once by the service, every
  box cropped, all of them batched together);
* ``separate_crops``: what a pipeline does without it: N requests per frame, each with one JPEG crop (the
  crops are encoded once, before the clock starts, so the client's own crop + encode time is not counted —
  the ratio is conservative).

Both run against the same live server (batching on) at the same concurrency; the report gives boxes/s of
each and their ratio (target >= 2).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

FRAME_SIZE = (1280, 720)


def pipeline_frame(boxes: int, seed: int = 0) -> tuple[bytes, list[list[int]], list[bytes]]:
    """A 1280×720 JPEG street frame with ``boxes`` pedestrians: (frame, boxes, the boxes' JPEG crops).

    The background is smooth with mild sensor noise, so the frame compresses like a camera frame (~170 kB at
    quality 90, not the ~530 kB of white noise); each pedestrian is a textured, clothed figure.
    """
    rng = np.random.default_rng(seed)
    width, height = FRAME_SIZE
    coarse = Image.fromarray(rng.uniform(40, 140, (45, 80, 3)).astype(np.uint8))
    arr = np.asarray(coarse.resize(FRAME_SIZE, Image.Resampling.BICUBIC), dtype=np.float64).copy()
    placed: list[list[int]] = []
    for i in range(boxes):
        w, h = int(rng.integers(60, 110)), int(rng.integers(160, 300))
        x = 20 + i * (width - 40) // boxes
        y = int(rng.integers(0, height - h))
        top, legs = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        arr[y : y + h // 2, x : x + w] = top + rng.normal(0, 12, (h // 2, w, 3))
        arr[y + h // 2 : y + h, x : x + w] = legs + rng.normal(0, 12, (h - h // 2, w, 3))
        placed.append([x, y, x + w, y + h])
    arr += rng.normal(0, 3, arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    frame = _jpeg(img)
    return frame, placed, [_jpeg(img.crop(tuple(b))) for b in placed]  # type: ignore[arg-type]


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _request(host: str, port: int, path: str, parts: list[tuple[str, bytes, bool]]) -> bytes:
    boundary = "reidpipelineboundary"
    chunks = []
    for name, value, is_file in parts:
        filename = f'; filename="{name}.jpg"\r\nContent-Type: image/jpeg' if is_file else ""
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    body = b"".join(chunks)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _load(
    raw_connection: Any, host: str, port: int, requests: list[bytes], concurrency: int, seconds: float
) -> tuple[int, int, float]:
    """Each worker cycles through ``requests`` on its keep-alive connection; returns (sent, errors, s)."""
    sent = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal sent, errors
        conn = raw_connection(host, port, requests[0])
        i = offset
        try:
            while time.perf_counter() < deadline:
                conn.request = requests[i % len(requests)]  # one connection, the next request's bytes
                i += 1
                try:
                    status = await conn.send()
                except (OSError, EOFError, ValueError):
                    await conn.close()
                    status = 0
                sent += 1
                errors += status != 200
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return sent, errors, time.perf_counter() - start


def run_pipeline(
    base: str,
    raw_connection: Any,
    *,
    boxes: int,
    concurrency: int,
    seconds: float,
    path: str,
    rounds: int,
    server_cpu: Callable[[], float | None] | None = None,
) -> dict[str, Any]:
    """Both loads against the server at ``base``, alternating ``rounds`` times; the median round is kept.

    ``server_cpu()`` (the server's CPU seconds so far) adds ``server_cpu_ms_per_box``, which unlike boxes/s
    hardly moves with other jobs on the machine.
    """
    import httpx

    url = httpx.URL(base)
    host, port = str(url.host), int(url.port or 80)
    frame, placed, crops = pipeline_frame(boxes)
    frame_requests = [
        _request(host, port, path, [("boxes", json.dumps(placed).encode(), False), ("image", frame, True)])
    ]
    crop_requests = [_request(host, port, path, [("image", c, True)]) for c in crops]
    runs: dict[str, list[dict[str, Any]]] = {"frame_boxes": [], "separate_crops": []}
    for _ in range(rounds):
        for name, requests, per_request in (
            ("frame_boxes", frame_requests, boxes),
            ("separate_crops", crop_requests, 1),
        ):
            cpu_before = server_cpu() if server_cpu else None
            sent, errors, elapsed = asyncio.run(
                _load(raw_connection, host, port, requests, concurrency, seconds)
            )
            cpu_after = server_cpu() if server_cpu else None
            cpu_ms = None
            if cpu_before is not None and cpu_after is not None and sent:
                cpu_ms = round((cpu_after - cpu_before) * 1000.0 / (sent * per_request), 3)
            runs[name].append(
                {
                    "requests": sent,
                    "errors": errors,
                    "seconds": round(elapsed, 3),
                    "requests_per_s": round(sent / elapsed, 2),
                    "boxes_per_s": round(sent * per_request / elapsed, 2),
                    "server_cpu_ms_per_box": cpu_ms,
                }
            )
    report: dict[str, Any] = {
        "frame": list(FRAME_SIZE),
        "boxes_per_frame": boxes,
        "frame_bytes": len(frame),
        "crop_bytes_mean": round(float(np.mean([len(c) for c in crops])), 1),
        "concurrency": concurrency,
        "path": path,
    }
    for name, rows in runs.items():
        ordered = sorted(rows, key=lambda r: r["boxes_per_s"])
        report[name] = {
            **ordered[(len(ordered) - 1) // 2],
            "rounds_boxes_per_s": [r["boxes_per_s"] for r in rows],
        }
    ratio = report["frame_boxes"]["boxes_per_s"] / max(report["separate_crops"]["boxes_per_s"], 1e-9)
    report["frame_boxes_over_separate_crops (target >= 2)"] = round(ratio, 3)
    return report


def run_bench(args: Any, resolve_model: Any, fill_gallery: Any, http_batching: Any) -> dict[str, Any]:
    """``reid bench http --pipeline``: one server (batching on) over a filled gallery, both loads."""
    import argparse
    import os
    import tempfile
    from pathlib import Path

    from benchmarks._common import load_average, machine_info
    from service.inference.sessions import ModelRuntime

    report: dict[str, Any] = {"benchmark": "http-pipeline", **machine_info()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models_dir, model, source = resolve_model(args, tmp)
        runtime = ModelRuntime.load(models_dir / model, device=args.device, intra_op_threads=args.threads)
        fill_gallery(runtime, tmp / "data", args.gallery_size)
        report.update(
            {"model": runtime.manifest.model_id, "model_source": source, "gallery_size": args.gallery_size}
        )
        del runtime
        server_args = argparse.Namespace(
            models_dir=models_dir, model=model, device=args.device, max_wait_ms=args.max_wait_ms
        )
        os.environ.update(
            {"REID_INTRA_OP_THREADS": str(args.server_threads or args.threads), "REID_FAISS_THREADS": "1"}
        )
        proc, base = http_batching._serve(server_args, args.max_batch, tmp / "data")
        try:
            report["pipeline"] = run_pipeline(
                base,
                http_batching.RawConnection,
                boxes=args.pipeline_boxes,
                concurrency=args.pipeline_concurrency,
                seconds=args.max_seconds,
                path=args.pipeline_path,
                rounds=args.rounds,
                server_cpu=lambda: http_batching.process_cpu_s(proc.pid),
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report["load_average_end"] = load_average()
    return report
