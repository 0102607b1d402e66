"""The embedding family — backbone → BN-neck head, ID / triplet / center losses on P × K batches (BoT) — and
:class:`ImageEmbeddingFamily`, the base of every family whose model maps one image to one embedding.

An image-embedding family is evaluated by distances between embeddings (:func:`evaluate_embeddings`) and
exports one ``embedding.onnx`` (``images`` → ``embeddings``), calibrated for the cosine, correlation and
euclidean scoring modes: manifest kind ``embedding``. A subclass sets ``name`` and ``losses`` and implements
``architecture``, ``build`` and ``loss_terms``; it overrides ``embedder`` (the module exported as
``embedding.onnx``), ``default_metric`` or ``describe`` where it differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from service.contract.manifest import ScoringMode
from service.contract.preprocess import PreprocessSpec
from service.contract.scoring import SERVED_EMBEDDING_METRICS, HeadWeights
from training.evaluation.evaluator import EvalSettings, EvaluationResult, evaluate_embeddings
from training.export.calibrate import calibrate_scoring, onnx_embeddings
from training.export.graphs import WrittenGraphs, write_embedding_graph
from training.export.onnx_io import assert_eval_mode
from training.families.registry import Family, OptionsT, register_family
from training.models.backbones import Backbone
from training.models.reid_model import EmbeddingExport

if TYPE_CHECKING:
    from training.data.datasets import ImageRecord
    from training.engine.config import TrainConfig
    from training.export.exporter import ExportOptions

def held_out_arrays(held_out: list[ImageRecord]) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Paths, person ids and camera ids of the export's held-out images."""
    return (
        [r.path for r in held_out],
        np.array([r.person_id for r in held_out]),
        np.array([r.camera_id for r in held_out]),
    )


def build_backbone_of(cfg: TrainConfig) -> Backbone:
    """``cfg.backbone`` with its options (``last_stride``) and ``cfg.pretrained`` weights.

    Raises:
        ValueError: Unknown backbone (lists the valid ones) or an option the backbone does not take.
    """
    from training.models.backbones import build_backbone

    options: dict[str, Any] = {}
    if cfg.last_stride is not None:
        options["last_stride"] = cfg.last_stride
    try:
        return build_backbone(cfg.backbone, pretrained=cfg.pretrained, **options)
    except TypeError as exc:
        raise ValueError(f"backbone {cfg.backbone!r} does not take options {sorted(options)}: {exc}") from exc


def identity_batch(batch: list[Any], device: torch.device) -> tuple[Tensor, Tensor]:
    """Images and person ids of a P × K batch, on ``device``."""
    return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)


class ImageEmbeddingFamily(Family[OptionsT]):
    """Base of the families whose model embeds one image (``model.embed(images)``)."""

    default_metric: ClassVar[str] = "cosine"
    #: The scoring modes the export calibrates (the manifest's ``scoring``).
    scoring_metrics: ClassVar[tuple[str, ...]] = SERVED_EMBEDDING_METRICS

    def calibration_head(self, written: WrittenGraphs, folder: Path) -> HeadWeights | None:
        """The verification head's weights the ``softmax`` mode needs, where the export wrote them."""
        return None

    def embedder(self, model: nn.Module) -> nn.Module:
        """The module exported as ``embedding.onnx`` (images → embeddings), in eval mode.

        Raises:
            ExportError: A module of ``model`` is in training mode (named).
        """
        assert_eval_mode(model)
        return EmbeddingExport(model).eval()

    def describe(self, cfg: TrainConfig) -> str:
        """What the model is, for the manifest's description."""
        return f"{cfg.backbone} {self.name}"

    def evaluate(
        self, model: nn.Module, query: list[ImageRecord], gallery: list[ImageRecord], settings: EvalSettings
    ) -> EvaluationResult:
        return evaluate_embeddings(model, query, gallery, settings)

    def export(
        self, model: nn.Module, folder: Path, images: np.ndarray, *, fp16: bool, opset: int
    ) -> WrittenGraphs:
        return write_embedding_graph(self.embedder(model), folder, images, fp16=fp16, opset=opset)[0]

    def calibrate(
        self, written: WrittenGraphs, folder: Path, held_out: list[ImageRecord], spec: PreprocessSpec,
        opts: ExportOptions,
    ) -> tuple[dict[str, ScoringMode], dict[str, int]]:
        paths, person_ids, camera_ids = held_out_arrays(held_out)
        embeddings = onnx_embeddings(folder / written.files["embedding"], paths, spec)
        head = self.calibration_head(written, folder)
        return calibrate_scoring(
            embeddings, person_ids, camera_ids, self.scoring_metrics, head=head,
            max_negatives=opts.max_negatives, target_fmr=opts.target_fmr, seed=opts.seed,  # type: ignore[arg-type]
        )

    def manifest_fields(self, cfg: TrainConfig, written: WrittenGraphs, fp16: bool) -> dict[str, Any]:
        size = f"{cfg.height}×{cfg.width}" + (", fp16" if fp16 else "")
        description = f"{cfg.recipe}: {self.describe(cfg)}, {size}"
        return {"kind": "embedding", "description": description, "default_metric": self.default_metric}


@register_family
class EmbeddingFamily(ImageEmbeddingFamily[None]):
    """Backbone → BN-neck embedding; ID / triplet / center loss on P × K batches (BoT).

    The BN neck is optionally reduced to ``embedding_dim``; the identity classifier trains only.
    """

    name = "embedding"
    losses = ("id", "triplet", "center")

    def architecture(self, cfg: TrainConfig) -> str:
        name = f"{self.name}:{cfg.backbone}"
        return name + (f"+reduce{cfg.embedding_dim}" if cfg.embedding_dim is not None else "")

    def build(self, cfg: TrainConfig, num_classes: int) -> nn.Module:
        from training.models.heads import BNNeckHead
        from training.models.reid_model import EmbeddingModel

        backbone = build_backbone_of(cfg)
        head = BNNeckHead(
            backbone.feature_dim, num_classes, embedding_dim=cfg.embedding_dim, pool=cfg.pooling
        )
        return EmbeddingModel(backbone, head)

    def loss_terms(
        self, net: nn.Module, batch: list[Any], losses: dict[str, nn.Module], device: torch.device
    ) -> tuple[dict[str, Tensor], int]:
        images, pids = identity_batch(batch, device)
        out = net(images)
        logits, features = out.logits.float(), out.features.float()
        inputs = {"id": (logits, pids), "triplet": (features, pids), "center": (features, pids)}
        return {name: loss(*inputs[name]) for name, loss in losses.items()}, images.shape[0]
