"""Index snapshots never stall searches: the files are written with no lock held (the indexes are copied
under the read lock), and a snapshot that a later write overtook is caught by the start-up check."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.gallery import gallery as gallery_module
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import VectorQuery
from service.gallery.store import NewEntry

DIM = 8
WAIT_S = 10.0


def _open(data_dir: Path, snapshot_every: int = 10_000, index_type: str = "flat") -> Gallery:
    gallery = Gallery(
        data_dir,
        model_id="snap@1",
        dim=DIM,
        metrics=["cosine", "euclidean"],
        head=None,
        config=IndexConfig(index_type=index_type, hnsw_m=8),
        snapshot_every=snapshot_every,
    )
    gallery.open()
    return gallery


def _add(gallery: Gallery, n: int, person: str, seed: int) -> list[int]:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    entries = [NewEntry(person_id=person, camera_id=None, metadata={}, image=None) for _ in range(n)]
    return gallery.add(entries, vectors)


class GatedWrite:
    """Replaces ``write_snapshot``: once armed, a file write signals ``entered`` and waits for ``release``."""

    def __init__(self, real: Callable[[Path, bytes], str]) -> None:
        self.real = real
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, path: Path, data: bytes) -> str:
        if self.armed:
            self.entered.set()
            assert self.release.wait(WAIT_S), "the snapshot was never released"
        return self.real(path, data)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> GatedWrite:
    gate = GatedWrite(gallery_module.write_snapshot)
    monkeypatch.setattr(gallery_module, "write_snapshot", gate)
    return gate


@pytest.mark.parametrize("trigger", ["snapshot", "every_n_writes", "erase"])
def test_searches_and_writes_go_on_while_a_snapshot_is_written(
    tmp_path: Path, gated: GatedWrite, trigger: str
) -> None:
    gallery = _open(tmp_path, snapshot_every=3 if trigger == "every_n_writes" else 10_000)
    _add(gallery, 3, "p-keep", seed=0)
    _add(gallery, 1, "p-erase", seed=1)
    start: Callable[[], Any] = {
        "snapshot": gallery.snapshot,
        "every_n_writes": lambda: _add(gallery, 2, "p-new", seed=2),  # the 3rd write snapshots
        "erase": lambda: gallery.erase_person("p-erase"),
    }[trigger]
    gated.armed = True
    snapshotter, _ = _in_thread(start)
    assert gated.entered.wait(WAIT_S), "no snapshot was started"
    assert not gallery.lock._writer and gallery.lock._readers == 0  # the file is written with no lock held
    query = VectorQuery("cosine", np.ones((1, DIM), np.float32), 10)
    searcher, found = _in_thread(lambda: gallery.search(query))
    searcher.join(WAIT_S)
    writer, added = _in_thread(lambda: _add(gallery, 1, "p-late", seed=3))
    writer.join(WAIT_S)
    assert not searcher.is_alive() and not writer.is_alive(), "a search or a write waited for the snapshot"
    assert found and added
    gated.release.set()
    gated.armed = False
    snapshotter.join(WAIT_S)
    assert not snapshotter.is_alive()
    if trigger == "erase":
        assert gallery.store.ids_of_person("p-erase") == []
    # the snapshot predates the late write: the start-up check finds it stale and rebuilds from SQLite
    reopened = _open(tmp_path)
    assert reopened.rebuilt and all("stale" in reason for reason in reopened.rebuilt), reopened.rebuilt
    assert reopened.size == gallery.size
    for metric, index in reopened.indexes.items():
        assert set(index.ids().tolist()) == set(gallery.indexes[metric].ids().tolist()) - gallery.indexes[
            metric
        ].tombstones
    reopened.store.close()
    gallery.close()
    clean = _open(tmp_path)
    assert clean.rebuilt == [] and clean.size == gallery.size  # close() wrote consistent snapshots
    clean.close()


def test_snapshots_compact_tombstones_without_touching_the_live_index(tmp_path: Path) -> None:
    gallery = _open(tmp_path, index_type="hnsw")
    ids = _add(gallery, 20, "p", seed=4)
    gallery.delete(ids[:3])
    hnsw = gallery.indexes["cosine"]
    assert hnsw.tombstones == set(ids[:3])
    gallery.snapshot()
    assert hnsw.tombstones == set(ids[:3])  # the live index keeps serving as it was
    gallery.close()
    reopened = _open(tmp_path, index_type="hnsw")
    assert reopened.rebuilt == []
    assert set(reopened.indexes["cosine"].ids().tolist()) == set(ids[3:])  # the file holds no deleted id
    reopened.close()


def test_a_snapshot_in_progress_is_not_overtaken_by_an_older_one(tmp_path: Path, gated: GatedWrite) -> None:
    """Periodic snapshots skip while one is being written; an erasure waits for it and writes its own."""
    gallery = _open(tmp_path, snapshot_every=1)
    _add(gallery, 2, "p-erase", seed=5)
    gated.armed = True
    first, _ = _in_thread(lambda: _add(gallery, 1, "p-keep", seed=6))  # snapshot_every=1: it snapshots
    assert gated.entered.wait(WAIT_S)
    eraser, erased = _in_thread(lambda: gallery.erase_person("p-erase"))
    writer, _ = _in_thread(lambda: _add(gallery, 1, "p-keep", seed=7))
    writer.join(WAIT_S)  # the periodic snapshot of this write is skipped, not queued behind the gate
    assert not writer.is_alive()
    assert eraser.is_alive()  # the erasure waits: its snapshot must land after the one in progress
    gated.release.set()
    for t in (first, eraser):
        t.join(WAIT_S)
    assert erased and len(erased[0]) == 2
    reopened = _open(tmp_path)
    assert reopened.rebuilt == [], reopened.rebuilt  # the erasure's snapshot is the newest on disk
    assert set(reopened.indexes["cosine"].ids().tolist()).isdisjoint(erased[0])
    reopened.store.close()
    gallery.close()
