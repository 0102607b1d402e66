"""A reader/writer lock for the FAISS indexes (searches share, writes are exclusive)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many readers or one writer, phase-fair: neither side starves.

    A waiting writer blocks newly arriving readers (no writer starvation), and when a writer finishes, the
    readers already waiting go in before the next writer (no reader starvation under a steady stream of
    writes, e.g. a bulk enrolment while cameras search).

    Args:
        shared_reads: False makes readers exclusive too (faiss GPU indexes are not thread-safe).
    """

    def __init__(self, shared_reads: bool = True) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._readers_turn = False  # set when a writer leaves with readers waiting
        self.shared_reads = shared_reads

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock for reading."""
        if not self.shared_reads:
            with self.write():
                yield
            return
        with self._cond:
            self._readers_waiting += 1
            while self._writer or (self._writers_waiting and not self._readers_turn):
                self._cond.wait()
            self._readers_waiting -= 1
            if self._readers_waiting == 0:
                self._readers_turn = False
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively."""
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers or self._readers_turn:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._readers_turn = self._readers_waiting > 0
                self._cond.notify_all()
