"""The gallery's source of truth: one SQLite database (WAL).

Rows hold the gallery id (int64, never reused: ``AUTOINCREMENT``), ``person_id``, ``camera_id``, JSON
metadata, the creation time, optionally the image bytes, and one embedding per model id (for pairwise models
also the comparator's encoding, float16, in ``encodings``). Every write bumps
a generation counter in the same transaction, and index snapshots record the generation, row count and
checksum they reflect, so a stale or damaged index is detected at start-up and rebuilt.
Deleted rows are overwritten (``secure_delete``) and the WAL is checkpointed after an erase, so a person's
data does not linger on disk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from service.gallery.protocol import GalleryEntry, NewEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id TEXT NOT NULL,
    camera_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL,
    image BLOB
);
CREATE INDEX IF NOT EXISTS entries_person ON entries(person_id);
CREATE TABLE IF NOT EXISTS embeddings (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (entry_id, model_id)
);
CREATE TABLE IF NOT EXISTS encodings (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    encoding BLOB NOT NULL,
    PRIMARY KEY (entry_id, model_id)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    file TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    generation INTEGER NOT NULL,
    written TEXT NOT NULL
);
INSERT OR IGNORE INTO counters(name, value) VALUES ('generation', 0);
"""


class SqliteStore:
    """Thread-safe access to the gallery database (one connection behind a lock).

    Args:
        path: Database file; its folder is created if needed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Checkpoint the WAL and close the connection."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self)

    def _bump(self) -> int:
        self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'generation'")
        return self.generation()

    def generation(self) -> int:
        """The write counter (bumped by every add / delete)."""
        with self._lock:
            return int(self._db.execute("SELECT value FROM counters WHERE name = 'generation'").fetchone()[0])

    def add(
        self,
        entries: list[NewEntry],
        model_id: str,
        embeddings: np.ndarray,
        encodings: np.ndarray | None = None,
    ) -> list[int]:
        """Insert entries with their embeddings (and pairwise encodings) for ``model_id`` in one transaction;
        returns their ids (an entry's own ``id`` and ``created`` are kept: a copy from another store)."""
        if len(entries) != len(embeddings):
            raise ValueError(f"{len(entries)} entries but {len(embeddings)} embeddings")
        if encodings is not None and len(encodings) != len(entries):
            raise ValueError(f"{len(entries)} entries but {len(encodings)} encodings")
        created = datetime.now(timezone.utc).isoformat()
        ids: list[int] = []
        with self._tx():
            for entry, vec in zip(entries, embeddings, strict=True):
                cur = self._db.execute(
                    "INSERT INTO entries(id, person_id, camera_id, metadata, created, image) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        entry.id,
                        entry.person_id,
                        entry.camera_id,
                        json.dumps(entry.metadata),
                        entry.created or created,
                        entry.image,
                    ),
                )
                new_id = int(cur.lastrowid or 0)
                ids.append(new_id)
                self._db.execute(
                    "INSERT INTO embeddings(entry_id, model_id, vector) VALUES (?, ?, ?)",
                    (new_id, model_id, np.asarray(vec, dtype=np.float32).tobytes()),
                )
            if encodings is not None:
                self._put_encodings(ids, model_id, encodings)
            self._bump()
        return ids

    def _put_encodings(self, ids: list[int], model_id: str, encodings: np.ndarray) -> None:
        for entry_id, enc in zip(ids, encodings, strict=True):
            self._db.execute(
                "INSERT OR REPLACE INTO encodings(entry_id, model_id, encoding) VALUES (?, ?, ?)",
                (int(entry_id), model_id, np.asarray(enc, dtype=np.float16).tobytes()),
            )

    def set_embeddings(
        self, ids: list[int], model_id: str, embeddings: np.ndarray, encodings: np.ndarray | None = None
    ) -> None:
        """Store (or replace) the embeddings (and pairwise encodings) of existing entries for ``model_id``."""
        with self._tx():
            for entry_id, vec in zip(ids, embeddings, strict=True):
                self._db.execute(
                    "INSERT OR REPLACE INTO embeddings(entry_id, model_id, vector) VALUES (?, ?, ?)",
                    (int(entry_id), model_id, np.asarray(vec, dtype=np.float32).tobytes()),
                )
            if encodings is not None:
                self._put_encodings(ids, model_id, encodings)
            self._bump()

    def delete(self, ids: list[int]) -> list[int]:
        """Delete entries by id (embeddings and image included); returns the ids that existed."""
        with self._tx():
            found = (
                [
                    int(r[0])
                    for r in self._db.execute(
                        f"SELECT id FROM entries WHERE id IN ({','.join('?' * len(ids))})",
                        [int(i) for i in ids],
                    )
                ]
                if ids
                else []
            )
            if found:
                self._db.execute(f"DELETE FROM entries WHERE id IN ({','.join('?' * len(found))})", found)
                self._bump()
        if found:
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return found

    def ids_of_person(self, person_id: str) -> list[int]:
        """Every entry id of a person."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM entries WHERE person_id = ? ORDER BY id", (person_id,))
            return [int(r[0]) for r in rows]

    def get(self, entry_id: int) -> GalleryEntry | None:
        """One entry, or None."""
        rows = self._select("WHERE e.id = ?", (int(entry_id),))
        return rows[0] if rows else None

    def image(self, entry_id: int) -> bytes | None:
        """The stored image bytes of an entry, if any."""
        with self._lock:
            row = self._db.execute("SELECT image FROM entries WHERE id = ?", (int(entry_id),)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def list_entries(self, person_id: str | None, offset: int, limit: int) -> tuple[list[GalleryEntry], int]:
        """A page of entries ordered by id, optionally of one person, and the total matching count."""
        where, params = ("WHERE e.person_id = ?", (person_id,)) if person_id is not None else ("", ())
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM entries e {where}", params).fetchone()[0])
        return self._select(where, params, f"LIMIT {int(limit)} OFFSET {int(offset)}"), total

    def _select(self, where: str, params: tuple[Any, ...], tail: str = "") -> list[GalleryEntry]:
        sql = (
            "SELECT e.id, e.person_id, e.camera_id, e.metadata, e.created, e.image IS NOT NULL, "
            "(SELECT group_concat(model_id, char(10)) FROM embeddings WHERE entry_id = e.id) "
            f"FROM entries e {where} ORDER BY e.id {tail}"
        )
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [
            GalleryEntry(
                id=int(r[0]),
                person_id=r[1],
                camera_id=r[2],
                metadata=json.loads(r[3]),
                created=r[4],
                has_image=bool(r[5]),
                models=tuple(sorted(r[6].split("\n"))) if r[6] else (),
            )
            for r in rows
        ]

    def labels(self) -> dict[int, tuple[str, str | None]]:
        """id → (person_id, camera_id) for every entry (used to filter search results)."""
        with self._lock:
            return {
                int(r[0]): (r[1], r[2])
                for r in self._db.execute("SELECT id, person_id, camera_id FROM entries")
            }

    def attributes(self, ids: list[int] | None = None) -> list[tuple[int, str, str | None, str]]:
        """(id, person_id, camera_id, created) of the given entries, or of every entry, ordered by id."""
        with self._lock:
            if ids is None:
                return [
                    (int(r[0]), r[1], r[2], r[3])
                    for r in self._db.execute(
                        "SELECT id, person_id, camera_id, created FROM entries ORDER BY id"
                    )
                ]
            rows: list[tuple[int, str, str | None, str]] = []
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                part = [int(i) for i in ids[start : start + 500]]
                rows.extend(
                    (int(r[0]), r[1], r[2], r[3])
                    for r in self._db.execute(
                        "SELECT id, person_id, camera_id, created FROM entries WHERE id IN "
                        f"({','.join('?' * len(part))}) ORDER BY id",
                        part,
                    )
                )
            return rows

    def embeddings(self, model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """All (ids int64 (N,), embeddings float32 (N, dim)) stored for ``model_id``, ordered by id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT entry_id, vector FROM embeddings WHERE model_id = ? ORDER BY entry_id", (model_id,)
            ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vecs.copy()

    def embedding(self, entry_id: int, model_id: str) -> np.ndarray | None:
        """One stored embedding, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT vector FROM embeddings WHERE entry_id = ? AND model_id = ?", (int(entry_id), model_id)
            ).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def encodings(self, ids: list[int], model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored pairwise encodings of ``ids`` for ``model_id``: (ids found int64 (M,), float32 (M, dim)),
        ordered by id; ids without an encoding (deleted meanwhile) are left out."""
        found: list[int] = []
        blobs: list[bytes] = []
        unique = sorted({int(i) for i in ids})
        with self._lock:
            for start in range(0, len(unique), 500):  # stay under SQLite's bound-parameter limit
                part = unique[start : start + 500]
                rows = self._db.execute(
                    f"SELECT entry_id, encoding FROM encodings WHERE model_id = ? AND entry_id IN "
                    f"({','.join('?' * len(part))}) ORDER BY entry_id",
                    [model_id, *part],
                ).fetchall()
                found.extend(int(r[0]) for r in rows)
                blobs.extend(r[1] for r in rows)
        bad = [i for i, blob in zip(found, blobs, strict=True) if len(blob) != 2 * dim]
        if bad:
            raise ValueError(
                f"stored encodings of entries {bad[:5]} for {model_id} are not {dim} float16 values; "
                "was the model re-exported under the same name@version?"
            )
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(found), dim)
        return np.array(found, dtype=np.int64), vecs.astype(np.float32)

    def missing_embeddings(self, model_id: str) -> list[tuple[int, bool]]:
        """Entries without an embedding for ``model_id``: (id, has stored image)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, image IS NOT NULL FROM entries WHERE id NOT IN "
                "(SELECT entry_id FROM embeddings WHERE model_id = ?) ORDER BY id",
                (model_id,),
            ).fetchall()
        return [(int(r[0]), bool(r[1])) for r in rows]

    def record_snapshot(
        self, name: str, model_id: str, file: str, row_count: int, checksum: str, generation: int
    ) -> None:
        """Record an index snapshot (after its file has been fsynced and renamed into place)."""
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO snapshots"
                "(name, model_id, file, row_count, checksum, generation, written) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    model_id,
                    file,
                    row_count,
                    checksum,
                    generation,
                    datetime.now(timezone.utc).isoformat(),
                ),
            )

    def snapshot(self, name: str) -> dict[str, Any] | None:
        """The recorded snapshot of index ``name``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT model_id, file, row_count, checksum, generation FROM snapshots WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return None
        keys = ("model_id", "file", "row_count", "checksum", "generation")
        return dict(zip(keys, row, strict=True))


class _Transaction:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        self.store._lock.acquire()
        self.store._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.store._lock.release()
