"""The model executor (one concurrency budget for every model call) and the micro-batcher's shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest

from service.inference.batching import BatcherStoppedError, MicroBatcher
from service.inference.executor import InferenceStoppedError, ModelExecutor

WAIT_S = 10.0


def _blocking(started: threading.Event, release: threading.Event, value: int) -> Callable[[], int]:
    def call() -> int:
        started.set()
        assert release.wait(WAIT_S)
        return value

    return call


def test_calls_beyond_the_budget_wait_their_turn() -> None:
    executor = ModelExecutor(workers=2)
    active = 0
    most = 0
    guard = threading.Lock()
    started = [threading.Event() for _ in range(3)]
    release = threading.Event()

    def work(i: int) -> int:
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        started[i].set()
        release.wait(WAIT_S)
        with guard:
            active -= 1
        return i

    futures = [executor.submit(work, i) for i in range(3)]
    assert started[0].wait(WAIT_S) and started[1].wait(WAIT_S)
    assert executor.pending == 3
    # an unbounded executor would start the third call at once; give it the chance to show that
    assert not started[2].wait(0.2)
    release.set()
    assert [f.result(WAIT_S) for f in futures] == [0, 1, 2]
    assert most == 2 and executor.pending == 0
    executor.shutdown()


def test_results_and_errors_reach_coroutines_and_threads() -> None:
    executor = ModelExecutor()

    def fail() -> None:
        raise ValueError("bad encodings")

    async def main() -> int:
        with pytest.raises(ValueError, match="bad encodings"):
            await executor.run(fail)
        return await executor.run(lambda: 7)

    assert asyncio.run(main()) == 7
    assert executor.call(lambda: 8) == 8
    assert threading.current_thread().name not in executor.call(lambda: threading.current_thread().name)
    executor.shutdown()


def test_shutdown_fails_running_and_queued_calls_and_refuses_new_ones() -> None:
    executor = ModelExecutor(workers=1)
    started, release = threading.Event(), threading.Event()
    running = executor.submit(_blocking(started, release, 1))
    assert started.wait(WAIT_S)
    queued = executor.submit(lambda: 2)
    executor.shutdown()
    for future in (running, queued):
        with pytest.raises(InferenceStoppedError, match="shutting down"):
            future.result(WAIT_S)
    with pytest.raises(InferenceStoppedError):
        executor.submit(lambda: 3)
    release.set()
    assert executor.pending == 0


def test_micro_batcher_stop_answers_the_running_batch_and_the_queue() -> None:
    """One image on the model, two waiting behind it: stop() answers all three with BatcherStoppedError."""
    started, release = threading.Event(), threading.Event()

    def run(batch: np.ndarray) -> np.ndarray:
        started.set()
        release.wait(WAIT_S)
        return batch.reshape(len(batch), -1)

    async def main() -> list[BaseException | np.ndarray]:
        executor = ModelExecutor()
        batcher = MicroBatcher(run, max_batch=1, max_wait_ms=0, queue_size=8, executor=executor)
        batcher.start()
        image = np.zeros((3, 2, 2), np.float32)
        tasks = [asyncio.ensure_future(batcher.submit([image])) for _ in range(3)]
        assert await asyncio.to_thread(started.wait, WAIT_S)
        await batcher.stop()
        executor.shutdown()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT_S)
        with pytest.raises(BatcherStoppedError):
            await batcher.submit([image])
        release.set()
        return results

    results = asyncio.run(main())
    assert len(results) == 3
    assert all(isinstance(r, BatcherStoppedError) for r in results), results
    assert all(isinstance(r, InferenceStoppedError) for r in results)  # the API's 503 handler catches these
