"""Search for pairwise models: a FAISS shortlist by descriptor, re-ranked by the comparator.

For each query the ``pairwise`` index (L2-normalized descriptors, inner product = cosine) gives the best
``shortlist`` gallery entries that pass the filters (filters apply before the cut, see
:meth:`GalleryStore.search`); the comparator then scores the query's encoding against each shortlisted entry's
stored encoding, and the shortlist is sorted by that score. With ``shortlist`` ≥ the gallery size this is
exhaustive comparator scoring. A tracklet (``aggregate``) is shortlisted by its mean descriptor (mean
cosine) and each shortlisted entry gets the mean comparator score over the tracklet's images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from service.gallery.protocol import GalleryStore, Match, VectorQuery

#: Scores (N,) of encoding pairs (rows of two (N, E) arrays); higher = same person.
Compare = Callable[[np.ndarray, np.ndarray], np.ndarray]


def rerank(
    shortlist: list[Match],
    query_encoding: np.ndarray,
    gallery_ids: np.ndarray,
    gallery_encodings: np.ndarray,
    compare: Compare,
    top_k: int,
) -> list[Match]:
    """Score one query's shortlisted entries with the comparator and sort them.

    Args:
        shortlist: The query's shortlisted matches (their scores are replaced).
        query_encoding: (E,) encoding of the query, or (Q, E) encodings of a tracklet's images (the score is
            then the mean comparator score over them).
        gallery_ids: (M,) ids whose encodings are given; shortlisted ids not among them are dropped (they
            were deleted after the shortlist was taken).
        gallery_encodings: (M, E) encodings of ``gallery_ids``.
        compare: The comparator.
        top_k: Results kept.

    Returns:
        At most ``top_k`` matches, highest comparator score first (ties: lower id first).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    row_of = {int(i): r for r, i in enumerate(gallery_ids.tolist())}
    kept = [m for m in shortlist if m.id in row_of]
    if not kept:
        return []
    rows = np.array([row_of[m.id] for m in kept], dtype=np.int64)
    queries = np.asarray(query_encoding, dtype=np.float32)
    queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
    candidates = gallery_encodings[rows]
    scores = np.zeros(len(kept), dtype=np.float64)
    for query in queries:  # broadcast: no copy, compare copies per chunk
        pairs = np.broadcast_to(query.reshape(1, -1), (len(kept), queries.shape[1]))
        scores += np.asarray(compare(pairs, candidates), dtype=np.float64)
    scores /= len(queries)
    ids = np.array([m.id for m in kept], dtype=np.int64)
    order = np.lexsort((ids, -scores))[:top_k]
    return [
        Match(id=kept[i].id, person_id=kept[i].person_id, camera_id=kept[i].camera_id, score=float(scores[i]))
        for i in order.tolist()
    ]


def pairwise_search(
    gallery: GalleryStore, compare: Compare, query: VectorQuery, encodings: np.ndarray, *, shortlist: int
) -> list[list[Match]]:
    """Rank the gallery for each query by the comparator over its descriptor shortlist.

    Queries are re-ranked one at a time, so memory stays at one shortlist of encodings (encodings of
    multi-level models are large: tens of thousands of values each).

    Args:
        gallery: A gallery with a ``pairwise`` index and stored encodings.
        compare: The comparator (``PairwiseModel.compare``, which chunks by ``comparator_max_batch``).
        query: (Q, D) query descriptors as the embeddings, results per query, the filters (applied before the
            shortlist is cut) and ``aggregate`` (one ranking by the mean comparator score over the queries);
            its metric is taken to be ``pairwise``.
        encodings: (Q, E) query encodings.
        shortlist: Entries shortlisted per query by descriptor (raised to ``top_k`` when smaller).

    Raises:
        ValueError: ``shortlist`` or ``top_k`` below 1, mismatched query arrays, or a gallery without a
            ``pairwise`` index.
    """
    top_k = query.top_k
    if shortlist < 1:
        raise ValueError(f"shortlist must be >= 1, got {shortlist}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if len(query.embeddings) != len(encodings):
        raise ValueError(f"{len(query.embeddings)} query descriptors but {len(encodings)} query encodings")
    shortlists = gallery.search(replace(query, metric="pairwise", top_k=max(shortlist, top_k)))
    per_row = [encodings] if query.aggregate else list(encodings)
    results: list[list[Match]] = []
    for row, one in zip(shortlists, per_row, strict=True):
        found, gallery_encodings = gallery.encodings([m.id for m in row])
        results.append(rerank(row, one, found, gallery_encodings, compare, top_k))
    return results
