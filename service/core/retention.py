"""Retention: erase gallery entries older than ``REID_RETENTION_HOURS``, with the guarantees of ``DELETE``.

A background task sweeps every ``REID_RETENTION_CHECK_S``: the entries enrolled before now − retention are
erased by the store's ``erase_created_before`` (embedded store: rows, embeddings, encodings and stored
images deleted with SQLite ``secure_delete`` and a WAL checkpoint, vectors removed from every index, and the
index snapshots rewritten without them). What it erased is counted in ``/metrics``
(``reid_erased_entries_total``, reason ``retention``); the last sweep's time is
``reid_retention_last_sweep_timestamp_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from service.core.workers import run_index_call
from service.gallery.protocol import GalleryStore
from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


def sweep(
    gallery: GalleryStore, hours: float, metrics: ServiceMetrics, now: float | None = None
) -> list[int]:
    """Erase the entries enrolled more than ``hours`` before ``now`` (default: the current time).

    Returns:
        The erased ids.
    """
    cutoff = (time.time() if now is None else now) - hours * 3600.0
    erased = gallery.erase_created_before(cutoff)
    metrics.erased.labels(reason="retention").inc(len(erased))
    metrics.retention_last_sweep.set(time.time())
    metrics.gallery_size.set(gallery.size)
    if erased:
        logger.info("retention: erased %d entries enrolled more than %g h ago", len(erased), hours)
    return erased


class RetentionTask:
    """The background sweep: one at start, then one every ``every_s`` seconds, until :meth:`stop`.

    Args:
        gallery: The gallery to sweep.
        hours: Entries older than this are erased.
        every_s: Seconds between sweeps.
        metrics: Where the erased entries are counted.
        faiss_threads: OpenMP threads of the sweep's FAISS work (the ``index`` pool's setting).
    """

    def __init__(
        self,
        gallery: GalleryStore,
        hours: float,
        every_s: float,
        metrics: ServiceMetrics,
        faiss_threads: int = 1,
    ) -> None:
        if hours <= 0 or every_s <= 0:
            raise ValueError(f"retention hours and check interval must be > 0, got {hours} and {every_s}")
        self.gallery = gallery
        self.hours = hours
        self.every_s = every_s
        self.metrics = metrics
        self.faiss_threads = faiss_threads
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="reid-retention")

    async def _run(self) -> None:
        while True:
            try:
                call = functools.partial(sweep, self.gallery, self.hours, self.metrics)
                await run_index_call(call, self.faiss_threads)  # on the index pool, like every gallery call
            except Exception:  # a failed sweep is retried at the next interval; the service keeps serving
                logger.exception("retention sweep failed")
            await asyncio.sleep(self.every_s)

    async def stop(self) -> None:
        """Stop sweeping (a sweep in progress finishes in its thread)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
