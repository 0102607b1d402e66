"""Heads that sit on a backbone's feature map: BN-neck embedding head, identity classifier, verification head.

The embedding head follows the "bag of tricks" (BoT) BN neck: global pooling → (optional linear reduction)
→ BatchNorm1d with a frozen zero bias → bias-free linear classifier over the training identities. In training
mode it returns the identity logits and the pre-BN pooled feature (for the triplet / center losses); in eval
mode it returns only the post-BN embedding, so an exported graph has a single output.

The verification head is the square layer of the Siamese papers:
``(f1 − f2)² → [ReLU] → dropout → Linear(D, 2)``, two logits ordered ``(different, same)`` — see
:data:`SAME_INDEX` and :data:`DIFFERENT_INDEX`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.checks import at_least, positive, unit_interval

#: Index of the "same person" logit / probability in every verification output.
SAME_INDEX = 1
#: Index of the "different persons" logit / probability in every verification output.
DIFFERENT_INDEX = 0

POOLING_NAMES: tuple[str, ...] = ("avg", "gem", "max")


class HeadOutput(NamedTuple):
    """What :class:`BNNeckHead` returns in training mode.

    Attributes:
        logits: Identity logits, N × num_classes (computed from the post-BN embedding).
        features: Pooled (and reduced) feature before the BN neck, N × D, for metric losses (triplet, center).
    """

    logits: Tensor
    features: Tensor


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling: ``(mean(x^p))^(1/p)`` over the spatial dimensions, p = 1 is average, p → ∞ is max.

    Args:
        p: The norm exponent (3.0 as in fast-reid).
        eps: Lower clamp applied before the power so that negative / zero activations are defined.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = positive("GeM exponent p", p)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class _GlobalPool(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "avg":
            return x.mean(dim=(2, 3))
        return x.amax(dim=(2, 3))


def build_pooling(name: str) -> nn.Module:
    """Global pooling module N × C × h × w → N × C.

    Args:
        name: One of ``avg``, ``gem``, ``max``.
    """
    if name == "gem":
        return GeneralizedMeanPooling()
    if name in ("avg", "max"):
        return _GlobalPool(name)
    raise ValueError(f"unknown pooling {name!r}; valid names: {', '.join(POOLING_NAMES)}")


def _pool_if_needed(pool: nn.Module, x: Tensor) -> Tensor:
    if x.dim() == 4:
        return pool(x)
    if x.dim() == 2:
        return x
    raise ValueError(f"expected a feature map N×C×h×w or pooled features N×C, got shape {tuple(x.shape)}")


def bn_neck(dim: int) -> nn.BatchNorm1d:
    """BatchNorm1d with weight 1 and a frozen zero bias (BoT's BN neck)."""
    bn = nn.BatchNorm1d(dim)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn


class BNNeckHead(nn.Module):
    """BoT embedding head: pool → (optional reduction) → BN neck → bias-free identity classifier.

    Args:
        in_dim: Channels of the backbone's feature map.
        num_classes: Number of training identities (the classifier is used in training only).
        embedding_dim: If set, a bias-free linear layer (a 1×1 convolution after pooling) reduces the pooled
            feature to this size; None keeps ``in_dim``.
        pool: Global pooling, ``avg``, ``gem`` or ``max``.

    Forward: a feature map N × C × h × w (or already pooled N × C). Training mode returns :class:`HeadOutput`;
    eval mode returns the post-BN embedding N × D only.
    """

    def __init__(
        self, in_dim: int, num_classes: int, *, embedding_dim: int | None = None, pool: str = "avg"
    ) -> None:
        super().__init__()
        self.in_dim = at_least("in_dim", in_dim, 1)
        self.num_classes = at_least("num_classes", num_classes, 1)
        if embedding_dim is not None and embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1 or None, got {embedding_dim}")
        self.embedding_dim = embedding_dim if embedding_dim is not None else in_dim
        self.pool = build_pooling(pool)
        self.reduction: nn.Module
        if embedding_dim is None:
            self.reduction = nn.Identity()
        else:
            self.reduction = nn.Linear(in_dim, embedding_dim, bias=False)
            nn.init.kaiming_normal_(self.reduction.weight, mode="fan_out")
        self.bottleneck = bn_neck(self.embedding_dim)
        self.classifier = nn.Linear(self.embedding_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def pooled_features(self, feature_map: Tensor) -> Tensor:
        """Pooled and reduced feature before the BN neck, N × D."""
        return self.reduction(_pool_if_needed(self.pool, feature_map))

    def forward(self, feature_map: Tensor) -> HeadOutput | Tensor:
        features = self.pooled_features(feature_map)
        embeddings = self.bottleneck(features)
        if not self.training:
            return embeddings
        return HeadOutput(logits=self.classifier(embeddings), features=features)


class IdentityClassifier(nn.Module):
    """Dropout → Linear(in_dim, num_classes): the identification branch of the ID + verification fusion model.

    Args:
        in_dim: Feature size.
        num_classes: Number of training identities.
        dropout: Dropout probability applied to the feature before the linear layer.
    """

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        at_least("in_dim", in_dim, 1)
        self.num_classes = at_least("num_classes", num_classes, 1)
        self.dropout = nn.Dropout(unit_interval("dropout", dropout))
        self.classifier = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.classifier(self.dropout(features))


class VerificationHead(nn.Module):
    """Square-layer verification: ``(f1 − f2)² → [ReLU] → dropout → Linear(D, 2)`` → logits (different, same).

    The ReLU follows the ID + verification fusion paper, which writes it after the square layer. A square is
    never negative, so the ReLU is an identity in exact arithmetic; it is kept (and optional) so the module
    matches the paper's layer list. The 2-way linear layer is the paper's 1×1 convolution.

    Args:
        in_dim: Embedding size D.
        dropout: Dropout probability on the squared difference.
        relu: Apply the (identity) ReLU after the square layer.
    """

    def __init__(self, in_dim: int, *, dropout: float = 0.5, relu: bool = False) -> None:
        super().__init__()
        self.in_dim = at_least("in_dim", in_dim, 1)
        self.relu = relu
        self.dropout = nn.Dropout(unit_interval("dropout", dropout))
        self.classifier = nn.Linear(in_dim, 2)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, embeddings_a: Tensor, embeddings_b: Tensor) -> Tensor:
        if embeddings_a.shape != embeddings_b.shape or embeddings_a.dim() != 2:
            raise ValueError(
                f"expected two N×{self.in_dim} embeddings of the same shape, "
                f"got {tuple(embeddings_a.shape)} and {tuple(embeddings_b.shape)}"
            )
        squared = (embeddings_a - embeddings_b).pow(2)
        if self.relu:
            squared = F.relu(squared)
        return self.classifier(self.dropout(squared))

    def same_probability(self, embeddings_a: Tensor, embeddings_b: Tensor) -> Tensor:
        """Probability that each pair shows the same person, N (softmax over the two logits)."""
        return self.forward(embeddings_a, embeddings_b).softmax(dim=1)[:, SAME_INDEX]

    @torch.no_grad()
    def effective_weights(self) -> tuple[Tensor, Tensor]:
        """Weights of the same-minus-different logit: ``p_same = sigmoid(Σ w_i (a_i − b_i)² + b)``.

        With two logits, ``softmax(z)[SAME] = sigmoid(z[SAME] − z[DIFFERENT])``, so in eval mode (no dropout)
        the head is exactly a logistic regression on the squared difference. The service can use this to
        score pairs of stored embeddings without running the head.

        Returns:
            ``w`` (D) = W[SAME] − W[DIFFERENT] and the scalar bias ``b`` = bias[SAME] − bias[DIFFERENT].
        """
        weight = self.classifier.weight
        bias = self.classifier.bias
        return (
            (weight[SAME_INDEX] - weight[DIFFERENT_INDEX]).detach().clone(),
            (bias[SAME_INDEX] - bias[DIFFERENT_INDEX]).detach().clone(),
        )
