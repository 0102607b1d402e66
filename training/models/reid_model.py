"""Re-ID models composed from a backbone and heads, and the eval-only wrappers that ONNX export traces.

- :class:`EmbeddingModel`: backbone → :class:`BNNeckHead` (BoT / OSNet recipes: ID + triplet + center losses).
- :class:`SiameseModel`: a shared backbone over two images → pooled features → verification head on
  ``(f1 − f2)²`` and optional identity classifiers (EfficientNet Siamese and ID + verification fusion papers).
- :class:`EmbeddingExport` (images → embeddings) and :class:`VerificationHeadExport` (two embedding batches →
  probabilities N × 2): what ``embedding.onnx`` and ``verification.onnx`` contain.

A backbone is any ``nn.Module`` with an int attribute ``feature_dim`` whose ``forward(x)`` returns the final,
unpooled feature map N × feature_dim × h × w.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor, nn

from training.models.heads import (
    BNNeckHead,
    HeadOutput,
    IdentityClassifier,
    VerificationHead,
    bn_neck,
    build_pooling,
)

SIAMESE_EMBEDDINGS: tuple[str, ...] = ("pooled", "bnneck")


class _Embedder(Protocol):
    embedding_dim: int

    def embed(self, images: Tensor) -> Tensor: ...


def _feature_dim(backbone: nn.Module) -> int:
    dim = getattr(backbone, "feature_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"the backbone needs an int attribute feature_dim >= 1, got {dim!r}")
    return dim


class EmbeddingModel(nn.Module):
    """Backbone → BN-neck head. Training mode returns :class:`HeadOutput`; eval mode the embeddings N × D.

    Args:
        backbone: Feature extractor with ``feature_dim`` (unpooled feature map output).
        head: The embedding head; its ``in_dim`` must equal ``backbone.feature_dim``.
    """

    def __init__(self, backbone: nn.Module, head: BNNeckHead) -> None:
        super().__init__()
        feature_dim = _feature_dim(backbone)
        if head.in_dim != feature_dim:
            raise ValueError(f"head.in_dim {head.in_dim} does not match backbone.feature_dim {feature_dim}")
        self.backbone = backbone
        self.head = head
        self.embedding_dim: int = head.embedding_dim
        self.num_classes: int = head.num_classes

    def forward(self, images: Tensor) -> HeadOutput | Tensor:
        return self.head(self.backbone(images))

    def embed(self, images: Tensor) -> Tensor:
        """Post-BN embeddings N × D (uses batch statistics if the model is in training mode)."""
        return self.head.bottleneck(self.head.pooled_features(self.backbone(images)))


class SiameseOutput(NamedTuple):
    """What :class:`SiameseModel` returns.

    Attributes:
        verif_logits: Verification logits N × 2, ordered (different, same).
        id_logits1: Identity logits of the first images, or None without identity classifier.
        id_logits2: Identity logits of the second images, or None.
        f1: Pooled features of the first images (before the optional BN neck), for metric losses.
        f2: Pooled features of the second images.
    """

    verif_logits: Tensor
    id_logits1: Tensor | None
    id_logits2: Tensor | None
    f1: Tensor
    f2: Tensor


class SiameseModel(nn.Module):
    """Shared backbone over an image pair → pooled features → verification (+ optional identification).

    Both images go through the backbone in one concatenated batch (one set of BN statistics).

    Args:
        backbone: Feature extractor with ``feature_dim`` (unpooled feature map output).
        num_classes: Training identities for the identification branch, or None for verification only.
        dropout: Dropout in the verification head and the identity classifiers.
        relu: ReLU after the square layer (as the fusion paper draws it; an identity on a square).
        embedding: ``pooled`` — the embedding is the pooled feature; ``bnneck`` — a BN neck (frozen zero bias)
            follows the pooling. The verification head and identity classifiers take the embedding.
        pool: Global pooling, ``avg``, ``gem`` or ``max``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int | None,
        dropout: float = 0.5,
        relu: bool = False,
        embedding: str = "pooled",
        pool: str = "avg",
    ) -> None:
        super().__init__()
        if embedding not in SIAMESE_EMBEDDINGS:
            raise ValueError(f"unknown embedding {embedding!r}; valid: {', '.join(SIAMESE_EMBEDDINGS)}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.backbone = backbone
        self.embedding_dim: int = _feature_dim(backbone)
        self.num_classes = num_classes
        self.embedding = embedding
        self.pool = build_pooling(pool)
        self.neck: nn.Module = bn_neck(self.embedding_dim) if embedding == "bnneck" else nn.Identity()
        self.verification_head = VerificationHead(self.embedding_dim, dropout=dropout, relu=relu)
        self.identity_classifier: IdentityClassifier | None = (
            IdentityClassifier(self.embedding_dim, num_classes, dropout=dropout)
            if num_classes is not None
            else None
        )

    def pooled_features(self, images: Tensor) -> Tensor:
        """Pooled backbone features N × D (before the optional BN neck)."""
        return self.pool(self.backbone(images))

    def embed(self, images: Tensor) -> Tensor:
        """Embeddings N × D: what ``embedding.onnx`` exports and what the verification head compares."""
        return self.neck(self.pooled_features(images))

    def forward(self, images_a: Tensor, images_b: Tensor) -> SiameseOutput:
        if images_a.shape != images_b.shape:
            raise ValueError(
                f"the two image batches differ in shape: {tuple(images_a.shape)} vs {tuple(images_b.shape)}"
            )
        n = images_a.shape[0]
        features = self.pooled_features(torch.cat((images_a, images_b), dim=0))
        embeddings = self.neck(features)
        emb_a, emb_b = embeddings[:n], embeddings[n:]
        verif_logits = self.verification_head(emb_a, emb_b)
        id_logits1 = id_logits2 = None
        if self.identity_classifier is not None:
            id_logits = self.identity_classifier(embeddings)
            id_logits1, id_logits2 = id_logits[:n], id_logits[n:]
        return SiameseOutput(verif_logits, id_logits1, id_logits2, features[:n], features[n:])


class EmbeddingExport(nn.Module):
    """Eval-only wrapper: images N × 3 × H × W → embeddings N × D (the graph of ``embedding.onnx``).

    Wraps an :class:`EmbeddingModel` or a :class:`SiameseModel` (anything with ``embed`` and
    ``embedding_dim``). Construction puts the wrapped model in eval mode; calling it in training mode raises,
    because a train-mode BN export gives batch-dependent embeddings.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(model, "embed", None)):
            raise ValueError(f"{type(model).__name__} has no embed(images) method")
        self.model = model
        self.embedding_dim: int = model.embedding_dim  # type: ignore[assignment]
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        if self.training:
            raise RuntimeError("EmbeddingExport runs in eval mode only; call .eval() first")
        model: _Embedder = self.model  # type: ignore[assignment]
        return model.embed(images)


class VerificationHeadExport(nn.Module):
    """Eval-only wrapper: (embeddings_a, embeddings_b) → softmax probabilities N × 2, (different, same).

    Args:
        head: The trained verification head (e.g. ``SiameseModel.verification_head``).
    """

    def __init__(self, head: VerificationHead) -> None:
        super().__init__()
        self.head = head
        self.eval()

    def forward(self, embeddings_a: Tensor, embeddings_b: Tensor) -> Tensor:
        if self.training:
            raise RuntimeError("VerificationHeadExport runs in eval mode only; call .eval() first")
        return self.head(embeddings_a, embeddings_b).softmax(dim=1)
