"""Query × gallery distance matrices for ranking (numpy only), from the scores of
:mod:`service.contract.scoring`.

Metrics: every metric that scores two plain embeddings (:data:`METRICS`: ``cosine``, ``correlation``,
``euclidean``, and the evaluation-only ``cityblock`` and ``minkowski`` — the ones compared in the Siamese
bag-of-tricks paper). A similarity ``s`` becomes the distance ``1 − s`` (cosine and correlation distances lie
in [0, 2]), a distance stays itself, so ranking by distance ranks by the service's score.

:func:`compute_distance` works in chunks of query rows so that memory stays bounded by ``chunk_size × G``,
in the inputs' precision (see :func:`service.contract.scoring.score_matrix`).
"""

from __future__ import annotations

import numpy as np

from service.contract.scoring import EMBEDDING_METRICS, HeadWeights, get, score_matrix
from training.checks import at_least

#: Every metric :func:`compute_distance` accepts without a verification head.
METRICS: tuple[str, ...] = EMBEDDING_METRICS


def _as_float_matrix(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_vectors × dim), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return arr


def compute_distance(
    query: np.ndarray,
    gallery: np.ndarray,
    metric: str,
    *,
    p: float = 3.0,
    chunk_size: int = 4096,
    head: HeadWeights | None = None,
) -> np.ndarray:
    """Distances between every query and every gallery embedding.

    Args:
        query: Q × D query embeddings.
        gallery: G × D gallery embeddings.
        metric: One of :data:`METRICS`, or ``softmax`` with ``head`` (distance ``1 − p(same)``).
        p: Exponent of the ``minkowski`` metric (> 0); ignored by the others.
        chunk_size: Query rows per chunk; peak extra memory is about ``chunk_size × G`` floats (times D for
            ``cityblock`` / ``minkowski`` inside scipy, which works row by row).
        head: The verification head weights (``softmax`` only).

    Returns:
        Q × G float32 distances, smaller = more similar. Cosine / correlation distances are in [0, 2];
        a zero (or constant, for correlation) vector is at distance 1 from everything.

    Raises:
        ValueError: Unknown metric, non-2-D inputs, mismatched dimensions, ``p`` ≤ 0 or ``chunk_size`` < 1.
    """
    higher = get(metric).higher_is_better
    q = _as_float_matrix(query, "query")
    g = _as_float_matrix(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery dimensions differ: {q.shape[1]} vs {g.shape[1]}")
    at_least("chunk_size", chunk_size, 1)
    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    for start in range(0, q.shape[0], chunk_size):
        block = score_matrix(metric, q[start : start + chunk_size], g, head, p=p)
        out[start : start + len(block)] = 1.0 - block if higher else block
    return out
