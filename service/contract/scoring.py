"""Scoring modes, defined once (numpy only): one registered :class:`Metric` per name.

Each metric states the vectors its index holds, the query vector (and per-query constant), the pair score,
its direction, what its threshold means, whether it needs the verification head or the comparator, and whether
the service offers it. Evaluation (``training/evaluation``), calibration, export and the service all score
through the functions below, so a threshold means at serving time what it meant at calibration.

* ``cosine``: L2-normalized inner product.
* ``correlation``: mean-centred, then L2-normalized inner product (Pearson correlation).
* ``euclidean``: L2 distance between the embeddings (lower is more similar).
* ``softmax``: p(same) of the verification head. Its same-minus-different logit is
  ``Σ wᵢ(qᵢ − gᵢ)² + b = [Σ wᵢqᵢ² + b] + ⟨(−2 w⊙q, 1), (g, Σ wᵢgᵢ²)⟩``, so storing the augmented gallery
  vector ``(g, Σ wᵢgᵢ²)`` in an inner-product index ranks the whole gallery by the head exactly, and
  ``p = sigmoid(logit)`` is monotone in the logit.
* ``pairwise``: the comparator's score (``comparator.onnx``, :mod:`service.inference.pairwise`); its index
  holds the L2-normalized descriptors, searched by cosine for the shortlist the comparator re-ranks.
* ``cityblock`` / ``minkowski`` (evaluation only): L1 / Lp distance between the embeddings.

A tracklet (several images of one person, ``aggregate=mean``) is searched as one query by
:func:`mean_query_vectors`: the mean of the images' query vectors in the metric's index space, so the index
score is the mean of the per-image scores where the score is linear there. ``cosine`` / ``correlation`` /
``pairwise`` shortlist: the mean of the L2-normalized (centred) embeddings, score = mean cosine
(correlation); ``euclidean``: the centroid plus the images' spread, score = root-mean-square distance;
``softmax``: score = sigmoid of the mean logit (the head's logit is linear in the index space, its probability
is not, so the mean is taken over logits and the search stays exact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from service.contract.registry import Registry
from service.contract.score_math import (
    HeadWeights,
    center_normalize,
    centred_unit,
    identity,
    l2_normalize,
    lp_matrix,
    lp_pairs,
    sigmoid,
    softmax_gallery,
    softmax_logits,
    softmax_query,
    unit,
)

__all__ = [  # the scoring API (the normalizations and the head's algebra come from score_math)
    "EMBEDDING_METRICS", "METRICS", "SERVED_EMBEDDING_METRICS", "SERVED_METRICS", "HeadWeights", "Metric",
    "MetricName", "ServedMetric", "center_normalize", "describe", "gallery_vectors", "get",
    "higher_is_better", "index_dim", "index_scores", "is_same", "l2_normalize", "mean_query_vectors",
    "pair_scores", "query_vectors", "register", "score_matrix", "sigmoid", "softmax_logits",
]

#: The metrics the service offers (request bodies, manifests).
ServedMetric = Literal["cosine", "correlation", "euclidean", "softmax", "pairwise"]
#: Every registered metric: the served ones and the evaluation-only distances.
MetricName = Literal[ServedMetric, "cityblock", "minkowski"]
@dataclass(frozen=True)
class Metric:
    """One scoring mode.

    Attributes:
        name: The name in requests, manifests and configs.
        pair_score: What the score of a pair (a, b) is.
        indexes: What the gallery index stores per entry ('' when it is not served).
        query: The query vector searched in that index and the per-query constant added to its results.
        higher_is_better: True for similarities (same person iff score ≥ threshold), False for distances.
        threshold: What a threshold on this score means (OpenAPI and README text).
        served: Offered by the service (else evaluation only).
        needs_head: Needs the verification head weights (siamese models).
        needs_comparator: Scored by ``comparator.onnx`` (pairwise models); :func:`pair_scores` refuses it.
        inner_product: Its index ranks by inner product (else by squared L2 distance).
        exact_index: Its index must be exact (flat): approximate indexes would not rank by this score.
        takes_p: An evaluation-only Lp distance whose exponent is the caller's ``p`` (else L1).
    """

    name: str
    pair_score: str
    indexes: str
    query: str
    higher_is_better: bool
    threshold: str
    served: bool = True
    needs_head: bool = False
    needs_comparator: bool = False
    inner_product: bool = True
    exact_index: bool = False
    takes_p: bool = False
    _vectors: Callable[[np.ndarray], np.ndarray] | None = None

    def direction(self) -> str:
        """``≥`` or ``≤``: the side of the threshold on which a pair is the same person."""
        return "≥" if self.higher_is_better else "≤"


_REGISTRY: Registry[Metric] = Registry("metric", allowed=get_args(MetricName))
#: Add a metric (a new metric also adds its name to :data:`MetricName`); a name taken raises ``ValueError``.
register = _REGISTRY.add


register(Metric(
    name="cosine", pair_score="cosine similarity of the embeddings, in [-1, 1]",
    indexes="L2-normalized embeddings", query="the L2-normalized embedding (constant 0)",
    higher_is_better=True, threshold="same person iff cosine similarity ≥ threshold", _vectors=unit,
))
register(Metric(
    name="correlation", pair_score="Pearson correlation of the embeddings, in [-1, 1]",
    indexes="mean-centred, L2-normalized embeddings", query="the mean-centred, L2-normalized embedding",
    higher_is_better=True, threshold="same person iff correlation ≥ threshold", _vectors=centred_unit,
))
register(Metric(
    name="euclidean", pair_score="L2 distance between the embeddings", indexes="raw embeddings",
    query="the raw embedding; the index's squared L2 distance is square-rooted", higher_is_better=False,
    threshold="same person iff L2 distance ≤ threshold", inner_product=False, _vectors=identity,
))
register(Metric(
    name="softmax", pair_score="p(same) of the verification head, sigmoid(Σ w(a − b)² + b)",
    indexes="augmented embeddings (g, Σ w·g²)", query="(−2 w⊙q, 1), constant Σ w·q² + b; sigmoid of the sum",
    higher_is_better=True, threshold="same person iff p(same) ≥ threshold", needs_head=True, exact_index=True,
))
register(Metric(
    name="pairwise", pair_score="the comparator's score of the two encodings (comparator.onnx)",
    indexes="L2-normalized descriptors (the cosine shortlist the comparator re-ranks)",
    query="the L2-normalized descriptor, plus the encoding for the comparator", higher_is_better=True,
    threshold="same person iff comparator score ≥ threshold", needs_comparator=True, _vectors=unit,
))
register(Metric(
    name="cityblock", pair_score="L1 distance between the embeddings", indexes="", query="",
    higher_is_better=False, threshold="same person iff L1 distance ≤ threshold", served=False,
))
register(Metric(
    name="minkowski", pair_score="Lp distance between the embeddings (p > 0)", indexes="", query="",
    higher_is_better=False, threshold="same person iff Lp distance ≤ threshold", served=False, takes_p=True,
))

#: Every metric name, in registry order.
METRICS: tuple[str, ...] = tuple(_REGISTRY.names())
#: The metrics the service offers.
SERVED_METRICS: tuple[str, ...] = tuple(m.name for m in _REGISTRY.values() if m.served)
#: The metrics that score two plain embeddings (no head, no comparator): what ``reid eval --metric`` ranks by.
EMBEDDING_METRICS: tuple[str, ...] = tuple(
    m.name for m in _REGISTRY.values() if not (m.needs_head or m.needs_comparator)
)
#: The served metrics of an embedding model (calibrated for every exported model).
SERVED_EMBEDDING_METRICS: tuple[str, ...] = tuple(m for m in EMBEDDING_METRICS if m in SERVED_METRICS)
if set(METRICS) != set(get_args(MetricName)) or set(SERVED_METRICS) != set(get_args(ServedMetric)):
    raise RuntimeError(f"MetricName / ServedMetric disagree with the registry: {METRICS}, {SERVED_METRICS}")


#: The registered metric called ``name``; an unknown name raises ``ValueError`` listing the valid ones.
get = _REGISTRY.get


def higher_is_better(name: str) -> bool:
    """True when the metric's scores are similarities (same person iff score ≥ threshold)."""
    return get(name).higher_is_better


def index_dim(metric: str, dim: int) -> int:
    """Length of the vectors stored in the metric's index."""
    return dim + 1 if get(metric).needs_head else dim


def _need_head(metric: Metric, head: HeadWeights | None) -> HeadWeights:
    if head is None:
        raise ValueError(f"metric {metric.name!r} needs the verification head weights (a siamese model)")
    return head


def _indexed(name: str) -> Metric:
    metric = get(name)
    if not metric.served:
        raise ValueError(f"metric {name!r} is evaluation-only: the service has no index for it")
    return metric


def _gallery(metric: Metric, emb: np.ndarray, head: HeadWeights | None) -> np.ndarray:
    if metric.needs_head:
        return softmax_gallery(emb, _need_head(metric, head))
    assert metric._vectors is not None
    return metric._vectors(emb)


def _query(metric: Metric, emb: np.ndarray, head: HeadWeights | None) -> tuple[np.ndarray, np.ndarray]:
    if metric.needs_head:
        return softmax_query(emb, _need_head(metric, head))
    return _gallery(metric, emb, None), np.zeros(len(emb), dtype=np.float64)


def gallery_vectors(metric: str, embeddings: np.ndarray, head: HeadWeights | None = None) -> np.ndarray:
    """Vectors to store in the metric's index for raw gallery embeddings (N, D), float32."""
    vectors = _gallery(_indexed(metric), embeddings, head)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def query_vectors(
    metric: str, embeddings: np.ndarray, head: HeadWeights | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Query vectors for the metric's index and a per-query constant added to the index score.

    Returns:
        (vectors (N, index_dim) float32, constants (N,) float64); the constant is non-zero for softmax only.
    """
    vectors, constants = _query(_indexed(metric), embeddings, head)
    return np.ascontiguousarray(vectors, dtype=np.float32), constants


def mean_query_vectors(
    metric: str, embeddings: np.ndarray, head: HeadWeights | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One query vector and constant for a set of images of one person (a tracklet), see the module doc.

    Returns:
        (vector (1, index_dim), constant (1,)): :func:`index_scores` of its index results is the mean cosine /
        correlation, the root-mean-square euclidean distance, or the sigmoid of the mean softmax logit over
        the images.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) == 0:
        raise ValueError(f"a tracklet needs embeddings of shape (N >= 1, D), got {emb.shape}")
    vectors, constants = query_vectors(metric, emb, head)
    mean = vectors.astype(np.float64).mean(axis=0, keepdims=True)
    const = np.array([constants.mean()], dtype=np.float64)
    if not get(metric).inner_product:  # L2: mean ‖qᵢ − g‖² = ‖q̄ − g‖² + (mean ‖qᵢ‖² − ‖q̄‖²)
        const += float(np.mean(np.sum(emb.astype(np.float64) ** 2, axis=1)) - np.sum(mean**2))
    return np.ascontiguousarray(mean, dtype=np.float32), const


def index_scores(metric: str, raw: np.ndarray, constants: np.ndarray) -> np.ndarray:
    """Turn index results (inner products, or squared L2 distances) into the metric's scores."""
    m = get(metric)
    raw = np.asarray(raw, dtype=np.float64)
    if not m.inner_product:  # a distance; the constant is 0 except for a tracklet (its spread)
        return np.sqrt(np.maximum(raw + np.asarray(constants, np.float64)[:, None], 0.0))
    if m.needs_head:
        return sigmoid(raw + np.asarray(constants)[:, None])
    return raw


def _exponent(metric: Metric, p: float) -> float:
    """The Lp exponent of an evaluation-only distance: the caller's ``p`` (checked) or 1."""
    if not metric.takes_p:
        return 1.0
    if not p > 0:
        raise ValueError(f"{metric.name} p must be > 0, got {p}")
    return p


def pair_scores(
    metric: str, a: np.ndarray, b: np.ndarray, head: HeadWeights | None = None, *, p: float = 3.0
) -> np.ndarray:
    """Scores of row pairs ``(a[i], b[i])`` computed directly, float64 (the reference the indexes agree with).

    Args:
        metric: A registered metric other than ``pairwise`` (scored by ``comparator.onnx``).
        a: N × D embeddings.
        b: N × D embeddings, paired row by row with ``a``.
        head: The verification head weights (``softmax`` only).
        p: Exponent of ``minkowski`` (> 0).

    Raises:
        ValueError: Unknown metric, ``pairwise``, unpaired shapes, a missing head or ``p`` ≤ 0.
    """
    m = get(metric)
    if m.needs_comparator:
        raise ValueError(f"metric {metric!r} is scored by comparator.onnx (run_comparator), not here")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"a and b must have the same shape (N × D), got {x.shape} and {y.shape}")
    if m.needs_head:
        return sigmoid(softmax_logits(x, y, _need_head(m, head)))
    if not m.served:
        return lp_pairs(x, y, _exponent(m, p))
    if not m.inner_product:
        return np.linalg.norm(x - y, axis=1)
    assert m._vectors is not None
    return np.clip(np.einsum("ij,ij->i", m._vectors(x), m._vectors(y)), -1.0, 1.0)


def score_matrix(
    metric: str,
    query: np.ndarray,
    gallery: np.ndarray,
    head: HeadWeights | None = None,
    *,
    p: float = 3.0,
) -> np.ndarray:
    """Q × G scores of every query against every gallery row, by the index's own algebra (brute force).

    Works in the inputs' precision (float32 stays float32, float64 stays float64; softmax always float64).
    In float32 the ``‖q‖² + ‖g‖² − 2 q·g`` expansion leaves ~1e-4 relative noise on near-zero euclidean
    distances; pass float64 for exact ones. Memory is Q × G (× D inside scipy for cityblock / minkowski):
    callers chunk the queries.

    Raises:
        ValueError: Unknown metric, ``pairwise``, a missing head or ``p`` ≤ 0.
    """
    m = get(metric)
    if m.needs_comparator:
        raise ValueError(f"metric {metric!r} is scored by comparator.onnx (run_comparator), not here")
    if not m.served:
        return lp_matrix(query, gallery, _exponent(m, p))
    q_vec, constants = _query(m, query, head)
    g_vec = _gallery(m, gallery, head)
    dtype = np.result_type(q_vec.dtype, g_vec.dtype)
    q_vec, g_vec = q_vec.astype(dtype, copy=False), g_vec.astype(dtype, copy=False)
    if m.inner_product:
        raw = q_vec @ g_vec.T
        return sigmoid(raw + constants[:, None]) if m.needs_head else np.clip(raw, -1.0, 1.0, out=raw)
    # ‖q‖² + ‖g‖² − 2 q·g can dip below zero by rounding; clamp before the square root.
    sq = np.einsum("ij,ij->i", q_vec, q_vec)[:, None] + np.einsum("ij,ij->i", g_vec, g_vec)[None, :]
    sq -= 2.0 * (q_vec @ g_vec.T)
    return np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq)


def is_same(score: float, threshold: float, higher_is_better: bool) -> bool:
    """The decision at a threshold: on the 'same' side (inclusive) of it."""
    return score >= threshold if higher_is_better else score <= threshold


def describe(names: tuple[str, ...] = SERVED_METRICS) -> str:
    """One line per metric: name, pair score and the threshold's meaning (for OpenAPI / ``--help``)."""
    return "; ".join(f"{n}: {get(n).pair_score} ({get(n).threshold})" for n in names)
