"""``/search`` throughput vs the number of ``reid serve --workers`` processes on the Milvus store, against the
embedded single process, in one run on 127.0.0.1.

1. A Milvus 2.3.5 standalone server (PyPI ``milvus``, as in the tests) and a gallery of ``--gallery-size``
   random embeddings of the model's dimension written once into each store (Milvus flushed and indexed).
2. Servers, all up at once: ``embedded`` (one process, ``REID_GALLERY=embedded``) and ``milvus`` with
   ``--workers N`` for each N of ``--workers``; each worker runs onnxruntime and FAISS with one thread.
3. ``/search`` (one JPEG, top 10) at ``--concurrency`` for ``--seconds`` per point, the servers' points
   alternating ``--rounds`` times (the median round is reported) so that load drift hits every server alike.

Per point: requests/s, latency p50 / p99, the CPU cores used by the server's processes (supervisor + workers)
and by the Milvus server over the point (CPU seconds / wall seconds, from ``/proc``), the 1-minute load
average. Scaling: requests/s with N workers / (N × requests/s with one), target ≥ 0.8 until something
saturates.

    python benchmarks/http_workers.py --model demo-osnet --gallery-size 10000 --workers 1,2 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import int_list, load_average, machine_info, script_main  # noqa: E402
from benchmarks.http_bench import _environ, _load_script, fill_gallery  # noqa: E402

DESCRIPTION = "/search throughput vs reid serve --workers N on the Milvus store, against the embedded store."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``http_workers`` arguments."""
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--model", default="demo-osnet")
    parser.add_argument("--gallery-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int_list, default=[1, 2], help="worker counts on the Milvus store")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one point")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is reported")
    parser.add_argument("--milvus-uri", default=None, help="an existing Milvus (default: start one)")


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (uvicorn's supervisor and its workers)."""
    http_batching = sys.modules["_http_batching"]
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        total += http_batching.process_cpu_s(p) or 0.0
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            stack += [int(c) for c in task.read_text().split()]
    return total


def fill_milvus(spec: Any, uri: str, prefix: str, size: int) -> None:
    """Write ``size`` random embeddings (10 per person) into the Milvus gallery and wait for its index."""
    from benchmarks.gallery_stores import settle_milvus
    from service.config import Settings
    from service.gallery.factory import create_gallery
    from service.gallery.protocol import NewEntry

    settings = Settings(
        gallery="milvus", milvus_uri=uri, milvus_collection_prefix=prefix, milvus_timeout_s=120
    )
    gallery = create_gallery(settings, spec)
    gallery.open()
    rng = np.random.default_rng(0)
    for start in range(0, size, 1000):
        n = min(1000, size - start)
        entries = [NewEntry(f"p{(start + i) // 10}", f"c{i % 6}", {}, None) for i in range(n)]
        gallery.add(entries, rng.standard_normal((n, spec.dim)).astype(np.float32))
    settle_milvus(gallery)
    gallery.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start Milvus and the servers, alternate the ``/search`` points, return the report."""
    if args.rounds < 1 or args.seconds <= 0 or not 1 <= args.concurrency <= 256:
        raise ValueError("--rounds must be >= 1, --seconds > 0, --concurrency in 1..256")
    from service.inference.sessions import ModelRuntime
    from service.state import gallery_spec

    http_batching = _load_script("_http_batching", REPO_ROOT / "benchmarks" / "http_batching.py")
    report: dict[str, Any] = {"benchmark": "http_workers", **machine_info(), "points": []}
    servers: dict[str, tuple[Any, str]] = {}
    milvus = None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        uri = args.milvus_uri
        try:
            if uri is None:
                from tests.service.milvus_server import free_port, start_milvus

                port = free_port()
                milvus = start_milvus(tmp / "milvus", port)
                uri = f"http://127.0.0.1:{port}"
            runtime = ModelRuntime.load(args.models_dir / args.model, device="cpu", intra_op_threads=1)
            fill_gallery(runtime, tmp / "data", args.gallery_size)
            fill_milvus(gallery_spec(runtime), uri, "benchworkers", args.gallery_size)
            report.update(model=runtime.manifest.model_id, dim=runtime.manifest.embedding_dim)
            del runtime
            serve_args = argparse.Namespace(
                models_dir=args.models_dir, model=args.model, device="cpu", max_wait_ms=5.0
            )
            common = {"REID_INTRA_OP_THREADS": "1", "REID_FAISS_THREADS": "1", "REID_INDEX_TYPE": "flat"}
            shared = {
                "REID_GALLERY": "milvus",
                "REID_MILVUS_URI": uri,
                "REID_MILVUS_COLLECTION_PREFIX": "benchworkers",
            }
            configs = [("embedded", 1, {"REID_GALLERY": "embedded"})]
            configs += [(f"milvus-{n}w", n, shared) for n in args.workers]
            for label, workers, env in configs:
                with _environ({**common, **env}):
                    data_dir = tmp / ("data" if label == "embedded" else label)
                    servers[label] = http_batching._serve(serve_args, 32, data_dir, workers=workers)
            image = http_batching._image()
            milvus_pid = milvus.server_proc.pid if milvus is not None else None  # type: ignore[attr-defined]
            rows: dict[str, list[dict[str, Any]]] = {}
            for _ in range(args.rounds):
                for label, (proc, base) in servers.items():
                    cpu0 = process_tree_cpu_s(proc.pid)
                    m0 = process_tree_cpu_s(milvus_pid) if milvus_pid else None
                    t0 = time.perf_counter()
                    level = asyncio.run(
                        http_batching._level(
                            base, image, args.concurrency, 10**9, args.seconds,
                            path="/search", fields=("images",), data={"top_k": "10"},
                        )
                    )  # fmt: skip
                    wall = time.perf_counter() - t0
                    rows.setdefault(label, []).append(
                        {
                            "server": label,
                            "load_average_1m": load_average(),
                            "server_cpu_cores": round((process_tree_cpu_s(proc.pid) - cpu0) / wall, 2),
                            "milvus_cpu_cores": round((process_tree_cpu_s(milvus_pid) - m0) / wall, 2)
                            if milvus_pid and m0 is not None
                            else None,
                            **{k: level[k] for k in ("requests", "errors", "seconds", "requests_per_s")},
                            "latency_ms_p50": level["latency_ms_p50"],
                            "latency_ms_p99": level["latency_ms_p99"],
                        }
                    )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=60)
            if milvus is not None:
                milvus.stop()  # type: ignore[attr-defined]
    for runs in rows.values():
        ordered = sorted(runs, key=lambda r: r["requests_per_s"] or 0.0)
        median = ordered[(len(ordered) - 1) // 2]
        report["points"].append({**median, "rounds_requests_per_s": [r["requests_per_s"] for r in runs]})
    report["scaling"] = _scaling(report["points"], args.workers)
    report["load_average_end"] = load_average()
    return report


def _scaling(points: list[dict[str, Any]], workers: list[int]) -> dict[str, Any]:
    rps = {p["server"]: p["requests_per_s"] for p in points}
    one = rps.get("milvus-1w")
    out: dict[str, Any] = {"milvus_1w_over_embedded": round(one / rps["embedded"], 3) if one else None}
    for n in workers:
        if n > 1 and one:
            out[f"milvus_{n}w_over_{n}x_1w"] = round(rps[f"milvus-{n}w"] / (n * one), 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its report as one JSON object."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` ends the run: still stop the servers
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
