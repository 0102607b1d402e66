"""The numpy algebra behind the scoring modes of :mod:`service.contract.scoring`.

Normalizations, the verification head's augmented vectors and the Lp distances; the registry of metrics and
the functions the rest of the project calls live in :mod:`service.contract.scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def as_float(x: np.ndarray) -> np.ndarray:
    """As a float array, keeping float32 / float64 (anything else becomes float32)."""
    arr = np.asarray(x)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), in the input's float precision."""
    x = as_float(x)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def centred_unit(x: np.ndarray) -> np.ndarray:
    """Rows mean-centred, then scaled to unit L2 norm, in the input's float precision."""
    x = as_float(x)
    return unit(x - x.mean(axis=1, keepdims=True))


def identity(x: np.ndarray) -> np.ndarray:
    """The rows unchanged, as floats."""
    return as_float(x)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    return unit(x).astype(np.float32)


def center_normalize(x: np.ndarray) -> np.ndarray:
    """Rows mean-centred, then L2-normalized (their inner product is the Pearson correlation), float32."""
    return centred_unit(x).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def softmax_logits(a: np.ndarray, b: np.ndarray, head: HeadWeights) -> np.ndarray:
    """Same-minus-different logits of row pairs, computed directly: ``Σ w(a − b)² + bias``."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return (diff * diff) @ head.weight.astype(np.float64) + head.bias


def softmax_gallery(emb: np.ndarray, head: HeadWeights) -> np.ndarray:
    """The augmented gallery vectors ``(g, Σ w·g²)`` of the softmax index, float64."""
    g = np.asarray(emb, dtype=np.float64)
    return np.concatenate([g, ((g * g) @ head.weight.astype(np.float64))[:, None]], axis=1)


def softmax_query(emb: np.ndarray, head: HeadWeights) -> tuple[np.ndarray, np.ndarray]:
    """The softmax query vectors ``(−2 w⊙q, 1)`` and their constants ``Σ w·q² + b``, float64."""
    q, w = np.asarray(emb, dtype=np.float64), head.weight.astype(np.float64)
    return np.concatenate([-2.0 * q * w, np.ones((len(q), 1))], axis=1), (q * q) @ w + head.bias


def lp_pairs(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    """Lp distances of row pairs ``(a[i], b[i])``, float64."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return diff.sum(axis=1) if p == 1.0 else (diff**p).sum(axis=1) ** (1.0 / p)


def lp_matrix(query: np.ndarray, gallery: np.ndarray, p: float) -> np.ndarray:
    """Q × G Lp distances (scipy; evaluation only)."""
    from scipy.spatial.distance import cdist  # evaluation only: scipy is not a serving dependency

    if p == 1.0:
        return cdist(query, gallery, metric="cityblock")
    return cdist(query, gallery, metric="minkowski", p=p)
