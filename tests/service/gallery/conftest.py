"""The gallery suite runs over every store: ``make_gallery`` opens an embedded (SQLite + FAISS) or a Milvus
gallery (the session's real Milvus server) behind the same protocol.

Creating a Milvus collection takes about a second (index + load), so Milvus galleries reuse their collections
across tests: each test's galleries live under a prefix named after their shape (or an explicit
``namespace``), emptied the first time the test opens it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.contract.scoring import HeadWeights
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import GallerySpec, GalleryStore

STORES = ["embedded", "milvus"]
DIM = 16
MakeGallery = Callable[..., GalleryStore]


def _clear_milvus(gallery: GalleryStore, prefix: str) -> None:
    from service.gallery.milvus import MilvusGallery

    assert isinstance(gallery, MilvusGallery)
    names = gallery.db.names(prefix)
    gallery.db.load(names)
    for name in names:
        gallery.db.call(gallery.db.client.delete, name, filter="id >= 0")


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store under test."""
    kind: str = request.param
    return kind


@pytest.fixture
def make_gallery(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeGallery]:
    """``make_gallery(metrics=..., head=..., model_id=..., index_type=..., encoding_dim=..., namespace=...)``:
    an opened gallery of the store under test. Galleries of one ``namespace`` share their store (the same
    data dir or Milvus prefix), as a restarted or second process would."""
    opened: list[GalleryStore] = []
    cleared: set[str] = set()
    uri = request.getfixturevalue("milvus_uri") if store_kind == "milvus" else None

    def make(
        *,
        metrics: list[str],
        head: HeadWeights | None = None,
        model_id: str = "test@1",
        dim: int = DIM,
        index_type: str = "flat",
        encoding_dim: int | None = None,
        namespace: str | None = None,
    ) -> GalleryStore:
        spec = GallerySpec(model_id=model_id, dim=dim, metrics=metrics, head=head, encoding_dim=encoding_dim)
        config = IndexConfig(index_type=index_type, ivf_nlist=8, ivf_nprobe=8)
        shape = repr((model_id, dim, sorted(metrics), head is None, index_type, encoding_dim))
        space = namespace or hashlib.sha256(shape.encode()).hexdigest()[:10]
        gallery: GalleryStore
        if uri is None:
            gallery = Gallery(
                tmp_path / space,
                model_id=model_id,
                dim=dim,
                metrics=metrics,
                head=head,
                config=config,
                snapshot_every=10_000,
                encoding_dim=encoding_dim,
            )
        else:
            from service.gallery.milvus import MilvusGallery
            from service.gallery.milvus_client import MilvusConfig

            prefix = f"t_{space}"
            connection = MilvusConfig(uri=uri, collection_prefix=prefix, timeout_s=60.0)
            gallery = MilvusGallery(connection, spec, config)
        gallery.open()
        if uri is not None and space not in cleared:
            _clear_milvus(gallery, f"t_{space}")
            cleared.add(space)
        opened.append(gallery)
        return gallery

    yield make
    for gallery in opened:
        with contextlib.suppress(sqlite3.ProgrammingError):  # an embedded gallery the test closed already
            gallery.close()
