"""The worker pools that keep blocking work off the event loop: image decoding, JSON parsing, SQLite, FAISS.

Model calls have their own executor (:mod:`service.inference.executor`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import faiss

T = TypeVar("T")
_POOLS: dict[str, ThreadPoolExecutor] = {}


def run_in_worker(call: Callable[[], T], pool: str = "decode") -> Awaitable[T]:
    """Run CPU-bound request work on a named pool (``decode``, ``index``) of one thread per core.

    Not Starlette's ``run_in_threadpool``: its 40 threads let 32 concurrent requests decode at once, so on
    a small CPU every image finishes late (time-sliced, fighting over the GIL) and reaches the batcher in
    bursts; a pool the size of the CPU decodes first come, first served, and an asyncio executor hop costs
    less than anyio's (capacity limiter, cancel scope). Searches get their own pool so that they never wait
    behind queued decodes.
    """
    executor = _POOLS.get(pool)
    if executor is None:
        executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix=f"reid-{pool}")
        _POOLS[pool] = executor
    return asyncio.get_running_loop().run_in_executor(executor, call)


async def run_index_call(call: Callable[[], T], faiss_threads: int) -> T:
    """Run a gallery call (FAISS search, add, remove; SQLite) on the ``index`` pool with ``faiss_threads``.

    OpenMP's thread count is a per-thread setting: ``faiss.omp_set_num_threads`` at start-up only reaches the
    thread that made the call, and a thread-pool worker would search with one OpenMP thread per core (on
    shared cores, 16 ms instead of 0.5 ms for one 10 k × 512 query). So the worker sets it before each call.
    """

    def with_threads() -> T:
        if faiss_threads > 0:
            faiss.omp_set_num_threads(faiss_threads)
        return call()

    return await run_in_worker(with_threads, pool="index")
