"""The one executor that runs model work: embedding batches, the pairwise comparator, the softmax head.

onnxruntime spreads each call over its own intra-op threads, so running more model calls at once than the
executor has workers only makes them fight over the cores. Every model call of the service (the
micro-batcher's batches, ``/verify``'s head or comparator call, ``/search``'s comparator re-ranking) therefore
goes through one :class:`ModelExecutor` with one concurrency budget (``REID_INFERENCE_WORKERS``), first come,
first served. It is never the event loop's thread: coroutines ``await`` :meth:`ModelExecutor.run`, and code
already on a worker thread (a search on the index pool) blocks that worker, not the loop, in
:meth:`ModelExecutor.call`.

After :meth:`ModelExecutor.shutdown` every call still waiting, and every new one, fails with
:class:`InferenceStoppedError` (the API answers 503 problem+json), so no request is left hanging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class InferenceStoppedError(RuntimeError):
    """The model executor is not running (the service is starting or shutting down)."""


class ModelExecutor:
    """A bounded pool of model threads shared by every model call.

    Args:
        workers: Model calls that may run at the same time (the concurrency budget).
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reid-model")
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args, **kwargs)``; the future fails with :class:`InferenceStoppedError` on shutdown.

        Raises:
            InferenceStoppedError: The executor is shut down.
        """
        outer: concurrent.futures.Future[T] = concurrent.futures.Future()
        outer.set_running_or_notify_cancel()

        def work() -> None:
            if outer.done():  # failed by shutdown while it waited
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller, whatever it is
                _settle(outer, exc)
            else:
                _settle(outer, result, ok=True)

        with self._lock:
            if self._stopped:
                raise InferenceStoppedError("the model executor is shut down (the service is stopping)")
            self._pending.add(outer)
            self._pool.submit(work)
        outer.add_done_callback(self._forget)
        return outer

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on a model thread and await its result (from a coroutine).

        Raises:
            InferenceStoppedError: The executor is, or was while the call waited, shut down.
        """
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on a model thread and wait for it (from a worker thread, never the event loop).

        Raises:
            InferenceStoppedError: The executor is, or was while the call waited, shut down.
        """
        return self.submit(fn, *args, **kwargs).result()

    def blocking(self, fn: Callable[P, T]) -> Callable[P, T]:
        """``fn`` as a function that runs on a model thread and waits for it (for worker-thread code that
        takes a callable, e.g. the comparator of a pairwise search)."""

        def on_model_thread(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return on_model_thread

    @property
    def pending(self) -> int:
        """Model calls queued or running."""
        with self._lock:
            return len(self._pending)

    def shutdown(self) -> None:
        """Refuse new calls and fail every queued or running call with :class:`InferenceStoppedError`.

        A call already running on a model thread finishes there (a thread cannot be interrupted), but its
        result is dropped: its caller has had its answer.
        """
        with self._lock:
            self._stopped = True
            pending = list(self._pending)
        for future in pending:
            _settle(future, InferenceStoppedError("the service is shutting down"))
        self._pool.shutdown(wait=False, cancel_futures=True)


def _settle(future: concurrent.futures.Future[T], value: object, ok: bool = False) -> None:
    """Set a result (``ok``) or an exception unless the future is already done (first one wins)."""
    try:
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)
    except concurrent.futures.InvalidStateError:
        pass
