"""The request hot path's thread use: faiss thread count in search workers, bounded pools, async deps."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from typing import Any

import faiss

from service.api import deps
from service.core.workers import run_in_worker, run_index_call


def test_index_calls_run_with_the_configured_faiss_threads_in_the_worker() -> None:
    # omp_set_num_threads is per thread: set here, it must not be what the worker sees by accident
    faiss.omp_set_num_threads(1)

    async def main() -> tuple[int, str]:
        def probe() -> tuple[int, str]:
            return faiss.omp_get_max_threads(), threading.current_thread().name

        return await run_index_call(probe, faiss_threads=3)

    threads, name = asyncio.run(main())
    assert threads == 3
    assert name.startswith("reid-index")


def test_decode_and_index_work_use_separate_bounded_pools() -> None:
    async def main() -> set[str]:
        calls: list[Any] = [run_in_worker(lambda: threading.current_thread().name) for _ in range(64)]
        calls += [run_in_worker(lambda: threading.current_thread().name, pool="index") for _ in range(8)]
        return set(await asyncio.gather(*calls))

    names = asyncio.run(main())
    decode = {n for n in names if n.startswith("reid-decode")}
    index = {n for n in names if n.startswith("reid-index")}
    assert decode and index and decode | index == names
    assert len(decode) <= (os.cpu_count() or 1)


def test_shared_dependencies_are_async_so_they_need_no_thread_hop() -> None:
    for dependency in (deps.get_service, deps.get_app_settings, deps.verify_api_key, deps.require_ready):
        assert inspect.iscoroutinefunction(dependency), dependency.__name__
