"""Evaluate a trained model on a query / gallery split: features, distances, CMC / mAP / mINP.

:func:`evaluate_model` asks the run's family (:mod:`training.families`) to rank the gallery for every query;
the building blocks here serve every family. :func:`extract_features` runs the model's ``embed`` (what
``embedding.onnx`` will output) over images decoded by the shared preprocessing, optionally averaging with
the horizontally flipped image (flip TTA). :func:`evaluate_embeddings` ranks the gallery with one of the
distance metrics, optionally with k-reciprocal re-ranking, and — for the single-shot datasets (CUHK01,
CUHK03-classic, VIPeR) — also reports mean ± std over repeated random single-shot galleries. A family adds
its own rankings (the Siamese verification head, the MLS comparator) and the Q × G score matrices of its
extra scoring modes (``EvaluationResult.scores``), which the report calibrates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from service.contract.preprocess import PreprocessSpec
from service.contract.scoring import get as get_metric
from training.checks import at_least
from training.data.dataset import ReidImageDataset
from training.data.datasets.base import ImageRecord, ReidSplit
from training.engine.progress import batch_images, track
from training.evaluation.distances import compute_distance
from training.evaluation.metrics import RankIds, evaluate_rank
from training.evaluation.protocols import aggregate_runs, single_shot_runs
from training.evaluation.rerank import re_ranking

if TYPE_CHECKING:
    from training.engine.config import TrainConfig

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
        scores: Q × G scores (without flip TTA) of the family's own scoring modes, by the manifest's name
            (e.g. ``softmax``: the Siamese head's p(same)); the embedding modes are computed from the
            features.
    """

    metrics: dict[str, Any]
    distmat: np.ndarray
    query_features: np.ndarray
    gallery_features: np.ndarray
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def ids(self) -> RankIds:
        """Person and camera ids of the query and the gallery images."""
        return RankIds.of(self.query, self.gallery)


def is_single_shot(split: ReidSplit) -> bool:
    """True for CUHK01, VIPeR and CUHK03 under its classic protocol."""
    protocol = str(split.info.get("protocol", ""))
    return split.name in SINGLE_SHOT_DATASETS or (split.name == "cuhk03" and protocol == "classic")


@dataclass(frozen=True)
class Batching:
    """How images go through a model for evaluation: preprocessing, device, batch size, decoding workers.

    Attributes:
        spec: Preprocessing (the model's input contract).
        device: Where the model runs.
        batch_size: Images per forward pass (>= 1).
        num_workers: DataLoader worker processes decoding images.
    """

    spec: PreprocessSpec
    device: torch.device | str = "cpu"
    batch_size: int = 128
    num_workers: int = 0

    def __post_init__(self) -> None:
        at_least("batch_size", self.batch_size, 1)

    def batches(self, model: nn.Module, records: Sequence[ImageRecord], label: str) -> Iterator[torch.Tensor]:
        """Preprocessed image batches of ``records`` (in order) on ``device``, with ``model`` in eval mode.

        The model's previous mode is restored when the iteration ends (or is abandoned); progress is shown
        under ``label``.
        """
        was_training = model.training
        model.eval()
        loader = DataLoader(
            ReidImageDataset(records, self.spec), batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers,
        )
        try:
            for images, *_ in track(loader, label, total=len(records), size=batch_images):
                yield images.to(self.device)
        finally:
            model.train(was_training)


@torch.no_grad()
def extract_features(
    model: nn.Module, records: Sequence[ImageRecord], batching: Batching, *, flip: bool = False
) -> np.ndarray:
    """Embeddings of ``records`` (N × D float32), in eval mode; the model's previous mode is restored.

    Args:
        model: A model with ``embed(images) → embeddings`` (what its ``embedding.onnx`` computes).
        records: The images.
        batching: Preprocessing, device, batch size and decoding workers.
        flip: Average the embeddings of the image and its horizontal mirror.
    """
    chunks: list[np.ndarray] = []
    net: Any = model
    for images in batching.batches(model, records, "features" + (" (+flip)" if flip else "")):
        features = net.embed(images).float()
        if flip:
            features = (features + net.embed(images.flip(-1)).float()) / 2
        chunks.append(features.cpu().numpy())
    return np.concatenate(chunks, axis=0).astype(np.float32, copy=False)


def rank_metrics(
    distmat: np.ndarray,
    ids: RankIds,
    *,
    single_shot: bool = False,
    repetitions: int = 10,
) -> dict[str, Any]:
    """CMC / mAP / mINP from a distance matrix, plus single-shot mean ± std when asked."""
    result = evaluate_rank(distmat, *ids)
    metrics: dict[str, Any] = dict(result.as_dict())
    metrics["cmc"] = [float(v) for v in result.cmc[:50]]
    if single_shot:
        runs = single_shot_runs(distmat, ids, repetitions=repetitions)
        metrics["single_shot"] = aggregate_runs(runs)
    return metrics


@dataclass(frozen=True)
class EvalSettings(Batching):
    """How to evaluate: the image batching, the ranking metric and options (see :func:`evaluate_model`)."""

    metric: str = "cosine"
    p: float = 3.0
    rerank: bool = False
    flip: bool = False
    single_shot: bool = False
    shortlist: int | None = None  # families that re-rank a shortlist; None: the family's own default
    options: Any = None  # the run family's config section


def evaluate_embeddings(
    model: nn.Module, query: list[ImageRecord], gallery: list[ImageRecord], settings: EvalSettings
) -> EvaluationResult:
    """Rank by a distance between embeddings (``settings.metric``), with flip TTA and re-ranking if asked."""
    s = settings
    qf = extract_features(model, query, s)
    gf = extract_features(model, gallery, s)
    rank_qf, rank_gf = qf, gf
    if s.flip:
        rank_qf = extract_features(model, query, s, flip=True)
        rank_gf = extract_features(model, gallery, s, flip=True)
    distmat = compute_distance(rank_qf, rank_gf, s.metric, p=s.p)
    if s.rerank:
        distmat = re_ranking(
            distmat,
            compute_distance(rank_qf, rank_qf, s.metric, p=s.p),
            compute_distance(rank_gf, rank_gf, s.metric, p=s.p),
            k1=RERANK_K1, k2=RERANK_K2, lambda_value=RERANK_LAMBDA,
        )
    result = EvaluationResult({}, distmat, qf, gf, query, gallery)
    metrics = rank_metrics(distmat, result.ids(), single_shot=s.single_shot)
    metrics.update(
        metric=s.metric, rerank=s.rerank, flip=s.flip, num_query=len(query), num_gallery=len(gallery),
        embedding_dim=int(qf.shape[1]),
    )
    if get_metric(s.metric).takes_p:
        metrics["minkowski_p"] = s.p
    result.metrics = metrics
    return result


def evaluate_model(
    model: nn.Module,
    cfg: TrainConfig,
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    *,
    spec: PreprocessSpec,
    device: torch.device | str = "cpu",
    metric: str | None = None,
    p: float = 3.0,
    rerank: bool = False,
    flip: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
    single_shot: bool = False,
    shortlist: int | None = None,
) -> EvaluationResult:
    """Rank the gallery for every query and compute the re-ID metrics, the way the run's family scores.

    Args:
        model: The model (DDP wrappers must be removed first).
        cfg: The run's config: its family (``model_kind``) and that family's section.
        query: Query records.
        gallery: Gallery records.
        spec: Preprocessing.
        device: Where the model runs.
        metric: ``cosine``, ``euclidean``, ``correlation``, ``cityblock`` or ``minkowski``; None: the run's
            ``eval_metric``.
        p: Minkowski exponent.
        rerank: Apply k-reciprocal re-ranking (k1 = 20, k2 = 6, λ = 0.3).
        flip: Flip test-time augmentation for ranking (calibration features are always without it).
        batch_size: Images per forward pass.
        num_workers: Decoding workers.
        single_shot: Also report the single-shot protocol (10 random one-image-per-person galleries).
        shortlist: Families that re-rank a descriptor shortlist (pairwise): its length; None: the run's.

    Raises:
        ValueError: No query or gallery image, or an option the family does not support.
    """
    query, gallery = list(query), list(gallery)
    if not query or not gallery:
        raise ValueError(f"evaluation needs query and gallery images, got {len(query)} and {len(gallery)}")
    settings = EvalSettings(
        spec=spec, device=device, metric=metric or cfg.eval_metric, p=p, rerank=rerank, flip=flip,
        batch_size=batch_size, num_workers=num_workers, single_shot=single_shot, shortlist=shortlist,
        options=cfg.section,
    )
    return cfg.family.evaluate(model, query, gallery, settings)
