"""Scoring modes, as numpy functions: pair scores for /verify and index/query vectors for /search.

* ``cosine``: L2-normalized inner product.
* ``correlation``: mean-centred, then L2-normalized inner product (Pearson correlation).
* ``euclidean``: L2 distance between the embeddings (lower is more similar).
* ``pairwise``: the comparator's score (:mod:`service.inference.pairwise`); its index holds the L2-normalized
  descriptors, searched by cosine for the shortlist the comparator re-ranks.
* ``softmax``: p(same) of the verification head. Its same-minus-different logit is
  ``Σ wᵢ(qᵢ − gᵢ)² + b = [Σ wᵢqᵢ² + b] + ⟨(−2 w⊙q, 1), (g, Σ wᵢgᵢ²)⟩``, so storing the augmented gallery
  vector ``(g, Σ wᵢgᵢ²)`` in an inner-product index ranks the whole gallery by the head exactly, and
  ``p = sigmoid(logit)`` is monotone in the logit.

A tracklet (several images of one person, ``aggregate=mean``) is searched as one query by
:func:`mean_query_vectors`: the mean of the images' query vectors in the metric's index space, so the index
score is the mean of the per-image scores where the score is linear there. ``cosine`` / ``correlation`` /
``pairwise`` shortlist: the mean of the L2-normalized (centred) embeddings, score = mean cosine
(correlation); ``euclidean``: the centroid plus the images' spread, score = root-mean-square distance;
``softmax``: score = sigmoid of the mean logit (the head's logit is linear in the index space, its probability
is not, so the mean is taken over logits and the search stays exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS: tuple[str, ...] = ("cosine", "correlation", "euclidean", "softmax")
_EPS = 1e-12


@dataclass(frozen=True)
class HeadWeights:
    """The verification head's logit over the squared difference: ``Σ weight·(a − b)² + bias``."""

    weight: np.ndarray
    bias: float

    @classmethod
    def from_npz(cls, path: str | Path, dim: int) -> HeadWeights:
        """Read ``weight`` (D,) and ``bias`` () from an .npz file.

        Raises:
            ValueError: Missing arrays or a weight of the wrong length.
        """
        with np.load(path) as data:
            if "weight" not in data or "bias" not in data:
                raise ValueError(
                    f"{path}: head weights need arrays 'weight' and 'bias', got {sorted(data.files)}"
                )
            weight = np.asarray(data["weight"], dtype=np.float32).reshape(-1)
            bias = float(np.asarray(data["bias"]).reshape(()))
        if weight.shape != (dim,):
            raise ValueError(f"{path}: 'weight' has shape {weight.shape}, expected ({dim},)")
        return cls(weight=weight, bias=bias)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, _EPS)).astype(np.float32)


def center_normalize(x: np.ndarray) -> np.ndarray:
    """Rows mean-centred, then L2-normalized (their inner product is the Pearson correlation)."""
    x = np.asarray(x, dtype=np.float32)
    return l2_normalize(x - x.mean(axis=1, keepdims=True))


def softmax_logits(a: np.ndarray, b: np.ndarray, head: HeadWeights) -> np.ndarray:
    """Same-minus-different logits of row pairs, computed directly: ``Σ w(a − b)² + bias``."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return (diff * diff) @ head.weight.astype(np.float64) + head.bias


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def index_dim(metric: str, dim: int) -> int:
    """Length of the vectors stored in the metric's index."""
    return dim + 1 if metric == "softmax" else dim


def gallery_vectors(metric: str, embeddings: np.ndarray, head: HeadWeights | None = None) -> np.ndarray:
    """Vectors to store in the metric's index for raw gallery embeddings (N, D)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if metric in ("cosine", "pairwise"):  # pairwise: the descriptor shortlist is a cosine search
        return l2_normalize(emb)
    if metric == "correlation":
        return center_normalize(emb)
    if metric == "euclidean":
        return np.ascontiguousarray(emb)
    if metric == "softmax":
        head = _need_head(head)
        norm = (emb.astype(np.float64) ** 2) @ head.weight.astype(np.float64)
        return np.ascontiguousarray(np.concatenate([emb, norm[:, None].astype(np.float32)], axis=1))
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def query_vectors(
    metric: str, embeddings: np.ndarray, head: HeadWeights | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Query vectors for the metric's index and a per-query constant added to the index score.

    Returns:
        (vectors (N, index_dim), constants (N,)); the constant is non-zero for softmax only.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    zeros = np.zeros(len(emb), dtype=np.float64)
    if metric in ("cosine", "correlation", "euclidean", "pairwise"):
        return gallery_vectors(metric, emb), zeros
    if metric == "softmax":
        head = _need_head(head)
        w = head.weight.astype(np.float64)
        q = emb.astype(np.float64)
        vec = np.concatenate([-2.0 * q * w, np.ones((len(q), 1))], axis=1).astype(np.float32)
        const = (q * q) @ w + head.bias
        return np.ascontiguousarray(vec), const
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


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
    if metric == "euclidean":  # mean ‖qᵢ − g‖² = ‖q̄ − g‖² + (mean ‖qᵢ‖² − ‖q̄‖²)
        const += float(np.mean(np.sum(emb.astype(np.float64) ** 2, axis=1)) - np.sum(mean**2))
    return np.ascontiguousarray(mean, dtype=np.float32), const


def index_scores(metric: str, raw: np.ndarray, constants: np.ndarray) -> np.ndarray:
    """Turn FAISS results (inner products or squared L2 distances) into the metric's scores."""
    raw = np.asarray(raw, dtype=np.float64)
    if metric == "euclidean":  # the constant is 0 except for a tracklet (its spread)
        return np.sqrt(np.maximum(raw + np.asarray(constants, np.float64)[:, None], 0.0))
    if metric == "softmax":
        return sigmoid(raw + constants[:, None])
    return raw


def pair_scores(metric: str, a: np.ndarray, b: np.ndarray, head: HeadWeights | None = None) -> np.ndarray:
    """Scores of row pairs (a[i], b[i]) computed directly (the reference the indexes must agree with)."""
    if metric == "cosine":
        return np.sum(l2_normalize(a).astype(np.float64) * l2_normalize(b), axis=1)
    if metric == "correlation":
        return np.sum(center_normalize(a).astype(np.float64) * center_normalize(b), axis=1)
    if metric == "euclidean":
        return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)
    if metric == "softmax":
        return sigmoid(softmax_logits(a, b, _need_head(head)))
    if metric == "pairwise":
        raise ValueError("metric 'pairwise' is scored by comparator.onnx (PairwiseModel.compare), not here")
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def is_same(score: float, threshold: float, higher_is_better: bool) -> bool:
    """The decision at a threshold: on the 'same' side (inclusive) of it."""
    return score >= threshold if higher_is_better else score <= threshold


def _need_head(head: HeadWeights | None) -> HeadWeights:
    if head is None:
        raise ValueError("metric 'softmax' needs the verification head weights (a siamese model)")
    return head
