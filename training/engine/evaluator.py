"""Evaluate a trained model on a query / gallery split: features, distances, CMC / mAP / mINP.

:func:`extract_features` runs the model's ``embed`` (what ``embedding.onnx`` will output) over images decoded
by the shared preprocessing, optionally averaging with the horizontally flipped image (flip TTA).
:func:`evaluate_model` ranks the gallery for every query with one of the distance metrics, optionally with
k-reciprocal re-ranking, and — for the single-shot datasets (CUHK01, CUHK03-classic, VIPeR) — also reports
mean ± std over repeated random single-shot galleries. Siamese models are additionally ranked by their
verification head's ``p(same)`` (the ``softmax`` scoring mode).

Pairwise models (the MLS network) are ranked the way the service searches: for every query the gallery is
shortlisted by the cosine distance of the ranking descriptors (``shortlist`` items, 100 by default — the
service's ``REID_SHORTLIST``), and the shortlist is re-ranked by the comparator's score (Eq. 7 of paper 002),
so a query costs ``shortlist`` comparator calls instead of one per gallery image. Gallery items outside the
shortlist keep their descriptor order behind the shortlisted ones. The encodings are held in float16 between
the encoder and the comparator (the service caches them in float16 too), which halves the memory of a
gallery's encodings (≈ 0.2 MB per image at 160×60).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from service.contract.preprocess import PreprocessSpec
from training.data.dataset import ReidImageDataset
from training.data.datasets.base import ImageRecord, ReidSplit
from training.engine.progress import batch_images, track
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
        for images, *_ in track(loader, "features" + (" (+flip)" if flip else ""), total=len(records),
                                size=batch_images):  # fmt: skip
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


def is_pairwise(model: nn.Module) -> bool:
    """True for models scored by a comparator over two encodings (the MLS network)."""
    methods = ("encode", "score_encodings", "flatten_encoding")
    return all(callable(getattr(model, name, None)) for name in methods)


@torch.no_grad()
def extract_encodings(
    model: nn.Module,
    records: Sequence[ImageRecord],
    spec: PreprocessSpec,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
) -> tuple[torch.Tensor, np.ndarray]:
    """Flat float16 encodings ``N × E`` (on CPU) and float32 descriptors ``N × D`` of a pairwise model."""
    was_training = model.training
    model.eval()
    loader = DataLoader(
        ReidImageDataset(records, spec), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    net: Any = model
    encodings: list[torch.Tensor] = []
    descriptors: list[np.ndarray] = []
    try:
        for images, *_ in track(loader, "encodings", total=len(records), size=batch_images):
            enc = net.encode(images.to(device))
            encodings.append(net.flatten_encoding(enc).half().cpu())
            descriptors.append(enc.descriptor.float().cpu().numpy())
    finally:
        model.train(was_training)
    return torch.cat(encodings), np.concatenate(descriptors).astype(np.float32, copy=False)


@torch.no_grad()
def comparator_scores(
    model: nn.Module,
    encodings_a: torch.Tensor,
    encodings_b: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
) -> np.ndarray:
    """Comparator scores (Eq. 7, higher = same) of the row pairs ``(encodings_a[i], encodings_b[i])``."""
    if encodings_a.shape != encodings_b.shape:
        raise ValueError(f"encoding batches differ: {tuple(encodings_a.shape)} vs {tuple(encodings_b.shape)}")
    net: Any = model
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(encodings_a), batch_size):
            enc_a = net.unflatten_encoding(encodings_a[start : start + batch_size].float().to(device))
            enc_b = net.unflatten_encoding(encodings_b[start : start + batch_size].float().to(device))
            out.append(net.score_encodings(enc_a, enc_b).double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def shortlist_distances(
    model: nn.Module,
    query_encodings: torch.Tensor,
    gallery_encodings: torch.Tensor,
    descriptor_distmat: np.ndarray,
    *,
    shortlist: int,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
) -> np.ndarray:
    """Q × G ranking distances: ``−score`` on each query's descriptor shortlist, ``10 + distance`` elsewhere.

    Comparator scores are positive (Eq. 7) and cosine distances lie in [0, 2], so every shortlisted item ranks
    before every other one; ``shortlist >= G`` scores the whole gallery (exhaustive comparator ranking).
    """
    if shortlist < 1:
        raise ValueError(f"shortlist must be >= 1, got {shortlist}")
    num_q, num_g = descriptor_distmat.shape
    k = min(shortlist, num_g)
    candidates = np.argsort(descriptor_distmat, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(num_q), k)
    cols = candidates.ravel()
    scores = np.empty(len(rows), dtype=np.float64)
    starts = range(0, len(rows), batch_size)  # gather encodings per batch: Q·k of them would not fit
    for start in track(starts, "comparator", total=len(rows), size=lambda s: min(batch_size, len(rows) - s),
                       unit="pairs"):  # fmt: skip
        index = slice(start, start + batch_size)
        scores[index] = comparator_scores(
            model, query_encodings[torch.from_numpy(rows[index])],
            gallery_encodings[torch.from_numpy(cols[index])], device=device, batch_size=batch_size,
        )
    distmat = 10.0 + descriptor_distmat.astype(np.float64)
    distmat[rows, cols] = -scores
    return distmat


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
    shortlist: int = 100,
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
        shortlist: Pairwise models only: descriptor shortlist re-ranked by the comparator per query.
    """
    query, gallery = list(query), list(gallery)
    if not query or not gallery:
        raise ValueError(f"evaluation needs query and gallery images, got {len(query)} and {len(gallery)}")
    options: dict[str, Any] = {"device": device, "batch_size": batch_size, "num_workers": num_workers}
    if is_pairwise(model):
        if rerank or flip:
            raise ValueError("rerank and flip are not supported for pairwise (comparator) models")
        return _evaluate_pairwise(
            model, query, gallery, spec=spec, metric=metric, p=p, single_shot=single_shot,
            shortlist=shortlist, **options,
        )
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


def _evaluate_pairwise(
    model: nn.Module,
    query: list[ImageRecord],
    gallery: list[ImageRecord],
    *,
    spec: PreprocessSpec,
    device: torch.device | str,
    metric: str,
    p: float,
    batch_size: int,
    num_workers: int,
    single_shot: bool,
    shortlist: int,
) -> EvaluationResult:
    """Comparator ranking on the descriptor shortlist; the descriptor-only ranking goes to ``descriptor``."""
    options: dict[str, Any] = {"device": device, "batch_size": batch_size, "num_workers": num_workers}
    q_enc, qf = extract_encodings(model, query, spec, **options)
    g_enc, gf = extract_encodings(model, gallery, spec, **options)
    descriptor_distmat = compute_distance(qf, gf, metric, p=p)
    distmat = shortlist_distances(
        model, q_enc, g_enc, descriptor_distmat, shortlist=shortlist, device=device, batch_size=batch_size
    )
    result = EvaluationResult({}, distmat, qf, gf, query, gallery)
    metrics = rank_metrics(distmat, result.ids(), single_shot=single_shot)
    metrics.update(
        metric="pairwise", shortlist=min(shortlist, len(gallery)), rerank=False, flip=False,
        num_query=len(query), num_gallery=len(gallery), embedding_dim=int(qf.shape[1]),
    )
    descriptor = rank_metrics(descriptor_distmat, result.ids(), single_shot=single_shot)
    metrics["descriptor"] = {**{k: v for k, v in descriptor.items() if k != "cmc"}, "metric": metric}
    result.metrics = metrics
    return result
