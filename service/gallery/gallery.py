"""The gallery: the SQLite store (truth) plus one derived FAISS index per scoring metric of the active model.

At start each index is loaded from its snapshot only if the snapshot's checksum, row count and generation
match the database; otherwise it is rebuilt from SQLite (and the reason is logged). Writes hold the write lock
while the database and every index change, so searches never see a deleted id.

Snapshots (every ``snapshot_every`` writes, after each erasure, and on close) never hold the write lock: the
indexes are serialized to bytes under the read lock (searches go on; writers wait only for the in-memory copy)
and the files are written and recorded with no lock held. A snapshot records the generation it was copied
at, so one that a later write overtook is stale at the next start and rebuilt from SQLite; snapshots are
written one at a time, in generation order, so an older copy never replaces a newer file.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.contract.scoring import (
    HeadWeights,
    gallery_vectors,
    index_dim,
    index_scores,
)
from service.contract.scoring import get as get_metric
from service.gallery import dirlock
from service.gallery.filters import EntryTable, SearchFilter
from service.gallery.index import IndexConfig, VectorIndex, write_snapshot
from service.gallery.protocol import GalleryEntry, Match, NewEntry, VectorQuery, check_encodings
from service.gallery.rwlock import ReadWriteLock
from service.gallery.store import SqliteStore

logger = logging.getLogger(__name__)
DB_FILE = "gallery.sqlite3"


class Gallery:
    """The embedded gallery store (``REID_GALLERY=embedded``): enrol, delete and search gallery embeddings of
    one model in this process. Implements :class:`service.gallery.protocol.GalleryStore`; one process only
    (``shared`` is False).

    Args:
        data_dir: Folder of the database and the index snapshots.
        model_id: ``name@version`` of the active model (embeddings are stored per model id).
        dim: Embedding length.
        metrics: Scoring metrics to index (``softmax`` needs ``head``).
        head: Verification-head weights for exact softmax search.
        config: Index type and parameters.
        snapshot_every: Writes between index snapshots (a snapshot is also written on close).
        encoding_dim: Length of the comparator encodings stored with each entry (pairwise models only).

    Raises:
        service.gallery.dirlock.DataDirLockedError: Another process has a gallery open on ``data_dir``.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        model_id: str,
        dim: int,
        metrics: list[str],
        head: HeadWeights | None,
        config: IndexConfig,
        snapshot_every: int = 100,
        encoding_dim: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._dir_lock: Path | None = dirlock.acquire(self.data_dir)  # one process per data dir
        self.encoding_dim = encoding_dim
        self.model_id = model_id
        self.dim = dim
        self.head = head
        self.config = config
        self.snapshot_every = snapshot_every
        self.store = SqliteStore(self.data_dir / DB_FILE)
        self.lock = ReadWriteLock(shared_reads=not config.use_gpu)
        self.indexes = {
            m: VectorIndex(
                index_dim(m, dim),
                inner_product=get_metric(m).inner_product,
                config=config,
                exact=get_metric(m).exact_index,
            )
            for m in metrics
        }
        self._table = EntryTable()  # person, camera, creation time per entry (labels, filters, retention)
        self._writes = 0
        self._snapshotting = threading.Lock()  # one snapshot at a time, so files go out in generation order
        self.rebuilt: list[str] = []

    shared = False

    def _name(self, metric: str) -> str:
        return f"{self.model_id}.{metric}.{self.indexes[metric].index_type}"

    def _path(self, metric: str) -> Path:
        return self.data_dir / "indexes" / f"{self._name(metric)}.faiss"

    def open(self) -> None:
        """Load every index from its snapshot, or rebuild it from SQLite when missing or inconsistent."""
        with self.lock.write():
            self._table = EntryTable()
            self._table.add(self.store.attributes())
            ids, emb = self.store.embeddings(self.model_id, self.dim)
            generation = self.store.generation()
            for metric, index in self.indexes.items():
                reason = self._load_snapshot(metric, index, generation, len(ids))
                if reason is None:
                    logger.info(
                        "index %s loaded from its snapshot (%d vectors)", self._name(metric), index.size
                    )
                    continue
                log = logger.warning if len(ids) or self.store.snapshot(self._name(metric)) else logger.info
                log("rebuilding index %s from SQLite: %s", self._name(metric), reason)
                index.build(ids, gallery_vectors(metric, emb, self.head))
                self.rebuilt.append(f"{metric}: {reason}")
                self._save(metric, index, generation)

    def _load_snapshot(self, metric: str, index: VectorIndex, generation: int, rows: int) -> str | None:
        record = self.store.snapshot(self._name(metric))
        path = self._path(metric)
        if record is None:
            return "no snapshot recorded"
        if not path.is_file():
            return f"snapshot file {path.name} is missing"
        if record["generation"] != generation or record["row_count"] != rows:
            return f"snapshot is stale (generation {record['generation']} vs {generation})"
        if not index.load(path, record["checksum"]):
            return f"snapshot file {path.name} is damaged (checksum mismatch)"
        if index.size != rows:
            return f"snapshot holds {index.size} vectors, the database {rows}"
        return None

    def _save(self, metric: str, index: VectorIndex, generation: int) -> None:
        """Snapshot one index at start-up (no request is running yet)."""
        data = self._serialized(metric, index)
        checksum = write_snapshot(self._path(metric), data)
        self.store.record_snapshot(
            self._name(metric), self.model_id, self._path(metric).name, index.size, checksum, generation
        )

    def _serialized(self, metric: str, index: VectorIndex) -> bytes:
        """The index as bytes, compacted (from SQLite) when it holds tombstones, so that a snapshot never
        holds deleted vectors; the live index is left as it is. Call with the lock held."""
        if not index.tombstones:
            return index.serialize()
        config = dataclasses.replace(index.config, use_gpu=False)  # a copy for the file, never on the GPU
        compact = VectorIndex(index.dim, index.inner_product, config, exact=index.index_type == "flat")
        ids, emb = self.store.embeddings(self.model_id, self.dim)
        compact.build(ids, gallery_vectors(metric, emb, self.head))
        return compact.serialize()

    def snapshot(self) -> None:
        """Write every index snapshot now (after the one being written, if any)."""
        with self._snapshotting:
            self._write_snapshots()

    def _write_snapshots(self) -> None:
        with self.lock.read():  # a consistent copy: no write is half done; searches go on meanwhile
            generation = self.store.generation()
            copies = {m: (self._serialized(m, index), index.size) for m, index in self.indexes.items()}
            self._writes = 0
        for metric, (data, size) in copies.items():  # no lock held: searches and writes go on
            checksum = write_snapshot(self._path(metric), data)
            self.store.record_snapshot(
                self._name(metric), self.model_id, self._path(metric).name, size, checksum, generation
            )

    def _after_write(self) -> None:
        """Count a write and compact indexes that need it (write lock held)."""
        self._writes += 1
        for metric, index in self.indexes.items():
            if index.needs_rebuild:
                ids, emb = self.store.embeddings(self.model_id, self.dim)
                index.build(ids, gallery_vectors(metric, emb, self.head))

    def _maybe_snapshot(self) -> None:
        """Snapshot when ``snapshot_every`` writes have accumulated (call with no lock held); when another
        snapshot is being written, leave it to the next write."""
        if self._writes < self.snapshot_every or not self._snapshotting.acquire(blocking=False):
            return
        try:
            if self._writes >= self.snapshot_every:
                self._write_snapshots()
        finally:
            self._snapshotting.release()

    def close(self) -> None:
        """Snapshot the indexes, close the database and release the data dir."""
        self.snapshot()
        self.store.close()
        if self._dir_lock is not None:
            dirlock.release(self._dir_lock)
            self._dir_lock = None

    @property
    def metrics(self) -> list[str]:
        """The indexed scoring metrics, sorted."""
        return sorted(self.indexes)

    def health(self) -> str | None:
        """Always usable once open (a local file and memory)."""
        return None

    def get(self, entry_id: int) -> GalleryEntry | None:
        """One entry, or None."""
        return self.store.get(entry_id)

    def list_entries(self, person_id: str | None, offset: int, limit: int) -> tuple[list[GalleryEntry], int]:
        """A page of entries ordered by id, optionally of one person, and the total matching count."""
        return self.store.list_entries(person_id, offset, limit)

    def image(self, entry_id: int) -> bytes | None:
        """The stored image bytes of an entry, if any."""
        return self.store.image(entry_id)

    def missing_embeddings(self) -> list[tuple[int, bool]]:
        """Entries without an embedding for the active model: (id, has stored image)."""
        return self.store.missing_embeddings(self.model_id)

    @property
    def size(self) -> int:
        """Searchable entries (those with an embedding for the active model)."""
        first = next(iter(self.indexes.values()), None)
        return first.size if first is not None else 0

    def add(
        self, entries: list[NewEntry], embeddings: np.ndarray, encodings: np.ndarray | None = None
    ) -> list[int]:
        """Store entries with their embeddings (and, for pairwise models, their comparator encodings, kept
        as float16) and index them; returns the gallery ids (new, or as the entries give them)."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        check_encodings(self.encoding_dim, encodings, len(embeddings))
        with self.lock.write():
            ids = self.store.add(entries, self.model_id, embeddings, encodings)
            id_arr = np.asarray(ids, dtype=np.int64)
            for metric, index in self.indexes.items():
                index.add(id_arr, gallery_vectors(metric, embeddings, self.head))
            self._table.add(self.store.attributes(ids))
            self._after_write()
        self._maybe_snapshot()
        return ids

    def set_embeddings(
        self, ids: list[int], embeddings: np.ndarray, encodings: np.ndarray | None = None
    ) -> None:
        """Index re-computed embeddings (and encodings) of existing entries (after switching models)."""
        check_encodings(self.encoding_dim, encodings, len(embeddings))
        with self.lock.write():
            self.store.set_embeddings(ids, self.model_id, embeddings, encodings)
            for metric, index in self.indexes.items():
                index.remove(ids)
                index.add(np.asarray(ids, np.int64), gallery_vectors(metric, embeddings, self.head))
            self._after_write()
        self._maybe_snapshot()

    def delete(self, ids: list[int]) -> list[int]:
        """Delete entries everywhere (rows, embeddings, images, vectors); returns the ids that existed."""
        with self.lock.write():
            found = self._delete_locked(ids)
            if found:
                self._after_write()
        self._maybe_snapshot()
        return found

    def _delete_locked(self, ids: list[int]) -> list[int]:
        found = self.store.delete(ids)
        for index in self.indexes.values():
            index.remove(found)
        self._table.remove(found)
        return found

    def erase_person(self, person_id: str) -> list[int]:
        """Erase every trace of a person; returns the deleted ids."""
        return self._erase(lambda: self.store.ids_of_person(person_id))

    def erase_created_before(self, cutoff: float, person_id: str | None = None) -> list[int]:
        """Erase every entry (of ``person_id``, when given) enrolled strictly before ``cutoff`` (UNIX
        seconds), as :meth:`erase_person` does (retention); returns the deleted ids."""
        persons = None if person_id is None else frozenset({person_id})
        where = SearchFilter(person_ids=persons, created_before=cutoff)
        return self._erase(lambda: [int(i) for i in self._table.select(where)])

    def _erase(self, select: Callable[[], list[int]]) -> list[int]:
        """Delete the ids ``select()`` gives (called under the write lock), then snapshot."""
        with self.lock.write():
            found = self._delete_locked(select())
            if found:
                self._after_write()
        if found:
            # an erasure is always snapshotted before it returns, so no index file on disk holds the erased
            # vectors (waits for a snapshot in progress, which may predate the erasure)
            self.snapshot()
        return found

    def embeddings(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored embeddings of ``ids`` for the active model: (ids found (M,), float32 (M, D)), by id."""
        found = [(i, v) for i in sorted({int(i) for i in ids}) if (v := self.embedding(i)) is not None]
        vecs = np.stack([v for _, v in found]) if found else np.empty((0, self.dim), np.float32)
        return np.array([i for i, _ in found], dtype=np.int64), vecs

    def embedding(self, entry_id: int) -> np.ndarray | None:
        """The stored embedding of an entry for the active model, or None."""
        return self.store.embedding(entry_id, self.model_id)

    def encodings(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored comparator encodings of ``ids`` (pairwise models): (ids found (M,), float32 (M, E))."""
        if self.encoding_dim is None:
            raise ValueError(f"model {self.model_id} is not pairwise: its gallery stores no encodings")
        return self.store.encodings(ids, self.model_id, self.encoding_dim)

    def search(self, query: VectorQuery) -> list[list[Match]]:
        """Rank the gallery for each query embedding (exact for flat indexes and softmax); the filters select
        the allowed ids for the FAISS search (see :mod:`service.gallery.filters`)."""
        index, top_k = self.indexes[query.metric_in(self.indexes)], query.top_k
        qvec, const = query.index_vectors(self.head)
        with self.lock.read():
            allowed = self._table.select(query.filters) if query.filters.active else None
            raw, ids = index.search(qvec, top_k, allowed)
            scores = index_scores(query.metric, raw, const)
            return [
                [
                    Match(id=i, person_id=p, camera_id=c, score=float(score))
                    for i, score in zip(row_ids.tolist(), row_scores.tolist(), strict=True)
                    if i >= 0
                    for p, c in (self._table.label(i),)
                ][:top_k]
                for row_ids, row_scores in zip(ids, scores, strict=True)
            ]
