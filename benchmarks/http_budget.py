"""Where one ``/search`` request's server CPU goes, piece by piece, in process (no sockets).

Each piece is timed alone, ``--repeats`` times after a warm-up, as this process's CPU time per call
(``time.process_time``: onnxruntime's threads included) and wall time: the bare work (decode + preprocess,
the model at batch 1, the FAISS search of a ``--gallery-size`` flat index), then what the service adds around
it (the multipart parse, the request validation, building and serializing the answer — FastAPI's own
``serialize_response``, the answer's rows built as before and now —, one thread hand-off) and the
whole ASGI app (every middleware, dependency and hop, no HTTP server). What a live server spends on top of
the app (uvicorn + httptools, the socket, waking sleeping threads) is the live ``server_cpu_ms_per_request``
of ``reid bench http`` minus ``asgi_app``.

    python benchmarks/http_budget.py --model demo-osnet --gallery-size 10000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import load_average, machine_info, script_main  # noqa: E402
from benchmarks.http_batching import _image, multipart_body  # noqa: E402
from benchmarks.http_bench import fill_gallery, open_gallery  # noqa: E402
from service.gallery.protocol import VectorQuery  # noqa: E402

DESCRIPTION = "One /search request's server CPU, piece by piece, in process."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``http_budget`` arguments."""
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--model", default="demo-osnet")
    parser.add_argument("--gallery-size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=300, help="calls per piece (10…100000)")


async def _timed_async(call: Callable[[], Awaitable[Any]], repeats: int) -> dict[str, float]:
    await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        await call()
    return {
        "cpu_ms": round((time.process_time() - cpu) * 1000.0 / repeats, 4),
        "wall_ms": round((time.perf_counter() - wall) * 1000.0 / repeats, 4),
    }


def _app_request(app: Any, path: str, body: bytes, content_type: str) -> Callable[[], Awaitable[int]]:
    """One request through the ASGI app, answered in memory; returns the status."""
    headers = [(b"host", b"bench"), (b"content-type", content_type.encode())]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST"}
    scope |= {"scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": ""}
    scope |= {"headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}

    async def call() -> int:
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # the client never disconnects
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(scope), receive, send)
        return status

    return call


async def _pieces(args: argparse.Namespace, data_dir: Path) -> dict[str, dict[str, float]]:
    from fastapi.routing import APIRoute, serialize_response
    from starlette.requests import Request

    from service.api import schemas, search
    from service.api.inputs import _form_data
    from service.app import create_app
    from service.config import Settings
    from service.contract.preprocess import preprocess_bytes
    from service.core.results import Hit, Ranking, Scoring, Timings
    from service.inference.sessions import ModelRuntime

    image, n = _image(), args.repeats
    body, content_type = multipart_body(("images",), image, {"top_k": "10"})
    runtime = ModelRuntime.load(args.models_dir / args.model, device="cpu", intra_op_threads=args.threads)
    gallery = open_gallery(runtime, data_dir)
    metric, spec = runtime.manifest.default_metric, runtime.spec
    batch = preprocess_bytes(image, spec)[None]
    vector = runtime.embed(batch)
    out: dict[str, dict[str, float]] = {}

    async def sync(fn: Callable[[], Any]) -> Any:
        return fn()

    out["decode_preprocess"] = await _timed_async(lambda: sync(lambda: preprocess_bytes(image, spec)), n)
    out["model_batch_1"] = await _timed_async(lambda: sync(lambda: runtime.embed(batch)), n)
    out["faiss_search_top10"] = await _timed_async(
        lambda: sync(lambda: gallery.search(VectorQuery(metric, vector, 10))), n
    )
    gallery.store.close()

    async def parse() -> dict[str, Any]:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
        return await _form_data(Request(scope, receive), ("images", "person_ids"), 1024)

    form = await parse()
    out["multipart_parse"] = await _timed_async(parse, n)
    out["request_validation"] = await _timed_async(
        lambda: sync(lambda: schemas.SearchRequest.model_validate(form)), n
    )
    hits = [[Hit(i, f"p{i}", "c0", 0.9 - i / 100, True) for i in range(10)]]
    ranking = Ranking(hits, Scoring(metric, 0.5, True), args.gallery_size, Timings(1.0, 1.0, 1.0))

    def answer() -> schemas.SearchResponse:
        return schemas.SearchResponse(
            results=schemas.query_results(ranking), gallery_size=ranking.gallery_size, metric=metric,
            threshold=0.5, model="m@1", timings=schemas.timings(ranking.timings, time.perf_counter()),
        )  # fmt: skip

    app = create_app(Settings(models_dir=args.models_dir, model=args.model, data_dir=data_dir, api_keys=[]))
    route = next(r for r in search.router.routes if isinstance(r, APIRoute) and r.path == "/search")
    out["response_build"] = await _timed_async(lambda: sync(answer), n)
    model = answer()
    out["response_serialize_fastapi"] = await _timed_async(
        lambda: serialize_response(field=route.response_field, response_content=model, dump_json=True), n
    )

    def rows_via_asdict() -> list[Any]:  # how query_results built its rows before (a deep copy per hit)
        return [[schemas.SearchMatch(**dataclasses.asdict(hit)) for hit in row] for row in ranking.results]

    out["response_rows_asdict_before"] = await _timed_async(lambda: sync(rows_via_asdict), n)
    out["response_rows_now"] = await _timed_async(lambda: sync(lambda: schemas.query_results(ranking)), n)
    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    out["thread_hand_off"] = await _timed_async(lambda: loop.run_in_executor(pool, int), n)
    pool.shutdown()
    async with app.router.lifespan_context(app):
        request = _app_request(app, "/search", body, content_type)
        if await request() != 200:
            raise RuntimeError("the in-process /search request failed")
        out["asgi_app"] = await _timed_async(request, n)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every piece; return the report."""
    if not 10 <= args.repeats <= 100_000:
        raise ValueError(f"--repeats must be in 10..100000, got {args.repeats}")
    import faiss
    import uvloop

    from service.inference.sessions import ModelRuntime

    faiss.omp_set_num_threads(1)  # the service default (REID_FAISS_THREADS=1)
    os.environ.setdefault("REID_FAISS_THREADS", "1")
    os.environ.setdefault("REID_INTRA_OP_THREADS", str(args.threads))
    report: dict[str, Any] = {"benchmark": "http_budget", **machine_info(), "model": args.model}
    report |= {"gallery_size": args.gallery_size, "threads": args.threads, "load_average_1m": load_average()}
    with tempfile.TemporaryDirectory() as tmp:
        runtime = ModelRuntime.load(args.models_dir / args.model, device="cpu", intra_op_threads=1)
        fill_gallery(runtime, Path(tmp), args.gallery_size)
        del runtime
        report["pieces"] = uvloop.run(_pieces(args, Path(tmp)))
    pieces = report["pieces"]
    report["bare_cpu_ms"] = round(
        sum(pieces[k]["cpu_ms"] for k in ("decode_preprocess", "model_batch_1", "faiss_search_top10")), 4
    )
    report["load_average_end"] = load_average()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print JSON."""
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
