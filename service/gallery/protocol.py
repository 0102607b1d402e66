"""The gallery store as a ``Protocol``: what the service needs from wherever the gallery lives.

Two stores implement it: :class:`service.gallery.gallery.Gallery` (``REID_GALLERY=embedded``: SQLite + one
FAISS index per metric, in one process) and :class:`service.gallery.milvus.MilvusGallery`
(``REID_GALLERY=milvus``: a Milvus server shared by every worker and replica). Both pass the same test suite
(``tests/service/gallery``). :func:`service.gallery.factory.create_gallery` picks one from the settings.

A store holds entries (``person_id``, ``camera_id``, JSON metadata, creation time, optionally the image) with
one embedding per model id, plus, for pairwise models, the comparator encoding of each entry. Gallery ids are
int64, never reused, and unique across every process sharing the store. Searches rank entries by one scoring
metric of :mod:`service.contract.scoring` (exactly for flat indexes and softmax); an acknowledged write is
seen by the next search of any process sharing the store.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from service.contract.scoring import HeadWeights, mean_query_vectors, query_vectors
from service.gallery.filters import SearchFilter

__all__ = [
    "GalleryEntry",
    "GalleryStore",
    "GalleryUnavailableError",
    "Match",
    "NewEntry",
    "SearchFilter",
    "VectorQuery",
]


@dataclass(frozen=True)
class Match:
    """One search result."""

    id: int
    person_id: str
    camera_id: str | None
    score: float


@dataclass(frozen=True)
class GalleryEntry:
    """One gallery entry (without its embeddings)."""

    id: int
    person_id: str
    camera_id: str | None
    metadata: dict[str, Any]
    created: str
    has_image: bool
    models: tuple[str, ...]


@dataclass(frozen=True)
class NewEntry:
    """What is enrolled for one image. ``id`` and ``created`` are given only when an entry is copied from
    another store (``reid gallery copy``): they are kept as given, and the caller guarantees the id is free;
    otherwise the store assigns a new id and the current time."""

    person_id: str
    camera_id: str | None
    metadata: dict[str, Any]
    image: bytes | None
    id: int | None = None
    created: str | None = None


@dataclass(frozen=True)
class VectorQuery:
    """One gallery search: rank the entries for each raw query embedding.

    Attributes:
        metric: One of the store's metrics.
        embeddings: Raw query embeddings (N, D).
        top_k: Results per row.
        filters: Which entries may be returned: applied inside the search, before the top-k cut (not by
            over-fetching), so a flat index stays exact.
        aggregate: The embeddings are one person (a tracklet): one row, ranked by
            :func:`service.contract.scoring.mean_query_vectors`.
    """

    metric: str
    embeddings: np.ndarray
    top_k: int
    filters: SearchFilter = field(default_factory=SearchFilter)
    aggregate: bool = False

    def metric_in(self, available: Collection[str]) -> str:
        """The query's metric, checked against a store's metrics.

        Raises:
            ValueError: The store does not index the metric.
        """
        if self.metric not in available:
            raise ValueError(f"metric {self.metric!r} is not available; choose one of {sorted(available)}")
        return self.metric

    def index_vectors(self, head: HeadWeights | None) -> tuple[np.ndarray, np.ndarray]:
        """What the metric's index is searched with: (vectors (N, index dim), per-row constants (N,)), see
        :func:`service.contract.scoring.query_vectors`; one row when ``aggregate``."""
        to_query = mean_query_vectors if self.aggregate else query_vectors
        return to_query(self.metric, np.asarray(self.embeddings, np.float32), head)


@dataclass(frozen=True)
class GallerySpec:
    """What the active model asks of the gallery.

    Attributes:
        model_id: ``name@version`` of the active model.
        dim: Embedding length.
        metrics: Scoring metrics to index (``softmax`` needs ``head``; ``pairwise`` needs ``encoding_dim``).
        head: Verification-head weights for exact softmax search.
        encoding_dim: Length of the comparator encodings kept per entry (pairwise models only).
    """

    model_id: str
    dim: int
    metrics: list[str]
    head: HeadWeights | None = None
    encoding_dim: int | None = None


def check_encodings(encoding_dim: int | None, encodings: np.ndarray | None, rows: int) -> None:
    """Encodings are given exactly for pairwise models, one row of ``encoding_dim`` values per entry.

    Raises:
        ValueError: Encodings missing for a pairwise model, given for another, or of the wrong shape.
    """
    if (encodings is None) != (encoding_dim is None):
        raise ValueError(
            "encodings are required for a pairwise model and only allowed there "
            f"(encoding_dim={encoding_dim}, got {'none' if encodings is None else 'encodings'})"
        )
    if encodings is not None and encodings.shape != (rows, encoding_dim):
        raise ValueError(f"encodings have shape {encodings.shape}, expected ({rows}, {encoding_dim})")


class GalleryUnavailableError(RuntimeError):
    """The store cannot be reached right now (a shared store's server is down); retry later."""


@runtime_checkable
class GalleryStore(Protocol):
    """Enrol, read, delete and search the gallery entries of one model.

    Attributes:
        model_id: ``name@version`` of the active model (embeddings are stored per model id).
        encoding_dim: Length of the comparator encodings kept per entry (pairwise models), else None.
        shared: True when several processes may open the store at once (``reid serve --workers N``).
        rebuilt: What :meth:`open` had to rebuild, and why (reported by ``/ready``'s ``startup``).
    """

    model_id: str
    encoding_dim: int | None
    shared: bool
    rebuilt: list[str]

    def open(self) -> None:
        """Connect / load; raises when the store cannot be used."""

    def close(self) -> None:
        """Persist what needs persisting and release the store."""

    @property
    def metrics(self) -> list[str]:
        """The scoring metrics the store can search, sorted."""

    @property
    def size(self) -> int:
        """Searchable entries (those with an embedding for the active model)."""

    def health(self) -> str | None:
        """None while the store is usable, else why not (checked by ``/ready``)."""

    def add(
        self, entries: list[NewEntry], embeddings: np.ndarray, encodings: np.ndarray | None = None
    ) -> list[int]:
        """Store entries with their embeddings (and pairwise encodings); returns their ids (new ones, or those
        the entries give)."""

    def set_embeddings(
        self, ids: list[int], embeddings: np.ndarray, encodings: np.ndarray | None = None
    ) -> None:
        """Store re-computed embeddings (and encodings) of existing entries for the active model."""

    def delete(self, ids: list[int]) -> list[int]:
        """Delete entries everywhere; returns the ids that existed."""

    def erase_person(self, person_id: str) -> list[int]:
        """Erase every trace of a person; returns the deleted ids."""

    def erase_created_before(self, cutoff: float, person_id: str | None = None) -> list[int]:
        """Erase every entry (of ``person_id``, when given) enrolled strictly before ``cutoff`` (UNIX
        seconds), with the guarantees of :meth:`erase_person` (retention); returns the deleted ids."""

    def get(self, entry_id: int) -> GalleryEntry | None:
        """One entry, or None."""

    def list_entries(self, person_id: str | None, offset: int, limit: int) -> tuple[list[GalleryEntry], int]:
        """A page of entries ordered by id, optionally of one person, and the total matching count."""

    def image(self, entry_id: int) -> bytes | None:
        """The stored image bytes of an entry, if any."""

    def missing_embeddings(self) -> list[tuple[int, bool]]:
        """Entries without an embedding for the active model: (id, has stored image)."""

    def embedding(self, entry_id: int) -> np.ndarray | None:
        """The stored embedding of an entry for the active model, or None."""

    def embeddings(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored embeddings of ``ids`` for the active model: (ids found (M,), float32 (M, D)), by id."""

    def encodings(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored comparator encodings of ``ids``: (ids found int64 (M,), float32 (M, E)), ordered by id;
        ids without one (deleted meanwhile) are left out."""

    def search(self, query: VectorQuery) -> list[list[Match]]:
        """Rank the gallery for each of the query's embeddings (exactly on a flat index); ``metric`` must be
        one of :attr:`metrics`."""
