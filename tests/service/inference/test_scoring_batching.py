"""Scoring formulas on hand-computed values, the softmax decomposition, the micro-batcher and settings."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import pytest

from service.config import Settings
from service.contract.scoring import (
    HeadWeights,
    gallery_vectors,
    index_scores,
    is_same,
    pair_scores,
    query_vectors,
    sigmoid,
)
from service.gallery.rwlock import ReadWriteLock
from service.inference.batching import MicroBatcher, QueueFullError


def test_pair_scores_hand_computed() -> None:
    a = np.array([[3.0, 4.0, 0.0]], dtype=np.float32)
    b = np.array([[4.0, 3.0, 0.0]], dtype=np.float32)
    assert pair_scores("cosine", a, b)[0] == pytest.approx(24 / 25)
    assert pair_scores("euclidean", a, b)[0] == pytest.approx(np.sqrt(2))
    # centred: a → (2, 5, −7)/3, b → (5, 2, −7)/3; Pearson = (10 + 10 + 49) / (4 + 25 + 49) = 69/78
    assert pair_scores("correlation", a, b)[0] == pytest.approx(69 / 78, abs=1e-6)
    head = HeadWeights(weight=np.array([-1.0, -0.5, 2.0], dtype=np.float32), bias=0.25)
    # logit = −1·1 − 0.5·1 + 2·0 + 0.25 = −1.25
    assert pair_scores("softmax", a, b, head)[0] == pytest.approx(1 / (1 + np.exp(1.25)))


def test_softmax_decomposition_is_exact() -> None:
    rng = np.random.default_rng(3)
    head = HeadWeights(weight=rng.standard_normal(8).astype(np.float32), bias=0.7)
    g = rng.standard_normal((50, 8)).astype(np.float32)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    qv, const = query_vectors("softmax", q, head)
    ip = qv.astype(np.float64) @ gallery_vectors("softmax", g, head).T.astype(np.float64)
    direct = ((q[:, None, :].astype(np.float64) - g[None]) ** 2) @ head.weight.astype(np.float64) + head.bias
    np.testing.assert_allclose(ip + const[:, None], direct, atol=1e-4)
    np.testing.assert_allclose(index_scores("softmax", ip, const), sigmoid(direct), atol=1e-6)


def test_decisions_respect_direction() -> None:
    assert is_same(0.9, 0.5, higher_is_better=True) and not is_same(0.4, 0.5, higher_is_better=True)
    assert is_same(0.4, 0.5, higher_is_better=False) and not is_same(0.9, 0.5, higher_is_better=False)
    assert sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]


def test_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="valid metrics: cosine, correlation"):
        gallery_vectors("manhattan", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="needs the verification head"):
        pair_scores("softmax", np.zeros((1, 2)), np.zeros((1, 2)))


def test_micro_batcher_batches_keeps_order_and_bounds_the_queue() -> None:
    seen: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :1] * 2.0

    async def main() -> None:
        batcher = MicroBatcher(run, max_batch=4, max_wait_ms=20, queue_size=8)
        batcher.start()
        images = [np.full((3, 2, 2), i, dtype=np.float32) for i in range(10)]
        outs = await asyncio.gather(*(batcher.submit([img]) for img in images[:8]))
        assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(8)]
        with pytest.raises(QueueFullError, match="queue is full"):
            await batcher.submit(images * 1)  # 10 images > queue_size 8
        await batcher.stop()

    asyncio.run(main())
    assert max(seen) > 1 and max(seen) <= 4 and sum(seen) == 8


def test_micro_batcher_validates_arguments() -> None:
    with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
        MicroBatcher(lambda b: b, max_batch=0, max_wait_ms=1, queue_size=1)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REID_API_KEYS", "a, b ,,c")
    monkeypatch.setenv("REID_INDEX_TYPE", "hnsw")
    monkeypatch.setenv("REID_MAX_UPLOAD_MB", "2")
    settings = Settings()
    assert settings.api_keys == ["a", "b", "c"] and settings.index_type == "hnsw"
    assert settings.max_upload_bytes == 2 * 1024 * 1024
    monkeypatch.setenv("REID_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        Settings()


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (a lock's waiter counters: the other thread is really waiting)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


class Holder:
    """A thread that takes ``lock_cm()`` when started, says so (``inside``) and holds it until ``leave()``."""

    def __init__(self, lock_cm: Callable[[], AbstractContextManager[None]]) -> None:
        self.inside = threading.Event()
        self._leave = threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(lock_cm,))

    def _hold(self, lock_cm: Callable[[], AbstractContextManager[None]]) -> None:
        with lock_cm():
            self.inside.set()
            assert self._leave.wait(10)

    def start(self) -> Holder:
        self.thread.start()
        return self

    def enter(self) -> Holder:
        """Start and wait until the lock is held."""
        self.start()
        assert self.inside.wait(10), "the lock was never granted"
        return self

    def leave(self) -> None:
        self._leave.set()
        self.thread.join(10)


def test_read_write_lock_shares_reads() -> None:
    """Two readers hold the lock at once: each waits inside for the other (a barrier of two)."""
    lock = ReadWriteLock()
    both_inside = threading.Barrier(2, timeout=10)
    passed: list[bool] = []

    def reader() -> None:
        with lock.read():
            both_inside.wait()  # raises BrokenBarrierError if the other reader cannot get in
            passed.append(True)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert passed == [True, True]


def test_read_write_lock_excludes_writers_and_is_phase_fair() -> None:
    """A writer waits for the reader inside; readers arriving while it waits queue behind it; a writer
    excludes readers; when it leaves, the waiting reader goes first."""
    lock = ReadWriteLock()
    reader1 = Holder(lock.read).enter()
    writer = Holder(lock.write).start()
    _until(lambda: lock._writers_waiting == 1, "the writer waits")
    assert not writer.inside.is_set()  # it is waiting, and a reader is inside: it must not be in
    reader2 = Holder(lock.read).start()
    _until(lambda: lock._readers_waiting == 1, "the second reader waits")
    assert not reader2.inside.is_set()  # a writer is waiting: a new reader queues behind it
    reader1.leave()
    assert writer.inside.wait(10)
    assert not reader2.inside.is_set() and lock._readers == 0  # the writer is alone
    writer.leave()
    assert reader2.inside.wait(10)
    reader2.leave()
    assert lock._readers == 0 and not lock._writer


def test_read_write_lock_lets_waiting_readers_in_before_the_next_writer() -> None:
    lock = ReadWriteLock()
    writer1 = Holder(lock.write).enter()
    reader = Holder(lock.read).start()
    _until(lambda: lock._readers_waiting == 1, "the reader waits")
    writer2 = Holder(lock.write).start()
    _until(lambda: lock._writers_waiting == 1, "the second writer waits")
    writer1.leave()
    assert reader.inside.wait(10)  # the reader that waited through the first write goes before writer 2
    assert not writer2.inside.is_set()
    reader.leave()
    assert writer2.inside.wait(10)
    writer2.leave()


def test_exclusive_reads_for_gpu_indexes() -> None:
    lock = ReadWriteLock(shared_reads=False)
    first = Holder(lock.read).enter()
    second = Holder(lock.read).start()
    _until(lambda: lock._writers_waiting == 1, "the second reader waits")
    assert not second.inside.is_set()
    first.leave()
    assert second.inside.wait(10)
    second.leave()


def test_a_lone_request_does_not_wait_for_company() -> None:
    """With nothing else announced, the worker runs at once instead of waiting max_wait_ms (here 10 minutes).

    Not a speed bound: a batcher that waited for company would take 10 minutes, so the 60 s limit only tells
    the two behaviours apart, however busy the machine.
    """

    async def main() -> None:
        batcher = MicroBatcher(
            lambda b: b.reshape(len(b), -1), max_batch=8, max_wait_ms=600_000, queue_size=8
        )
        batcher.start()
        try:
            await asyncio.wait_for(batcher.submit([np.zeros((3, 2, 2), np.float32)]), timeout=60)
        finally:
            await batcher.stop()

    asyncio.run(main())


def test_announced_images_are_waited_for() -> None:
    sizes: list[int] = []

    async def main() -> None:
        batcher = MicroBatcher(
            lambda b: sizes.append(len(b)) or b.reshape(len(b), -1),
            max_batch=8,
            max_wait_ms=2000,
            queue_size=8,
        )
        batcher.start()
        batcher.announce(2)  # two requests are decoding their images
        first = asyncio.create_task(batcher.submit([np.zeros((3, 2, 2), np.float32)], announced=True))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit([np.ones((3, 2, 2), np.float32)], announced=True))
        await asyncio.gather(first, second)
        await batcher.stop()

    asyncio.run(main())
    assert sizes == [2]


def test_run_alone_prepares_and_runs_one_batch_on_the_model_thread() -> None:
    """The lone-request path: prepare + model in one executor job, same outputs as a queued batch."""
    threads: list[str] = []

    def run(batch: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return batch.reshape(len(batch), -1)[:, :1] * 2.0

    def prepare() -> list[np.ndarray]:
        threads.append(threading.current_thread().name)
        return [np.full((3, 2, 2), i, dtype=np.float32) for i in (1, 2)]

    async def main() -> None:
        batcher = MicroBatcher(run, max_batch=4, max_wait_ms=20, queue_size=8)
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.run_alone(prepare)
        batcher.start()
        assert batcher.idle
        alone = await batcher.run_alone(prepare)
        assert alone.outputs[:, 0].tolist() == [2.0, 4.0] and alone.prepare_s >= 0 and alone.inference_s >= 0
        assert (await batcher.submit(prepare())).tolist() == alone.outputs.tolist()
        batcher.announce(1)  # a request decoding its image: no longer idle
        assert not batcher.idle
        batcher.withdraw(1)
        await batcher.stop()
        assert not batcher.idle

    asyncio.run(main())
    assert threads[:2] == [threads[1]] * 2 and threads[1].startswith("reid-model")
