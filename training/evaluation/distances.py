"""Query × gallery distance matrices and per-pair scores between embeddings (numpy only).

Metrics (the ones compared in the Siamese bag-of-tricks paper): ``cosine`` (1 − cosine similarity),
``euclidean``, ``sqeuclidean``, ``correlation`` (1 − Pearson correlation: mean-centre each vector, then
cosine), ``cityblock`` (L1) and ``minkowski`` (Lp, parameter ``p``).

:func:`compute_distance` returns distances (smaller = more similar) for ranking, computed in chunks of query
rows so that memory stays bounded by ``chunk_size × G``. The inner-product metrics use one matrix product
per chunk in the inputs' precision (float32 embeddings stay float32, float64 stays float64; in float32 the
``‖q‖² + ‖g‖² − 2 q·g`` expansion leaves ~1e-4 relative noise on near-zero euclidean distances, pass float64
for exact ones); ``cityblock`` and ``minkowski`` go through :func:`scipy.spatial.distance.cdist`.

:func:`pair_scores` scores aligned pairs for verification: cosine and correlation come back as
*similarities* (higher = same person), the others as *distances* (lower = same person);
:func:`higher_is_better` says which.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

#: Every metric :func:`compute_distance` and :func:`pair_scores` accept.
METRICS: tuple[str, ...] = ("cosine", "euclidean", "sqeuclidean", "correlation", "cityblock", "minkowski")
#: Metrics whose :func:`pair_scores` are similarities (larger = more likely the same person).
_SIMILARITY_METRICS = frozenset({"cosine", "correlation"})
# Norms below this are treated as zero: a zero vector gets cosine similarity 0 with everything.
_EPS = 1e-12


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")


def higher_is_better(metric: str) -> bool:
    """True when :func:`pair_scores` for ``metric`` is a similarity (cosine, correlation).

    Raises:
        ValueError: Unknown metric (the message lists the valid ones).
    """
    _check_metric(metric)
    return metric in _SIMILARITY_METRICS


def _as_float_matrix(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_vectors × dim), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return arr


def _unit_rows(x: np.ndarray, *, center: bool) -> np.ndarray:
    if center:
        x = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, _EPS)


def compute_distance(
    query: np.ndarray,
    gallery: np.ndarray,
    metric: str,
    *,
    p: float = 3.0,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Distances between every query and every gallery embedding.

    Args:
        query: Q × D query embeddings.
        gallery: G × D gallery embeddings.
        metric: One of :data:`METRICS`.
        p: Exponent of the ``minkowski`` metric (> 0); ignored by the others.
        chunk_size: Query rows per chunk; peak extra memory is about ``chunk_size × G`` floats (times D for
            ``cityblock`` / ``minkowski`` inside scipy, which works row by row).

    Returns:
        Q × G float32 distances, smaller = more similar. Cosine / correlation distances are in [0, 2];
        a zero (or constant, for correlation) vector is at distance 1 from everything.

    Raises:
        ValueError: Unknown metric, non-2-D inputs, mismatched dimensions, ``p`` ≤ 0 or ``chunk_size`` < 1.
    """
    _check_metric(metric)
    q = _as_float_matrix(query, "query")
    g = _as_float_matrix(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery dimensions differ: {q.shape[1]} vs {g.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if metric == "minkowski" and not p > 0:
        raise ValueError(f"minkowski p must be > 0, got {p}")
    dtype = np.result_type(q.dtype, g.dtype)
    q, g = q.astype(dtype, copy=False), g.astype(dtype, copy=False)

    out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
    if metric in ("cosine", "correlation"):
        g_unit = _unit_rows(g, center=metric == "correlation")
    elif metric in ("euclidean", "sqeuclidean"):
        g_sq = np.einsum("ij,ij->i", g, g)
    for start in range(0, q.shape[0], chunk_size):
        q_chunk = q[start : start + chunk_size]
        if metric in ("cosine", "correlation"):
            block = 1.0 - _unit_rows(q_chunk, center=metric == "correlation") @ g_unit.T
            np.clip(block, 0.0, 2.0, out=block)
        elif metric in ("euclidean", "sqeuclidean"):
            q_sq = np.einsum("ij,ij->i", q_chunk, q_chunk)
            # ‖q‖² + ‖g‖² − 2 q·g can dip below zero by rounding; clamp before the square root.
            block = q_sq[:, None] + g_sq[None, :] - 2.0 * (q_chunk @ g.T)
            np.maximum(block, 0.0, out=block)
            if metric == "euclidean":
                np.sqrt(block, out=block)
        elif metric == "cityblock":
            block = cdist(q_chunk, g, metric="cityblock")
        else:
            block = cdist(q_chunk, g, metric="minkowski", p=p)
        out[start : start + len(q_chunk)] = block
    return out


def pair_scores(a: np.ndarray, b: np.ndarray, metric: str, *, p: float = 3.0) -> np.ndarray:
    """Score aligned pairs ``(a[i], b[i])``.

    Args:
        a: N × D embeddings.
        b: N × D embeddings, paired row by row with ``a``.
        metric: One of :data:`METRICS`.
        p: Exponent of the ``minkowski`` metric (> 0).

    Returns:
        N float64 scores: cosine similarity / Pearson correlation in [-1, 1] for ``cosine`` /
        ``correlation`` (higher = same person), a distance for the other metrics (lower = same person);
        see :func:`higher_is_better`.

    Raises:
        ValueError: Unknown metric, shapes that are not equal N × D, or ``p`` ≤ 0.
    """
    _check_metric(metric)
    x = _as_float_matrix(a, "a").astype(np.float64)
    y = _as_float_matrix(b, "b").astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape (N × D), got {x.shape} and {y.shape}")
    if metric == "minkowski" and not p > 0:
        raise ValueError(f"minkowski p must be > 0, got {p}")
    if metric in ("cosine", "correlation"):
        center = metric == "correlation"
        cos = np.einsum("ij,ij->i", _unit_rows(x, center=center), _unit_rows(y, center=center))
        return np.clip(cos, -1.0, 1.0)
    diff = x - y
    if metric == "sqeuclidean":
        return np.einsum("ij,ij->i", diff, diff)
    if metric == "euclidean":
        return np.linalg.norm(diff, axis=1)
    if metric == "cityblock":
        return np.abs(diff).sum(axis=1)
    return (np.abs(diff) ** p).sum(axis=1) ** (1.0 / p)
