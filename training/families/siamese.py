"""The siamese family: a shared backbone over image pairs, a square-layer verification head (+ ID branches).

Papers 000 (EfficientNet Siamese) and 004 (identification + verification fusion). Trained on image pairs with
the verification cross-entropy, optionally the identification loss of both branches and a contrastive loss on
the pooled features. Evaluated by the embedding distances and by the head's ``p(same)`` (the ``softmax``
scoring mode, the service's formula); exported as ``embedding.onnx`` + ``verification_head.onnx`` +
``head_weights.npz``, manifest kind ``siamese``, default metric ``softmax``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from service.contract.manifest import VerificationSpec
from service.contract.scoring import SERVED_EMBEDDING_METRICS, HeadWeights, score_matrix
from training.checks import unit_interval
from training.evaluation.evaluator import (
    EvalSettings,
    EvaluationResult,
    evaluate_embeddings,
    extract_features,
    rank_metrics,
)
from training.export.graphs import (
    HEAD_WEIGHTS_FILE,
    WrittenGraphs,
    write_embedding_graph,
    write_verification_head,
)
from training.families.embedding import ImageEmbeddingFamily, build_backbone_of
from training.families.registry import formerly, register_family
from training.models.heads import SAME_INDEX
from training.models.reid_model import SIAMESE_EMBEDDINGS, SiameseModel

if TYPE_CHECKING:
    from training.data.datasets import ImageRecord
    from training.engine.config import TrainConfig


@dataclass
class SiameseOptions:
    """The siamese section of a run config (``--siamese.dropout 0.2``).

    Attributes:
        dropout: Dropout on the squared difference and before each identity classifier, in [0, 1).
        embedding: ``pooled`` (the pooled backbone feature) or ``bnneck`` (a BN neck after the pooling).
        relu: ReLU after the square layer (the fusion paper's layer list; an identity on a square).
    """

    dropout: float = formerly("siamese_dropout", 0.5)
    embedding: str = formerly("siamese_embedding", "pooled")
    relu: bool = formerly("siamese_relu", False)

    def __post_init__(self) -> None:
        unit_interval("siamese.dropout", self.dropout)
        if self.embedding not in SIAMESE_EMBEDDINGS:
            raise ValueError(
                f"siamese.embedding must be one of {', '.join(SIAMESE_EMBEDDINGS)}; got {self.embedding!r}"
            )


def pair_batch(batch: list[Any], device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Images A, images B, same-person targets and the person ids of A then B, of a pair batch."""
    images_a, images_b = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
    return images_a, images_b, batch[4].to(device), torch.cat((batch[2], batch[3])).to(device)


def head_weights(model: nn.Module) -> HeadWeights:
    """The verification head's exact logistic form (what ``head_weights.npz`` stores).

    Raises:
        ValueError: The model has no verification head.
    """
    head = getattr(model, "verification_head", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no verification_head (softmax scoring is Siamese only)")
    weight, bias = head.effective_weights()
    return HeadWeights(weight=weight.detach().float().cpu().numpy(), bias=float(bias.item()))


def softmax_same_probability(model: nn.Module, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Q × G ``p(same)`` of a Siamese model's head for every query-gallery pair, as the service computes it
    (:func:`service.contract.scoring.score_matrix`, the ``softmax`` index's algebra: no Q × G × D tensor).

    Raises:
        ValueError: The model has no verification head.
    """
    return score_matrix("softmax", query, gallery, head_weights(model))


@register_family
class SiameseFamily(ImageEmbeddingFamily[SiameseOptions]):
    """Shared backbone over image pairs + square-layer verification head (+ ID), papers 000 / 004.

    Backbone → pooled features → square-layer verification head (+ identity classifiers).
    """

    name = "siamese"
    pairs = True
    losses = ("id", "verification", "contrastive")
    default_metric = "softmax"
    scoring_metrics = (*SERVED_EMBEDDING_METRICS, "softmax")

    def architecture(self, cfg: TrainConfig) -> str:
        options = self.options(cfg)
        name = f"{self.name}:{cfg.backbone}"
        if options.embedding != "pooled":
            name += f"+{options.embedding}"
        return name + ("+noid" if cfg.id_weight == 0 else "")

    def build(self, cfg: TrainConfig, num_classes: int) -> nn.Module:
        options = self.options(cfg)
        return SiameseModel(
            build_backbone_of(cfg), num_classes=num_classes if cfg.id_weight > 0 else None,
            dropout=options.dropout, embedding=options.embedding, pool=cfg.pooling, relu=options.relu,
        )

    def loss_terms(
        self, net: nn.Module, batch: list[Any], losses: dict[str, nn.Module], device: torch.device
    ) -> tuple[dict[str, Tensor], int]:
        images_a, images_b, same, pids = pair_batch(batch, device)
        out = net(images_a, images_b)
        inputs = {"verification": (out.verif_logits.float(), same), "contrastive": (out.f1, out.f2, same)}
        if out.id_logits1 is not None and out.id_logits2 is not None:
            inputs["id"] = (torch.cat((out.id_logits1, out.id_logits2)).float(), pids)
        return {name: loss(*inputs[name]) for name, loss in losses.items()}, 2 * images_a.shape[0]

    def paper_counted_params(self, cfg: TrainConfig, model: nn.Module) -> int | None:
        """Paper 000 counts EfficientNet with its 1000-way ImageNet top (see :mod:`training.engine.sizes`)."""
        from training.models.flops import count_parameters

        if not cfg.backbone.startswith("efficientnet"):
            return None
        backbone: Any = model.backbone
        feature_dim, imagenet_classes = int(backbone.feature_dim), 1000
        return count_parameters(backbone) + feature_dim * imagenet_classes + imagenet_classes

    def evaluate(
        self, model: nn.Module, query: list[ImageRecord], gallery: list[ImageRecord], settings: EvalSettings
    ) -> EvaluationResult:
        """The embedding ranking, plus the head's ranking (``metrics["softmax"]``) and its Q × G scores."""
        result = evaluate_embeddings(model, query, gallery, settings)
        qf, gf = result.query_features, result.gallery_features
        result.scores["softmax"] = softmax_same_probability(model, qf, gf)
        same = result.scores["softmax"]
        if settings.flip:  # the ranking uses flip TTA; the calibration scores stay without it
            rank_qf = extract_features(model, query, settings, flip=True)
            rank_gf = extract_features(model, gallery, settings, flip=True)
            same = softmax_same_probability(model, rank_qf, rank_gf)
        softmax = rank_metrics(1.0 - same, result.ids(), single_shot=settings.single_shot)
        result.metrics["softmax"] = {k: v for k, v in softmax.items() if k != "cmc"}
        return result

    def export(
        self, model: nn.Module, folder: Path, images: np.ndarray, *, fp16: bool, opset: int
    ) -> WrittenGraphs:
        embedder = self.embedder(model)
        written, embeddings = write_embedding_graph(embedder, folder, images, fp16=fp16, opset=opset)
        head: Any = model.verification_head
        write_verification_head(head, folder, embeddings, written, opset=opset)
        return written

    def calibration_head(self, written: WrittenGraphs, folder: Path) -> HeadWeights | None:
        return HeadWeights.from_npz(folder / HEAD_WEIGHTS_FILE, written.embedding_dim)

    def describe(self, cfg: TrainConfig) -> str:
        return f"{cfg.backbone} siamese + verification head"

    def manifest_fields(self, cfg: TrainConfig, written: WrittenGraphs, fp16: bool) -> dict[str, Any]:
        fields = super().manifest_fields(cfg, written, fp16)
        return {**fields, "kind": "siamese", "verification": VerificationSpec(same_index=SAME_INDEX)}
