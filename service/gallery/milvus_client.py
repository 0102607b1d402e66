"""A thin wrapper of ``pymilvus.MilvusClient`` for the gallery: timeouts, lost-server errors, Strong reads,
collection creation and loading, and paging past Milvus' query window.

``pymilvus`` is imported lazily (``pip install '.[milvus]'``), so the embedded store needs none of it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from service.gallery.milvus_layout import (
    BLOCK_BITS,
    BLOCKS,
    PLACEHOLDER_DIM,
    add_label_fields,
    ids_filter,
    owned,
    walk_ids,
)
from service.gallery.protocol import GalleryUnavailableError

logger = logging.getLogger(__name__)
T = TypeVar("T")
STRONG = "Strong"
_CHUNK = 1000  # ids per ``id in [...]`` expression
_LOST = ("unavailable", "connect", "deadline", "timeout", "timed out", "closed channel")


@dataclass(frozen=True)
class MilvusConfig:
    """Where the shared gallery lives (``REID_MILVUS_*``)."""

    uri: str = "http://localhost:19530"
    token: str = ""
    db: str = "default"
    collection_prefix: str = "reid"
    timeout_s: float = 10.0


def server_lost(exc: BaseException) -> bool:
    """True when a pymilvus error means the server cannot be reached (as opposed to a bad request)."""
    from pymilvus.exceptions import MilvusException, MilvusUnavailableException

    if isinstance(exc, MilvusUnavailableException):
        return True
    text = str(exc).lower()
    return isinstance(exc, MilvusException) and any(word in text for word in _LOST)


class MilvusConnection:
    """One client of one Milvus database.

    Args:
        config: Server, credentials, database and timeout.
    """

    def __init__(self, config: MilvusConfig) -> None:
        self.config = config
        self.client: Any = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One client call with the configured timeout; a lost server raises GalleryUnavailableError."""
        if self.client is None:
            raise GalleryUnavailableError("the Milvus gallery is not connected")
        try:
            return fn(*args, timeout=self.config.timeout_s, **kwargs)
        except Exception as exc:
            if server_lost(exc):
                raise GalleryUnavailableError(f"Milvus at {self.config.uri} is unreachable: {exc}") from exc
            raise

    def connect(self) -> None:
        """Connect, creating the database when it is not ``default`` and missing."""
        from pymilvus import MilvusClient

        c = self.config
        try:
            if c.db != "default":
                admin = MilvusClient(uri=c.uri, token=c.token, timeout=c.timeout_s)
                try:
                    if c.db not in admin.list_databases(timeout=c.timeout_s):
                        admin.create_database(c.db, timeout=c.timeout_s)
                finally:
                    admin.close()
            self.client = MilvusClient(uri=c.uri, token=c.token, db_name=c.db, timeout=c.timeout_s)
        except Exception as exc:
            if server_lost(exc):
                raise GalleryUnavailableError(f"Milvus at {c.uri} is unreachable: {exc}") from exc
            raise

    def close(self) -> None:
        """Release the client."""
        if self.client is not None:
            self.client.close()
            self.client = None

    def names(self, prefix: str) -> list[str]:
        """The gallery's collections under ``prefix``."""
        return [n for n in self.call(self.client.list_collections) if owned(prefix, n)]

    def description(self, name: str) -> str:
        """A collection's description."""
        return str(self.call(self.client.describe_collection, name).get("description", ""))

    def vector_dim(self, name: str) -> int | None:
        """Length of a collection's ``vector`` field."""
        info = self.call(self.client.describe_collection, name)
        dims = [int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector"]
        return dims[0] if dims else None

    def create(
        self,
        name: str,
        *,
        dim: int,
        description: str,
        index: dict[str, Any],
        metric: str,
        role: str = "vectors",
    ) -> None:
        """Create a collection (fields, ``vector``, its index) at Strong consistency, not loaded.

        Args:
            name: Collection name.
            dim: Vector length.
            description: Stored with the collection.
            index: ``{"index_type": ..., "params": {...}}``.
            metric: ``L2`` or ``IP``.
            role: ``vectors`` (id and labels), ``entries`` (plus metadata and created) or ``blocks`` (id
                block claims: an auto id, the block and its claimant).
        """
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=role == "blocks", description=description)
        if role == "blocks":
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("block", DataType.INT64)
            schema.add_field("owner", DataType.VARCHAR, max_length=64)
        else:
            add_label_fields(schema, DataType)
        if role == "entries":
            schema.add_field("metadata", DataType.JSON)
            schema.add_field("created", DataType.VARCHAR, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = self.client.prepare_index_params()
        params.add_index("vector", metric_type=metric, **index)
        try:
            self.call(self.client.create_collection, name, schema=schema, consistency_level=STRONG)
            self.call(self.client.create_index, name, params)
        except GalleryUnavailableError:
            raise
        except Exception:  # another worker starting at the same moment may have created it
            if name not in self.call(self.client.list_collections):
                raise
        logger.info("created Milvus collection %s (%s, %d values)", name, index["index_type"], dim)

    def load(self, names: list[str], wait_s: float = 120.0) -> None:
        """Load collections (all at once) and wait until they are searchable."""
        pending = [n for n in names if not self.loaded(n)]
        for name in pending:
            self.call(self.client.load_collection, name, _async=True)
        deadline = time.monotonic() + wait_s
        while pending:
            pending = [n for n in pending if not self.loaded(n)]
            if pending and time.monotonic() > deadline:
                raise GalleryUnavailableError(f"Milvus collections {pending} not loaded in {wait_s:.0f} s")
            time.sleep(0.05 if pending else 0)

    def loaded(self, name: str) -> bool:
        """Whether a collection is loaded."""
        from pymilvus.client.types import LoadState

        return bool(self.call(self.client.get_load_state, name)["state"] == LoadState.Loaded)

    def query(self, name: str, expr: str, fields: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        """Rows matching ``expr`` at Strong consistency."""
        rows = self.call(
            self.client.query, name, filter=expr, output_fields=fields, consistency_level=STRONG, **kwargs
        )
        return list(rows)

    def count(self, name: str, expr: str = "") -> int:
        """Rows matching ``expr``."""
        return int(self.query(name, expr, ["count(*)"])[0]["count(*)"])

    def walk(self, name: str, expr: str = "") -> Iterator[list[int]]:
        """Every id matching ``expr``, ascending, in batches."""
        return walk_ids(lambda e, n: self.query(name, e, ["id"], limit=n), expr)

    def by_ids(self, name: str, ids: list[int], fields: list[str]) -> list[dict[str, Any]]:
        """The rows of ``ids`` that exist, ordered by id."""
        unique = sorted({int(i) for i in ids})
        rows: list[dict[str, Any]] = []
        for start in range(0, len(unique), _CHUNK):
            rows.extend(self.query(name, ids_filter(unique[start : start + _CHUNK]), fields))
        return sorted(rows, key=lambda r: int(r["id"]))

    def delete(self, name: str, ids: list[int]) -> None:
        """Delete rows by primary key."""
        for start in range(0, len(ids), _CHUNK):
            self.call(self.client.delete, name, ids=ids[start : start + _CHUNK])

    def write(self, name: str, rows: list[dict[str, Any]], *, replace: bool, row_bytes: int) -> list[int]:
        """Insert (or upsert) rows in requests of about 16 MiB; returns the primary keys."""
        per_call = max(1, (16 << 20) // max(row_bytes, 1))
        write = self.client.upsert if replace else self.client.insert
        keys: list[int] = []
        for start in range(0, len(rows), per_call):
            result = self.call(write, name, rows[start : start + per_call])
            keys.extend(int(i) for i in result.get("ids", []))
        return keys


class IdBlocks:
    """Gallery ids unique across every process: blocks of 2^24 ids claimed in the ``blocks`` collection (see
    :mod:`service.gallery.milvus_layout`), handed out in order within this process.

    Args:
        db: The connection.
        name: The blocks collection.
    """

    def __init__(self, db: MilvusConnection, name: str) -> None:
        self.db = db
        self.name = name
        self._lock = threading.Lock()
        self._next_id = self._block_end = 0  # ids left in this process's block: [next, end)

    def _claim(self) -> int:
        """A block of 2^24 ids no other process holds (see :mod:`service.gallery.milvus_layout`)."""
        for _ in range(16):
            block, owner = 1 + secrets.randbelow(BLOCKS - 1), uuid.uuid4().hex
            row = {"block": block, "owner": owner, "vector": [0.0] * PLACEHOLDER_DIM}
            self.db.write(self.name, [row], replace=False, row_bytes=128)
            if {r["owner"] for r in self.db.query(self.name, f"block == {block}", ["owner"])} == {owner}:
                return block
        raise RuntimeError("could not claim a block of gallery ids in 16 draws")

    def allocate(self, n: int) -> list[int]:
        """``n`` new gallery ids, unique across every process sharing the gallery."""
        ids: list[int] = []
        with self._lock:
            while len(ids) < n:
                if self._next_id == self._block_end:
                    self._next_id = self._claim() << BLOCK_BITS
                    self._block_end = self._next_id + (1 << BLOCK_BITS)
                take = min(n - len(ids), self._block_end - self._next_id)
                ids.extend(range(self._next_id, self._next_id + take))
                self._next_id += take
        return ids
