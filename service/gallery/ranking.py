"""One search call for every ranking the API offers: per image or per tracklet, per entry or per person.

``group_by_person``: persons ranked by their best entry; the search widens until ``top_k`` persons (and the
first person after them) are found or the (filtered) gallery is exhausted, so person rows are exact for flat
indexes. A person's ``entries`` counts its entries ranked above every person not returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from service.contract.scoring import get as get_metric
from service.gallery.pairwise import Compare, pairwise_search
from service.gallery.protocol import GalleryStore, Match, VectorQuery


@dataclass(frozen=True)
class PersonMatch:
    """One person in a person-level ranking.

    Attributes:
        person_id: The person.
        score: The best score of the person's entries.
        id: The entry that gave it.
        camera_id: That entry's camera.
        entries: The person's entries ranked above every person not returned.
    """

    person_id: str
    score: float
    id: int
    camera_id: str | None
    entries: int


def group_by_person(ranking: list[Match], top_k: int) -> tuple[list[PersonMatch], bool]:
    """Persons of an entry ranking (best first), and whether the ranking was deep enough to settle them
    (a person beyond ``top_k`` was seen)."""
    best: dict[str, Match] = {}
    counts: dict[str, int] = {}
    for m in ranking:
        if m.person_id not in best:
            if len(best) == top_k:
                return _persons(best, counts), True
            best[m.person_id] = m
        counts[m.person_id] = counts.get(m.person_id, 0) + 1
    return _persons(best, counts), False


def _persons(best: dict[str, Match], counts: dict[str, int]) -> list[PersonMatch]:
    return [PersonMatch(p, m.score, m.id, m.camera_id, counts[p]) for p, m in best.items()]


def rank_persons(
    search: Callable[[int], list[list[Match]]], top_k: int, size: int
) -> list[list[PersonMatch]]:
    """Person rankings from an entry search ``search(k)`` that returns the k best entries per query.

    The depth starts at ``max(4 * top_k, 64)`` and grows ×4 until every query's ranking is settled.
    """
    k = max(1, min(size, max(4 * top_k, 64)))
    while True:
        rows = search(k)
        grouped = [group_by_person(row, top_k) for row in rows]
        if k >= size or all(done or len(row) < k for (_, done), row in zip(grouped, rows, strict=True)):
            return [persons for persons, _ in grouped]
        k = min(size, 4 * k)


def entry_search(
    gallery: GalleryStore,
    query: VectorQuery,
    encodings: np.ndarray | None,
    *,
    compare: Compare | None = None,
    shortlist: int = 100,
) -> Callable[[int], list[list[Match]]]:
    """``search(k)``: the k best entries per query (one row per query, or one row for a tracklet): ``query``
    with its ``top_k`` set to k.

    Args:
        gallery: The gallery.
        query: Metric, (N, D) query embeddings (descriptors for pairwise models), filters, ``aggregate``;
            ``pairwise`` re-ranks with ``compare`` when ``encodings`` are given.
        encodings: (N, E) comparator encodings (pairwise models), else None.
        compare: The pairwise comparator.
        shortlist: Pairwise: entries shortlisted by descriptor per query (raised to k).
    """
    rerank = get_metric(query.metric).needs_comparator and compare is not None and encodings is not None

    def search(k: int) -> list[list[Match]]:
        if rerank:
            assert compare is not None and encodings is not None
            return pairwise_search(gallery, compare, replace(query, top_k=k), encodings, shortlist=shortlist)
        return gallery.search(replace(query, top_k=k))

    return search
