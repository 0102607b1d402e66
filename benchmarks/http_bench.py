"""HTTP service throughput vs the bare model + index loop, in one run, on 127.0.0.1.

1. A model folder: ``--model`` under ``--models-dir`` (default: ``demo-siamese``, else ``demo-osnet``, when
   present), or with ``--backbone NAME`` a random-weights export of that backbone (an ``embedding`` model at
   the backbone's real cost), or else the tiny test models of ``tests/service/conftest.py``.
2. A gallery of ``--gallery-size`` random embeddings written straight into a fresh data folder (no HTTP).
3. The ceiling: the same work in-process, one request after another — decode + preprocess the JPEG, embed
   (batch 1, or 2 for verify), search the index / score the pair — with the service's own classes; one
   round of it before every round of the servers (the median round is reported).
4. ``reid serve`` with batching on (``REID_MAX_BATCH``) and off (1), both running: ``/search``, ``/verify``
   and ``/embeddings`` at each concurrency, a bounded number of requests and seconds per level
   (:func:`benchmarks.http_batching._level`), the two servers' levels alternating ``--rounds`` times (the
   median round is reported) so that a shared machine's load drifts onto both alike.

Every level reports the server process's CPU ms per request (``/proc``) next to the bare loop's (this
process's CPU time, onnxruntime's threads included). Ratios reported (:mod:`benchmarks.http_targets`):
``/search`` server CPU and p50 at concurrency 1 against the bare loop, requests/s at concurrency 8 over the
bare loop and p99 / p50 there, and ``/embeddings`` server CPU per image with batching on vs off at
concurrency 32.

    python benchmarks/http_bench.py --requests 200 --max-seconds 10
    python benchmarks/http_bench.py --backbone osnet_x0_25 --gallery-size 10000
    python benchmarks/http_bench.py --pipeline --max-seconds 10 --rounds 3   # frame + boxes vs crops
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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

from benchmarks import http_models  # noqa: E402
from benchmarks._common import (  # noqa: E402
    int_list,
    load_average,
    machine_info,
    percentiles_ms,
    script_main,
    str_list,
)
from benchmarks.http_targets import median_row, targets  # noqa: E402

DESCRIPTION = "Service /search, /verify, /embeddings throughput vs the bare model + index loop."
ENDPOINTS: dict[str, dict[str, Any]] = {
    "search": {"path": "/search", "fields": ("images",), "data": {"top_k": "10"}},
    "verify": {"path": "/verify", "fields": ("image_a", "image_b"), "data": None},
    "embeddings": {"path": "/embeddings", "fields": ("images",), "data": None},
}
DEMO_MODELS = ("demo-siamese", "demo-osnet")


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


def _load_script(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def resolve_model(args: argparse.Namespace, tmp: Path) -> tuple[Path, str, str]:
    """(models dir, model folder name, where it came from)."""
    if args.backbone:
        return (
            tmp / "models",
            http_models.export_backbone_model(tmp / "models", args.backbone, args.height, args.width),
            "random-weights export",
        )
    if args.model:
        if not (args.models_dir / args.model / "manifest.json").is_file():
            raise FileNotFoundError(f"no model folder {args.models_dir / args.model} with a manifest.json")
        return args.models_dir, args.model, "models dir"
    for name in DEMO_MODELS:
        if (args.models_dir / name / "manifest.json").is_file():
            return args.models_dir, name, "demo model"
    conftest = _load_script("_service_conftest", REPO_ROOT / "tests" / "service" / "conftest.py")
    return (
        conftest.build_tiny_models(tmp / "tiny"),
        "tiny-siamese",
        "tiny test model (tests/service/conftest.py)",
    )


def open_gallery(runtime: Any, data_dir: Path) -> Any:
    from service.gallery.gallery import Gallery
    from service.gallery.index import IndexConfig
    from service.state import indexed_metrics

    gallery = Gallery(
        data_dir,
        model_id=runtime.manifest.model_id,
        dim=runtime.manifest.embedding_dim,
        metrics=indexed_metrics(runtime),
        head=runtime.head_weights,
        config=IndexConfig(),
        encoding_dim=runtime.pairwise.encoding_dim if runtime.pairwise is not None else None,
    )
    gallery.open()
    return gallery


def fill_gallery(runtime: Any, data_dir: Path, size: int) -> None:
    """Write ``size`` random embeddings (10 per person) into the gallery, snapshots included."""
    from service.gallery.store import NewEntry

    gallery = open_gallery(runtime, data_dir)
    rng = np.random.default_rng(0)
    dim = runtime.manifest.embedding_dim
    for start in range(0, size, 5000):
        n = min(5000, size - start)
        entries = [
            NewEntry(person_id=f"p{(start + i) // 10}", camera_id=f"c{i % 6}", metadata={}, image=None)
            for i in range(n)
        ]
        gallery.add(entries, rng.standard_normal((n, dim)).astype(np.float32))
    gallery.close()


def bare_loop(runtime: Any, gallery: Any, image: bytes, endpoint: str, n: int) -> dict[str, Any]:
    """The in-process ceiling: one request's work, ``n`` times in a row."""
    from service.contract.preprocess import preprocess_bytes
    from service.contract.scoring import pair_scores
    from service.gallery.protocol import VectorQuery

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
            gallery.search(VectorQuery(metric, emb, 10))

    once()
    load = load_average()
    times = []
    cpu0 = time.process_time()  # every thread of this process: onnxruntime's intra-op threads included
    for _ in range(n):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    cpu_ms = (time.process_time() - cpu0) * 1000.0 / n
    return {
        "endpoint": endpoint,
        "requests": n,
        "requests_per_s": round(n / sum(times), 2),
        "cpu_ms_per_request": round(cpu_ms, 3),
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
        pipeline = _load_script("_http_pipeline", REPO_ROOT / "benchmarks" / "http_pipeline.py")
        batching = _load_script("_http_batching", REPO_ROOT / "benchmarks" / "http_batching.py")
        return dict(pipeline.run_bench(args, resolve_model, fill_gallery, batching))
    import faiss
    import httpx

    from service.inference.sessions import ModelRuntime

    http_batching = _load_script("_http_batching", REPO_ROOT / "benchmarks" / "http_batching.py")
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
        shutil.copytree(data_dir, tmp / "data-bare")  # the bare loop's own copy, open while the servers run
        gallery = open_gallery(runtime, tmp / "data-bare")
        bare_rounds: dict[str, list[dict[str, Any]]] = {}  # a bare round before every round of the servers
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
                        bare = bare_loop(runtime, gallery, image, endpoint, args.bare_requests)
                        bare_rounds.setdefault(endpoint, []).append(bare)
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
            gallery.store.close()
        for runs in bare_rounds.values():
            bare = median_row(runs)
            bare["rounds_cpu_ms_per_request"] = [r["cpu_ms_per_request"] for r in runs]
            report["bare"].append(bare)
        bare_cpu = {b["endpoint"]: b["cpu_ms_per_request"] for b in report["bare"]}
        for row in rows.values():
            for r in row:
                r["bare_cpu_ms_per_request"] = bare_cpu[r["endpoint"]]
        for label in args.batching:
            for endpoint in args.endpoints:
                for concurrency in args.concurrency:
                    report["http"].append(median_row(rows[(endpoint, label, concurrency)]))
    report["targets"] = targets(report)
    report["load_average_end"] = load_average()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print JSON."""
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
