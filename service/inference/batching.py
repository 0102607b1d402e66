"""A small micro-batcher: concurrent requests' images are queued and run on the model in batches.

Each image is a job with its own future. The worker takes the first waiting job, then gathers more until the
batch holds ``max_batch`` images or ``max_wait_ms`` has passed, and runs the model on the service's one model
executor (:mod:`service.inference.executor`) so the event loop stays free. It waits only while more images
are on their way: requests announce their images (:meth:`MicroBatcher.announce`) before decoding them, so a
lone request runs at once. The only request in the service, finding the batcher idle, skips the queue
altogether (:meth:`MicroBatcher.run_alone`): its decode and its model call run as one job on the model
executor, one thread hand-off instead of three (decode pool, batcher task, model thread). The queue is
bounded: when it is full :meth:`MicroBatcher.submit` raises :class:`QueueFullError` at once (the API
answers 503 with ``Retry-After``). :meth:`MicroBatcher.stop` resolves every job it has not answered, the
running batch's included, with :class:`BatcherStoppedError` (503): no request waits forever on a stopped
batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from service.inference.executor import InferenceStoppedError, ModelExecutor
from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The inference queue has no room for the request's images."""


class BatcherStoppedError(InferenceStoppedError):
    """The batcher is not running (the service is starting or shutting down)."""


@dataclass
class _Job:
    image: np.ndarray
    future: asyncio.Future[np.ndarray]


class AloneRun(NamedTuple):
    """What :meth:`MicroBatcher.run_alone` returns: the outputs and where the time went (seconds)."""

    outputs: np.ndarray
    prepare_s: float
    inference_s: float


class MicroBatcher:
    """Batch single-image inference calls onto one model function.

    Args:
        run_batch: Maps an (N, 3, H, W) float32 batch to (N, D) outputs; runs on ``executor``.
        max_batch: Largest batch (1 turns batching off).
        max_wait_ms: Longest time the first job of a batch waits for company.
        queue_size: Largest number of waiting images.
        metrics: Where batch sizes, inference times and queue depth are recorded.
        executor: The service's model executor (default: a private one-thread executor).
    """

    def __init__(
        self,
        run_batch: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        metrics: ServiceMetrics | None = None,
        executor: ModelExecutor | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._own_executor = executor is None
        self.executor = executor or ModelExecutor(workers=1)
        self._taken: list[_Job] = []  # jobs taken off the queue (gathering or running) and not answered yet
        self._expected = 0  # images announced or queued but not yet taken into a batch
        self._alone = 0  # run_alone() jobs on the executor

    def announce(self, count: int) -> None:
        """Say that ``count`` images will be submitted soon (the worker waits for them, up to max_wait)."""
        self._expected += count

    def withdraw(self, count: int) -> None:
        """Cancel an announcement whose images will not be submitted (e.g. they failed to decode)."""
        self._expected = max(0, self._expected - count)

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="reid-micro-batcher")

    async def stop(self) -> None:
        """Stop the worker; every job not answered yet (queued, or in the running batch) fails with
        :class:`BatcherStoppedError`, which the API answers with 503."""
        worker, self._worker = self._worker, None  # submit() refuses new work from here on
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._own_executor:
            self.executor.shutdown()
        stopped = BatcherStoppedError("the service is shutting down")
        jobs, self._taken = self._taken, []
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(stopped)
        self._expected = 0

    @property
    def idle(self) -> bool:
        """Running, and nothing queued, announced, gathering or running (so nothing to batch with)."""
        return (
            self._worker is not None
            and self._expected == 0
            and not self._taken
            and not self._alone
            and self._queue.empty()
        )

    async def run_alone(self, prepare: Callable[[], list[np.ndarray]]) -> AloneRun:
        """Prepare (decode) a lone request's images and run them as one batch, in one model-executor job.

        For a request that finds the batcher :attr:`idle` with at most ``max_batch`` images and no other
        request in the service (the caller checks): nothing waits to be batched with it, so the decode pool,
        the queue and the worker task would only add thread hand-offs. Requests arriving meanwhile take the
        normal path; their batch runs after this job on the executor. Metrics are recorded as for a batch.

        Raises:
            BatcherStoppedError: The batcher is not running.
            InferenceStoppedError: The executor shut down while the job waited or ran.
        """
        if self._worker is None:
            raise BatcherStoppedError("the inference worker is not running (starting or shutting down)")

        def job() -> AloneRun:
            t0 = time.perf_counter()
            images = prepare()
            t1 = time.perf_counter()
            outputs = self.run_batch(np.stack(images, axis=0))
            return AloneRun(outputs, t1 - t0, time.perf_counter() - t1)

        self._alone += 1
        try:
            result = await self.executor.run(job)
        finally:
            self._alone -= 1
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(result.outputs))
            self.metrics.inference_latency.observe(result.inference_s)
        return result

    @property
    def depth(self) -> int:
        """Images waiting in the queue."""
        return self._queue.qsize()

    async def submit(self, images: list[np.ndarray], announced: bool = False) -> np.ndarray:
        """Queue preprocessed (3, H, W) images and wait for their outputs, stacked in order.

        Args:
            images: The preprocessed images.
            announced: True when :meth:`announce` was called for these images.

        Raises:
            QueueFullError: Not enough room for all the images (none of them is queued).
        """
        if not announced:
            self.announce(len(images))
        if self._worker is None:
            self.withdraw(len(images))
            raise BatcherStoppedError("the inference worker is not running (starting or shutting down)")
        if self._queue.qsize() + len(images) > self.queue_size:
            self.withdraw(len(images))
            if self.metrics is not None:
                self.metrics.queue_rejections.inc(len(images))
            raise QueueFullError(
                f"the inference queue is full ({self._queue.qsize()} of {self.queue_size} images waiting)"
            )
        loop = asyncio.get_running_loop()
        jobs = [_Job(image=img, future=loop.create_future()) for img in images]
        for job in jobs:
            self._queue.put_nowait(job)
        self._observe_depth()
        results = await asyncio.gather(*(job.future for job in jobs))
        return np.stack(results, axis=0)

    def _observe_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._queue.qsize())

    async def _gather(self) -> list[_Job]:
        batch = self._taken = [await self._queue.get()]  # stop() answers these if it cancels the worker
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._expected <= len(batch):  # timed out, or nobody else is on the way
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout=remaining))
            except asyncio.TimeoutError:
                break
        self.withdraw(len(batch))
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            self._observe_depth()
            live = [job for job in batch if not job.future.done()]  # cancelled requests are skipped
            if not live:
                self._taken = []
                continue
            start = time.perf_counter()
            try:
                stacked = np.stack([job.image for job in live], axis=0)
                outputs = await self.executor.run(self.run_batch, stacked)
            except Exception as exc:  # a model failure fails the batch's requests, not the worker
                logger.exception("inference failed for a batch of %d", len(live))
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
                self._taken = []
                continue
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(live))
                self.metrics.inference_latency.observe(time.perf_counter() - start)
            for job, out in zip(live, outputs, strict=True):
                if not job.future.done():
                    job.future.set_result(out)
            self._taken = []
