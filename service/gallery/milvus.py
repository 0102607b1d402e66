"""The shared gallery store on Milvus (``REID_GALLERY=milvus``): every worker and replica sees one gallery.

The layout (one collection per kind of vector, ids from claimed blocks) is
:mod:`service.gallery.milvus_layout`. Every read runs at ``Strong`` consistency, so an acknowledged enrol or
erase is seen by the next search of any process. Writes touch several collections without a transaction: the
entry row first (it allocates the id), then its vectors; a failure part-way deletes what was written, and a
delete removes the vectors before the entry row. Stored images are refused (no object store is wired in):
:func:`service.gallery.factory.create_gallery` says so at start-up.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import numpy as np

from service.contract.scoring import (
    gallery_vectors,
    index_dim,
    index_scores,
)
from service.gallery.filters import SearchFilter, created_seconds
from service.gallery.index import IndexConfig
from service.gallery.milvus_client import IdBlocks, MilvusConfig, MilvusConnection
from service.gallery.milvus_layout import (
    ENCODINGS,
    MAX_DIM,
    MAX_TOP_K,
    PLACEHOLDER_DIM,
    QUERY_WINDOW,
    RAW,
    blocks_name,
    collection_name,
    describe,
    entries_name,
    index_params,
    metric_type,
    parse_description,
    quote,
    scoped,
    search_filter,
    vector_kind,
)
from service.gallery.protocol import GalleryEntry, GallerySpec, Match, NewEntry, VectorQuery, check_encodings

logger = logging.getLogger(__name__)
_LABELS = ["person_id", "camera_id", "has_camera", "created_s"]
_ENTRY_FIELDS = ["id", *_LABELS, "metadata", "created"]


class MilvusGallery:
    """The gallery of one model in a Milvus database, shared by every process that opens it.

    Args:
        connection: Server, credentials, database, collection prefix and timeout.
        spec: The active model's needs (id, dim, metrics, head, encoding dim).
        index: Index type and parameters (FLAT, IVF_FLAT or HNSW; softmax is always FLAT).
    """

    shared = True

    def __init__(self, connection: MilvusConfig, spec: GallerySpec, index: IndexConfig) -> None:
        if spec.encoding_dim is not None and spec.encoding_dim > MAX_DIM:
            raise ValueError(
                f"the Milvus gallery keeps comparator encodings as vectors of at most {MAX_DIM} values; "
                f"{spec.model_id} has encoding_dim={spec.encoding_dim}: use REID_GALLERY=embedded"
            )
        self.connection = connection
        self.spec = spec
        self.index = index
        self.model_id = spec.model_id
        self.encoding_dim = spec.encoding_dim
        self.rebuilt: list[str] = []  # Milvus keeps its indexes: nothing is rebuilt at start
        self._metrics = sorted(spec.metrics)
        kinds = [RAW, *(m for m in self._metrics if vector_kind(m) != RAW)]
        if spec.encoding_dim is not None:
            kinds.append(ENCODINGS)
        self._names = {k: collection_name(connection.collection_prefix, spec.model_id, k) for k in kinds}
        self._entries = entries_name(connection.collection_prefix)
        self._blocks = blocks_name(connection.collection_prefix)
        self._raw_models: dict[str, str | None] = {}  # collection name → model id of a raw collection
        self.db = MilvusConnection(connection)
        self._ids = IdBlocks(self.db, self._blocks)

    def _dim(self, kind: str) -> int:
        if kind == ENCODINGS and self.encoding_dim is not None:
            return self.encoding_dim
        return self.spec.dim if kind == RAW else index_dim(kind, self.spec.dim)

    def open(self) -> None:
        """Connect, create the database and any missing collection, and load every collection."""
        db = self.db
        db.connect()
        existing = set(db.names(f"{self.connection.collection_prefix}_"))
        for kind, name in self._names.items():
            if name not in existing:
                db.create(
                    name,
                    dim=self._dim(kind),
                    description=describe(self.model_id, kind),
                    index=index_params(kind, self.index)[0],
                    metric=metric_type(kind),
                )
            elif db.vector_dim(name) != self._dim(kind):
                raise ValueError(
                    f"Milvus collection {name} holds vectors of {db.vector_dim(name)} values, "
                    f"{self.model_id} needs {self._dim(kind)}: was the model re-exported under the same "
                    "name@version?"
                )
        flat = index_params(ENCODINGS, self.index)[0]
        for name, role in ((self._entries, "entries"), (self._blocks, "blocks")):
            if name not in existing:
                db.create(
                    name,
                    dim=PLACEHOLDER_DIM,
                    description=f"gallery {role}",
                    index=flat,
                    metric="L2",
                    role=role,
                )
        db.load([self._entries, self._blocks, *self._names.values()])
        c = self.connection
        prefix = c.collection_prefix
        logger.info("Milvus gallery %s open at %s (db %s, prefix %s)", self.model_id, c.uri, c.db, prefix)

    def close(self) -> None:
        """Close the connection (everything is already persisted in Milvus)."""
        self.db.close()

    def health(self) -> str | None:
        """None while Milvus answers, else why not."""
        try:
            self.db.call(self.db.client.get_server_version)
        except Exception as exc:
            return f"Milvus gallery unavailable: {exc}"
        return None

    # reads --------------------------------------------------------------------------------------------

    @property
    def metrics(self) -> list[str]:
        """The searchable scoring metrics, sorted."""
        return list(self._metrics)

    @property
    def size(self) -> int:
        """Searchable entries (those with an embedding for the active model)."""
        return self.db.count(self._names[RAW])

    def _raw_collections(self) -> dict[str, str]:
        """Every model's raw-embedding collection under this prefix: name → model id."""
        for name in self.db.names(self.connection.collection_prefix):
            if name not in self._raw_models:
                info = parse_description(self.db.description(name))
                self._raw_models[name] = info[0] if info and info[1] == RAW else None
        return {n: m for n, m in self._raw_models.items() if m is not None}

    def _models_of(self, ids: list[int]) -> dict[int, tuple[str, ...]]:
        found: dict[int, list[str]] = {int(i): [] for i in ids}
        for name, model_id in self._raw_collections().items():
            self.db.load([name])  # another model's collection may not be loaded
            for row in self.db.by_ids(name, ids, ["id"]):
                found[int(row["id"])].append(model_id)
        return {i: tuple(sorted(m)) for i, m in found.items()}

    def _entries_of(self, rows: list[dict[str, Any]]) -> list[GalleryEntry]:
        models = self._models_of([int(r["id"]) for r in rows])
        return [
            GalleryEntry(
                id=int(r["id"]),
                person_id=r["person_id"],
                camera_id=r["camera_id"] if r["has_camera"] else None,
                metadata=dict(r["metadata"] or {}),
                created=r["created"],
                has_image=False,
                models=models[int(r["id"])],
            )
            for r in rows
        ]

    def get(self, entry_id: int) -> GalleryEntry | None:
        """One entry, or None."""
        rows = self.db.by_ids(self._entries, [entry_id], _ENTRY_FIELDS)
        return self._entries_of(rows)[0] if rows else None

    def list_entries(self, person_id: str | None, offset: int, limit: int) -> tuple[list[GalleryEntry], int]:
        """A page of entries ordered by id, optionally of one person, and the total matching count."""
        expr = f"person_id == {quote(person_id)}" if person_id is not None else ""
        total = self.db.count(self._entries, expr)
        if offset >= total:
            return [], total
        last, skip = -1, offset
        while skip > 0 and skip + limit > QUERY_WINDOW:  # skip by primary key: Milvus caps offset + limit
            rows = self.db.query(self._entries, scoped(expr, last), ["id"], limit=min(skip, QUERY_WINDOW))
            if not rows:
                return [], total
            last, skip = max(int(r["id"]) for r in rows), skip - len(rows)
        rows = self.db.query(self._entries, scoped(expr, last), _ENTRY_FIELDS, offset=skip, limit=limit)
        return self._entries_of(sorted(rows, key=lambda r: int(r["id"]))), total

    def image(self, entry_id: int) -> bytes | None:
        """Always None: the Milvus gallery stores no images."""
        return None

    def missing_embeddings(self) -> list[tuple[int, bool]]:
        """Entries without an embedding for the active model (none has a stored image)."""
        have = {i for batch in self.db.walk(self._names[RAW]) for i in batch}
        return [(i, False) for batch in self.db.walk(self._entries) for i in batch if i not in have]

    def embedding(self, entry_id: int) -> np.ndarray | None:
        """The stored embedding of an entry for the active model, or None."""
        rows = self.db.by_ids(self._names[RAW], [entry_id], ["id", "vector"])
        return np.asarray(rows[0]["vector"], dtype=np.float32) if rows else None

    def embeddings(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored embeddings of ``ids`` for the active model: (ids found (M,), float32 (M, D)), by id."""
        rows = self.db.by_ids(self._names[RAW], ids, ["id", "vector"])
        vecs = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), self.spec.dim)
        return np.array([int(r["id"]) for r in rows], dtype=np.int64), vecs

    def encodings(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored comparator encodings of ``ids``: (ids found (M,), float32 (M, E)), ordered by id."""
        if self.encoding_dim is None:
            raise ValueError(f"model {self.model_id} is not pairwise: its gallery stores no encodings")
        rows = self.db.by_ids(self._names[ENCODINGS], ids, ["id", "vector"])
        vecs = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), self.encoding_dim)
        return np.array([int(r["id"]) for r in rows], dtype=np.int64), vecs

    def search(self, query: VectorQuery) -> list[list[Match]]:
        """Rank the gallery for each query embedding inside Milvus; the filters are a boolean expression
        evaluated inside the search, before the top-k cut. ``top_k`` is capped at Milvus' 16,384."""
        metric = query.metric_in(self._metrics)
        kind = vector_kind(metric)
        qvec, const = query.index_vectors(self.spec.head)
        if len(qvec) == 0:
            return []
        k = min(int(query.top_k), MAX_TOP_K)
        params = index_params(kind, self.index)[1]
        if "ef" in params:  # HNSW needs ef >= k
            params = {"ef": max(int(params["ef"]), k)}
        hits = self.db.call(
            self.db.client.search,
            self._names[kind],
            data=qvec.tolist(),
            limit=k,
            filter=search_filter(query.filters),
            output_fields=_LABELS,
            search_params={"metric_type": metric_type(kind), "params": params},
            consistency_level="Strong",
        )
        results: list[list[Match]] = []
        for row, c in zip(hits, const, strict=True):
            raw = np.array([[h["distance"] for h in row]], dtype=np.float64).reshape(1, -1)
            scores = index_scores(metric, raw, np.array([c]))[0].tolist()
            results.append([self._match(h, s) for h, s in zip(row, scores, strict=True)])
        return results

    @staticmethod
    def _match(hit: dict[str, Any], score: float) -> Match:
        entity = hit["entity"]
        camera = entity["camera_id"] if entity["has_camera"] else None
        return Match(id=int(hit["id"]), person_id=entity["person_id"], camera_id=camera, score=float(score))

    # writes -------------------------------------------------------------------------------------------

    def _write_vectors(
        self,
        ids: list[int],
        labels: list[dict[str, Any]],
        embeddings: np.ndarray,
        encodings: np.ndarray | None,
        replace: bool,
    ) -> None:
        for kind, name in self._names.items():
            if kind == ENCODINGS:
                assert encodings is not None
                vectors = np.asarray(encodings, np.float16).astype(np.float32)  # as the embedded store keeps
            elif kind == RAW:
                vectors = np.asarray(embeddings, np.float32)
            else:
                vectors = gallery_vectors(kind, embeddings, self.spec.head)
            rows = [
                {"id": i, **lab, "vector": v} for i, lab, v in zip(ids, labels, vectors.tolist(), strict=True)
            ]
            self.db.write(name, rows, replace=replace, row_bytes=4 * vectors.shape[1] + 64)

    def add(
        self, entries: list[NewEntry], embeddings: np.ndarray, encodings: np.ndarray | None = None
    ) -> list[int]:
        """Store entries with their vectors; returns their ids (new ones from this process's claimed block,
        or those the entries give)."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(entries) != len(embeddings):
            raise ValueError(f"{len(entries)} entries but {len(embeddings)} embeddings")
        check_encodings(self.encoding_dim, encodings, len(embeddings))
        if not entries:
            return []
        new = iter(self._ids.allocate(sum(e.id is None for e in entries)))
        ids = [next(new) if e.id is None else e.id for e in entries]
        now = datetime.now(timezone.utc).isoformat()
        created = [e.created or now for e in entries]
        labels = [
            {
                "person_id": e.person_id,
                "camera_id": e.camera_id or "",
                "has_camera": e.camera_id is not None,
                "created_s": created_seconds(when),
            }
            for e, when in zip(entries, created, strict=True)
        ]
        rows = [
            {"id": i, **lab, "metadata": e.metadata, "created": when, "vector": [0.0] * PLACEHOLDER_DIM}
            for i, lab, e, when in zip(ids, labels, entries, created, strict=True)
        ]
        self.db.write(self._entries, rows, replace=False, row_bytes=1024)
        try:
            self._write_vectors(ids, labels, embeddings, encodings, replace=False)
        except Exception:
            self._delete_everywhere(ids)
            raise
        return ids

    def set_embeddings(
        self, ids: list[int], embeddings: np.ndarray, encodings: np.ndarray | None = None
    ) -> None:
        """Store re-computed embeddings (and encodings) of existing entries for the active model."""
        check_encodings(self.encoding_dim, encodings, len(embeddings))
        rows = {int(r["id"]): r for r in self.db.by_ids(self._entries, ids, ["id", *_LABELS])}
        missing = [i for i in ids if int(i) not in rows]
        if missing:
            raise ValueError(f"no gallery entries with ids {missing[:5]}")
        labels = [{k: rows[int(i)][k] for k in _LABELS} for i in ids]
        embeddings = np.asarray(embeddings, np.float32)
        self._write_vectors([int(i) for i in ids], labels, embeddings, encodings, replace=True)

    def _delete_everywhere(self, ids: list[int]) -> None:
        """Delete ids from every model's collections first, then from the entries."""
        own = self.db.names(self.connection.collection_prefix)
        names = [n for n in own if n not in (self._entries, self._blocks)]
        for name in [*names, self._entries]:
            self.db.delete(name, ids)

    def delete(self, ids: list[int]) -> list[int]:
        """Delete entries everywhere (every model's vectors and encodings); returns the ids that existed."""
        found = [int(r["id"]) for r in self.db.by_ids(self._entries, ids, ["id"])]
        if found:
            self._delete_everywhere(found)
        return found

    def erase_created_before(self, cutoff: float, person_id: str | None = None) -> list[int]:
        """Erase every entry (of ``person_id``, when given) enrolled strictly before ``cutoff`` (UNIX
        seconds) from every collection (retention); returns the deleted ids."""
        where = SearchFilter(
            person_ids=None if person_id is None else frozenset({person_id}), created_before=cutoff
        )
        found = [i for batch in self.db.walk(self._entries, search_filter(where)) for i in batch]
        if found:
            self._delete_everywhere(found)
        return found

    def erase_person(self, person_id: str) -> list[int]:
        """Erase every trace of a person from every collection; returns the deleted ids."""
        expr = f"person_id == {quote(person_id)}"
        found = [i for batch in self.db.walk(self._entries, expr) for i in batch]
        if found:
            self._delete_everywhere(found)
        return found
