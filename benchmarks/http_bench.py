"""HTTP service throughput vs the bare model + index loop, in one run, on 127.0.0.1.

1. A model folder: ``--model`` under ``--models-dir`` (default: ``demo-siamese``, else ``demo-osnet``, when
   present), or with ``--backbone NAME`` a random-weights export of that backbone (an ``embedding`` model at
   the backbone's real cost), or else the tiny test models of ``tests/service/conftest.py``.
2. A gallery of ``--gallery-size`` random embeddings written straight into a fresh data folder (no HTTP).
3. The ceiling: the same work in-process, one request after another — decode + preprocess the JPEG, embed
   (batch 1, or 2 for verify), search the index / score the pair — with the service's own classes.
4. ``reid serve`` with batching on (``REID_MAX_BATCH``) and off (1), both running: ``/search``, ``/verify``
   and ``/embeddings`` at each concurrency, a bounded number of requests and seconds per level
   (:func:`benchmarks.http_batching._level`), the two servers' levels alternating ``--rounds`` times (the
   median round is reported) so that a shared machine's load drifts onto both alike.

Ratios reported: ``/search`` requests/s at concurrency 8 over the bare search loop, and ``/embeddings``
requests/s with batching on over off at concurrency 32.

    python benchmarks/http_bench.py --requests 200 --max-seconds 10
    python benchmarks/http_bench.py --backbone osnet_x0_25 --gallery-size 10000
    python benchmarks/http_bench.py --pipeline --max-seconds 10 --rounds 3   # frame + boxes vs crops
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import (  # noqa: E402
    int_list,
    load_average,
    machine_info,
    percentiles_ms,
    script_main,
    str_list,
)
from benchmarks._http_setup import fill_gallery, load_script, open_gallery, resolve_model  # noqa: E402

DESCRIPTION = "Service /search, /verify, /embeddings throughput vs the bare model + index loop."
ENDPOINTS: dict[str, dict[str, Any]] = {
    "search": {"path": "/search", "fields": ("images",), "data": {"top_k": "10"}},
    "verify": {"path": "/verify", "fields": ("image_a", "image_b"), "data": None},
    "embeddings": {"path": "/embeddings", "fields": ("images",), "data": None},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``http`` arguments."""
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--model", default=None, help="model folder (default: a demo model, else tiny)")
    parser.add_argument("--backbone", default=None, help="serve a random-weights export of this backbone")
    parser.add_argument("--height", type=int, default=256, help="input height of a --backbone export")
    parser.add_argument("--width", type=int, default=128, help="input width of a --backbone export")
    parser.add_argument("--endpoints", type=str_list, default=list(ENDPOINTS))
    parser.add_argument("--concurrency", type=int_list, default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=200, help="requests per level (1…10000)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="time bound per level")
    parser.add_argument("--bare-requests", type=int, default=200, help="iterations of the bare loop")
    parser.add_argument("--gallery-size", type=int, default=10_000)
    parser.add_argument("--max-batch", type=int, default=32, help="REID_MAX_BATCH when batching is on")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (bare loop)")
    parser.add_argument(
        "--server-threads",
        type=int,
        default=None,
        help="REID_INTRA_OP_THREADS of the server (default: --threads); on a CPU it shares the cores with the"
        " event loop, the decoders and the load generator, so 1 is often faster",
    )
    parser.add_argument("--device", default="cpu", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--batching", type=str_list, default=["on", "off"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times each level runs, alternating batching on / off; the median round is reported (1…9)",
    )
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="run only the tracking-pipeline load (benchmarks/http_pipeline.py): 1280×720 frames with "
        "--pipeline-boxes boxes as frame + boxes vs the same crops as separate requests, in boxes/s",
    )
    parser.add_argument("--pipeline-boxes", type=int, default=6, help="person boxes per frame (1…64)")
    parser.add_argument("--pipeline-concurrency", type=int, default=8, help="pipeline load concurrency")
    parser.add_argument("--pipeline-path", default="/embeddings", choices=("/embeddings", "/search"))
    parser.add_argument(
        "--client",
        default="raw",
        choices=("raw", "httpx"),
        help="load generator: raw keep-alive HTTP/1.1 with a pre-encoded request (default) or httpx",
    )


def _validate(args: argparse.Namespace) -> None:
    if not 1 <= args.requests <= 10000 or not 1 <= args.bare_requests <= 10000:
        raise ValueError(f"--requests and --bare-requests must be in 1..10000, got {args.requests}")
    if any(not 1 <= c <= 256 for c in args.concurrency):
        raise ValueError(f"--concurrency values must be in 1..256, got {args.concurrency}")
    bad = set(args.endpoints) - set(ENDPOINTS)
    if bad:
        raise ValueError(f"unknown endpoint(s) {sorted(bad)}; valid: {', '.join(ENDPOINTS)}")
    if set(args.batching) - {"on", "off"}:
        raise ValueError(f"--batching takes on and/or off, got {args.batching}")
    if not 1 <= args.rounds <= 9:
        raise ValueError(f"--rounds must be in 1..9, got {args.rounds}")
    if args.gallery_size < 1 or args.max_seconds <= 0:
        raise ValueError("--gallery-size must be >= 1 and --max-seconds > 0")


def bare_loop(runtime: Any, gallery: Any, image: bytes, endpoint: str, n: int) -> dict[str, Any]:
    """The in-process ceiling: one request's work, ``n`` times in a row."""
    from service.contract.preprocess import preprocess_bytes
    from service.contract.scoring import pair_scores

    spec = runtime.spec
    metric = runtime.manifest.default_metric

    def once() -> None:
        if endpoint == "verify":
            emb = runtime.embed(np.stack([preprocess_bytes(image, spec), preprocess_bytes(image, spec)]))
            if metric == "softmax":
                runtime.same_probability(emb[:1], emb[1:])
            else:
                pair_scores(metric, emb[:1], emb[1:], runtime.head_weights)
            return
        emb = runtime.embed(preprocess_bytes(image, spec)[None])
        if endpoint == "search":
            gallery.search(metric, emb, 10)

    once()
    load = load_average()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return {
        "endpoint": endpoint,
        "requests": n,
        "requests_per_s": round(n / sum(times), 2),
        **percentiles_ms(times),
        "load_average_1m": load,
    }


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Bare loop, then the live server with batching on / off; return the report (with ``--pipeline``: the
    tracking-pipeline load only)."""
    _validate(args)
    if args.pipeline:
        if not 1 <= args.pipeline_boxes <= 64 or not 1 <= args.pipeline_concurrency <= 256:
            raise ValueError("--pipeline-boxes must be in 1..64 and --pipeline-concurrency in 1..256")
        pipeline = load_script("_http_pipeline", REPO_ROOT / "benchmarks" / "http_pipeline.py")
        batching = load_script("_http_batching", REPO_ROOT / "benchmarks" / "http_batching.py")
        return dict(pipeline.run_bench(args, resolve_model, fill_gallery, batching))
    import faiss
    import httpx

    from service.inference.sessions import ModelRuntime

    http_batching = load_script("_http_batching", REPO_ROOT / "benchmarks" / "http_batching.py")
    faiss.omp_set_num_threads(1)  # the service default (REID_FAISS_THREADS=1)
    report: dict[str, Any] = {"benchmark": "http", **machine_info(), "bare": [], "http": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models_dir, model, source = resolve_model(args, tmp)
        runtime = ModelRuntime.load(models_dir / model, device=args.device, intra_op_threads=args.threads)
        data_dir = tmp / "data"
        fill_gallery(runtime, data_dir, args.gallery_size)
        report.update(
            {
                "model": runtime.manifest.model_id,
                "model_source": source,
                "provider": runtime.provider,
                "input": [runtime.spec.height, runtime.spec.width],
                "metric": runtime.manifest.default_metric,
                "gallery_size": args.gallery_size,
                "threads": args.threads,
                "server_threads": args.server_threads or args.threads,
                "client": args.client,
            }
        )
        image = http_batching._image()
        gallery = open_gallery(runtime, data_dir)
        for endpoint in args.endpoints:
            report["bare"].append(bare_loop(runtime, gallery, image, endpoint, args.bare_requests))
        gallery.store.close()
        del runtime
        server_args = argparse.Namespace(
            models_dir=models_dir, model=model, device=args.device, max_wait_ms=args.max_wait_ms
        )
        env = {
            "REID_INTRA_OP_THREADS": str(args.server_threads or args.threads),
            "REID_FAISS_THREADS": "1",
            "REID_INDEX_TYPE": "flat",
        }
        servers: dict[str, tuple[Any, str]] = {}
        try:
            for label in args.batching:  # both servers up at once: their levels alternate (see --rounds)
                max_batch = args.max_batch if label == "on" else 1
                own_data = tmp / f"data-{label}"  # one gallery copy per server (each snapshots on exit)
                shutil.copytree(data_dir, own_data)
                with _environ(env):
                    servers[label] = http_batching._serve(server_args, max_batch, own_data)
                report.setdefault("server_ready", httpx.get(servers[label][1] + "/ready").json())
            rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
            for endpoint in args.endpoints:
                spec = ENDPOINTS[endpoint]
                for concurrency in args.concurrency:
                    for _ in range(args.rounds):
                        for label, (proc, base) in servers.items():
                            result = asyncio.run(
                                http_batching._level(
                                    base,
                                    image,
                                    concurrency,
                                    args.requests,
                                    args.max_seconds,
                                    path=spec["path"],
                                    fields=spec["fields"],
                                    data=spec["data"],
                                    client=args.client,
                                    server_pid=proc.pid,
                                )
                            )
                            rows.setdefault((endpoint, label, concurrency), []).append(
                                {
                                    "endpoint": endpoint,
                                    "batching": label,
                                    "max_batch": args.max_batch if label == "on" else 1,
                                    "load_average_1m": load_average(),
                                    **result,
                                }
                            )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
        for label in args.batching:
            for endpoint in args.endpoints:
                for concurrency in args.concurrency:
                    report["http"].append(_median_row(rows[(endpoint, label, concurrency)]))
    report["targets"] = targets(report)
    report["load_average_end"] = load_average()
    return report


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median requests/s, with every round's requests/s alongside."""
    ordered = sorted(runs, key=lambda r: r["requests_per_s"] or 0.0)
    row = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        row["rounds_requests_per_s"] = [r["requests_per_s"] for r in runs]
    return row


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The two HTTP ratios of the issue, and batching's server CPU saving (None where a level was not run)."""

    def rps(endpoint: str, batching: str, concurrency: int) -> float | None:
        for r in report["http"]:
            if (r["endpoint"], r["batching"], r["concurrency"]) == (endpoint, batching, concurrency):
                return r["requests_per_s"]
        return None

    def cpu(endpoint: str, batching: str, concurrency: int) -> float | None:
        for r in report["http"]:
            if (r["endpoint"], r["batching"], r["concurrency"]) == (endpoint, batching, concurrency):
                return r.get("server_cpu_ms_per_request")
        return None

    bare = {r["endpoint"]: r["requests_per_s"] for r in report["bare"]}
    search8 = rps("search", "on", 8)
    on32, off32 = rps("embeddings", "on", 32), rps("embeddings", "off", 32)
    cpu_on32, cpu_off32 = cpu("embeddings", "on", 32), cpu("embeddings", "off", 32)
    return {
        "search_c8_over_bare (target >= 0.8)": round(search8 / bare["search"], 3)
        if search8 and bare.get("search")
        else None,
        "embeddings_c32_batching_on_over_off (target >= 1.5)": round(on32 / off32, 3)
        if on32 and off32
        else None,
        "embeddings_c32_server_cpu_per_request_off_over_on": round(cpu_off32 / cpu_on32, 3)
        if cpu_on32 and cpu_off32
        else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print JSON."""
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
