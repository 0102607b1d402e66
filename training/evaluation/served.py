"""Evaluating a model folder through the service's own runtime: what you measure is what is served.

Images go through the shared preprocessing (:mod:`service.contract.preprocess`) into the folder's ONNX
sessions as the service opens them (:class:`service.inference.sessions.ModelRuntime`, CPU); scores are the
contract's scoring modes (:mod:`service.contract.scoring`: the query and gallery vectors the service indexes,
turned into the service's scores), and a pairwise model ranks each query's cosine-descriptor shortlist with
``comparator.onnx`` as ``/search`` does. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.contract.preprocess import preprocess_file, stack_batch
from service.contract.scoring import get as get_metric
from service.contract.scoring import higher_is_better
from service.contract.scoring import score_matrix as contract_score_matrix
from service.inference.sessions import ModelRuntime
from training.checks import at_least
from training.data.datasets import ImageRecord

#: Comparator-ranked items lie below 0 (−score), the others at 10 + descriptor cosine distance.
_BEYOND_SHORTLIST = 10.0


def load_runtime(folder: str | Path) -> ModelRuntime:
    """The model folder's sessions exactly as the service loads them (manifest and checksums verified)."""
    return ModelRuntime.load(folder, device="cpu")


@dataclass
class ServedFeatures:
    """What the runtime computes for a list of images: the embeddings (descriptors for a pairwise model)
    and, for a pairwise model, the comparator encodings."""

    embeddings: np.ndarray
    encodings: np.ndarray | None


def embed_records(
    runtime: ModelRuntime, records: Sequence[ImageRecord], batch_size: int = 64
) -> ServedFeatures:
    """Embed image files with the runtime, in batches, through the shared preprocessing."""
    at_least("batch_size", batch_size, 1)
    rows = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        rows.append(runtime.embed(stack_batch([preprocess_file(r.path, runtime.spec) for r in chunk])))
    embeddings, encodings = runtime.split(np.concatenate(rows))
    return ServedFeatures(embeddings, encodings)


def score_matrix(runtime: ModelRuntime, metric: str, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Q × G scores in the service's units, by the contract's index algebra (float64).

    ``pairwise`` gives the descriptor cosine (the shortlist's score); :func:`ranking_distances` adds the
    comparator.
    """
    name = "cosine" if get_metric(metric).needs_comparator else metric
    q, g = query.astype(np.float64), gallery.astype(np.float64)
    return contract_score_matrix(name, q, g, runtime.head_weights)


def ranking_distances(
    runtime: ModelRuntime, metric: str, query: ServedFeatures, gallery: ServedFeatures, *, shortlist: int
) -> np.ndarray:
    """Q × G distances (lower ranks first) that order the gallery as ``/search`` does for ``metric``."""
    scores = score_matrix(runtime, metric, query.embeddings, gallery.embeddings)
    if metric != "pairwise":
        return -scores if higher_is_better(metric) else scores
    if runtime.pairwise is None or query.encodings is None or gallery.encodings is None:
        raise ValueError(f"metric 'pairwise' needs a pairwise model; {runtime.manifest.model_id} is not one")
    at_least("shortlist", shortlist, 1)
    k = min(shortlist, scores.shape[1])
    candidates = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    distances = _BEYOND_SHORTLIST + (1.0 - scores)
    for q, cols in enumerate(candidates):  # one query at a time: encodings can be large
        pairs_a = np.broadcast_to(query.encodings[q], (k, query.encodings.shape[1]))
        distances[q, cols] = -runtime.pairwise.compare(pairs_a, gallery.encodings[cols]).astype(np.float64)
    return distances
