"""Evaluate a trained model on a query / gallery split: features, distances, CMC / mAP / mINP.

:func:`extract_features` runs the model's ``embed`` (what ``embedding.onnx`` will output) over images decoded
by the shared preprocessing, optionally averaging with the horizontally flipped image (flip TTA).
:func:`evaluate_model` ranks the gallery for every query with one of the distance metrics, optionally with
k-reciprocal re-ranking, and — for the single-shot datasets (CUHK01, CUHK03-classic, VIPeR) — also reports
mean ± std over repeated random single-shot galleries. Siamese models are additionally ranked by their
verification head's ``p(same)`` (the ``softmax`` scoring mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from service.inference.preprocess import PreprocessSpec
from training.data.dataset import ReidImageDataset
from training.data.datasets.base import ImageRecord, ReidSplit
from training.evaluation.distances import compute_distance
from training.evaluation.metrics import evaluate_rank
from training.evaluation.protocols import aggregate_runs, single_shot_runs
from training.evaluation.rerank import re_ranking

#: Datasets evaluated with the single-shot protocol (one gallery image per person, repeated draws).
SINGLE_SHOT_DATASETS: tuple[str, ...] = ("cuhk01", "viper")
#: k-reciprocal re-ranking parameters (Zhong et al. 2017).
RERANK_K1, RERANK_K2, RERANK_LAMBDA = 20, 6, 0.3


@dataclass
class EvaluationResult:
    """Features, distances and metrics of one evaluation.

    Attributes:
        metrics: ``rank1`` … ``rank20``, ``mAP``, ``mINP`` (fractions), counts, settings, the CMC curve, and
            ``single_shot`` / ``softmax`` sub-dicts where they apply.
        distmat: Q × G distances used for ranking.
        query_features: Q × D embeddings without flip TTA (what the service computes).
        gallery_features: G × D embeddings without flip TTA.
        query: Query records.
        gallery: Gallery records.
    """

    metrics: dict[str, Any]
    distmat: np.ndarray
    query_features: np.ndarray
    gallery_features: np.ndarray
    query: list[ImageRecord]
    gallery: list[ImageRecord]

    def ids(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Query person ids, gallery person ids, query camera ids, gallery camera ids."""
        return (
            np.array([r.person_id for r in self.query], dtype=np.int64),
            np.array([r.person_id for r in self.gallery], dtype=np.int64),
            np.array([r.camera_id for r in self.query], dtype=np.int64),
            np.array([r.camera_id for r in self.gallery], dtype=np.int64),
        )


def is_single_shot(split: ReidSplit) -> bool:
    """True for CUHK01, VIPeR and CUHK03 under its classic protocol."""
    protocol = str(split.info.get("protocol", ""))
    return split.name in SINGLE_SHOT_DATASETS or (split.name == "cuhk03" and protocol == "classic")


def _embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    embed = getattr(model, "embed", None)
    return embed(images) if callable(embed) else model(images)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    records: Sequence[ImageRecord],
    spec: PreprocessSpec,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    flip: bool = False,
    num_workers: int = 0,
) -> np.ndarray:
    """Embeddings of ``records`` (N × D float32), in eval mode; the model's previous mode is restored.

    Args:
        model: An :class:`~training.models.reid_model.EmbeddingModel` or ``SiameseModel`` (anything with
            ``embed``; otherwise ``forward`` in eval mode must return the embeddings).
        records: The images.
        spec: Preprocessing (the model's input contract).
        device: Where to run the model.
        batch_size: Images per forward pass.
        flip: Average the embeddings of the image and its horizontal mirror.
        num_workers: DataLoader worker processes decoding images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    loader = DataLoader(
        ReidImageDataset(records, spec), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    chunks: list[np.ndarray] = []
    try:
        for images, *_ in loader:
            images = images.to(device)
            features = _embed(model, images).float()
            if flip:
                features = (features + _embed(model, images.flip(-1)).float()) / 2
            chunks.append(features.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)


def softmax_same_probability(model: nn.Module, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Q × G ``p(same)`` of a Siamese model's verification head for every query-gallery pair.

    Uses the head's exact logistic form ``sigmoid(Σ w (q − g)² + b)`` (eval mode, no dropout), expanded as
    ``q²·w + g²·w − 2 (q∘w)·g + b`` so no Q × G × D tensor is built.

    Raises:
        ValueError: The model has no verification head.
    """
    head = getattr(model, "verification_head", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no verification_head (softmax scoring is Siamese only)")
    weight, bias = (t.double().cpu().numpy() for t in head.effective_weights())
    q, g = query.astype(np.float64), gallery.astype(np.float64)
    logits = (q**2 @ weight)[:, None] + (g**2 @ weight)[None, :] - 2.0 * (q * weight) @ g.T + float(bias)
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))


def rank_metrics(
    distmat: np.ndarray,
    ids: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    single_shot: bool = False,
    repetitions: int = 10,
) -> dict[str, Any]:
    """CMC / mAP / mINP from a distance matrix, plus single-shot mean ± std when asked."""
    q_pids, g_pids, q_cams, g_cams = ids
    result = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    metrics: dict[str, Any] = dict(result.as_dict())
    metrics["cmc"] = [float(v) for v in result.cmc[:50]]
    if single_shot:
        runs = single_shot_runs(distmat, q_pids, g_pids, q_cams, g_cams, repetitions=repetitions)
        metrics["single_shot"] = aggregate_runs(runs)
    return metrics


def evaluate_model(
    model: nn.Module,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    *,
    spec: PreprocessSpec,
    device: torch.device | str = "cpu",
    metric: str = "cosine",
    p: float = 3.0,
    rerank: bool = False,
    flip: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
    single_shot: bool = False,
) -> EvaluationResult:
    """Rank the gallery for every query and compute the re-ID metrics.

    Args:
        model: The model (DDP wrappers must be removed first).
        query: Query records.
        gallery: Gallery records.
        spec: Preprocessing.
        device: Where the model runs.
        metric: ``cosine``, ``euclidean``, ``correlation``, ``cityblock`` or ``minkowski``.
        p: Minkowski exponent.
        rerank: Apply k-reciprocal re-ranking (k1 = 20, k2 = 6, λ = 0.3).
        flip: Flip test-time augmentation for ranking (calibration features are always without it).
        batch_size: Images per forward pass.
        num_workers: Decoding workers.
        single_shot: Also report the single-shot protocol (10 random one-image-per-person galleries).
    """
    query, gallery = list(query), list(gallery)
    if not query or not gallery:
        raise ValueError(f"evaluation needs query and gallery images, got {len(query)} and {len(gallery)}")
    options: dict[str, Any] = {"device": device, "batch_size": batch_size, "num_workers": num_workers}
    qf = extract_features(model, query, spec, **options)
    gf = extract_features(model, gallery, spec, **options)
    rank_qf, rank_gf = qf, gf
    if flip:
        rank_qf = extract_features(model, query, spec, flip=True, **options)
        rank_gf = extract_features(model, gallery, spec, flip=True, **options)
    distmat = compute_distance(rank_qf, rank_gf, metric, p=p)
    if rerank:
        distmat = re_ranking(
            distmat,
            compute_distance(rank_qf, rank_qf, metric, p=p),
            compute_distance(rank_gf, rank_gf, metric, p=p),
            k1=RERANK_K1, k2=RERANK_K2, lambda_value=RERANK_LAMBDA,
        )
    result = EvaluationResult({}, distmat, qf, gf, query, gallery)
    metrics = rank_metrics(distmat, result.ids(), single_shot=single_shot)
    metrics.update(
        metric=metric, rerank=rerank, flip=flip, num_query=len(query), num_gallery=len(gallery),
        embedding_dim=int(qf.shape[1]),
    )
    if metric == "minkowski":
        metrics["minkowski_p"] = p
    if getattr(model, "verification_head", None) is not None:
        same = softmax_same_probability(model, rank_qf, rank_gf)
        softmax = rank_metrics(1.0 - same, result.ids(), single_shot=single_shot)
        metrics["softmax"] = {k: v for k, v in softmax.items() if k != "cmc"}
    result.metrics = metrics
    return result
