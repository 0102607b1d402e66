"""Contrastive loss on pairs (Hadsell, Chopra & LeCun 2006; margin 1.0 in the multi-level similarity paper).

For a pair at Euclidean distance d with y = 1 for the same person and y = 0 otherwise::

    loss = mean( y · d² + (1 − y) · max(0, m − d)² ) / 2
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.checks import positive


def contrastive_loss_from_distances(distances: Tensor, is_same: Tensor, margin: float = 1.0) -> Tensor:
    """The contrastive loss for given pair distances (N) and same-person flags (N, bool or 0/1)."""
    same = is_same.to(distances.dtype)
    positive = same * distances.pow(2)
    negative = (1.0 - same) * torch.relu(margin - distances).pow(2)
    return (positive + negative).mean() / 2.0


class ContrastiveLoss(nn.Module):
    """Contrastive loss on embedding pairs: pulls same-person pairs together, pushes others beyond ``margin``.

    Args:
        margin: Distance beyond which different-person pairs cost nothing.
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        positive("margin", margin)
        self.margin = margin

    def forward(self, embeddings_a: Tensor, embeddings_b: Tensor, is_same: Tensor) -> Tensor:
        """Loss for N pairs of N × D embeddings and N same-person flags."""
        if embeddings_a.shape != embeddings_b.shape:
            raise ValueError(
                "embedding batches differ in shape: "
                f"{tuple(embeddings_a.shape)} vs {tuple(embeddings_b.shape)}"
            )
        # Clamp inside the square root: the gradient of sqrt is infinite at 0 (identical embeddings).
        # float32 because 1e-12 underflows to 0 in float16 (autocast).
        distances = (embeddings_a.float() - embeddings_b.float()).pow(2).sum(dim=1).clamp(min=1e-12).sqrt()
        return contrastive_loss_from_distances(distances, is_same, self.margin)
