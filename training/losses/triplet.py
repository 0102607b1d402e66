"""Triplet loss with batch-hard mining (Hermans et al., "In Defense of the Triplet Loss"; BoT margin 0.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def euclidean_distances(features: Tensor) -> Tensor:
    """Pairwise Euclidean distances N × N, clamped at 1e-12 before the square root (finite gradients).

    Computed in float32 even under autocast: in float16 the clamp value underflows to 0 and the square root's
    gradient becomes infinite.
    """
    features = features.float()
    squared = features.pow(2).sum(dim=1, keepdim=True)
    d2 = squared + squared.t() - 2.0 * features @ features.t()
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_mining(distances: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """For each anchor, the hardest (farthest) positive and the hardest (closest) negative distance.

    The anchor counts as its own positive (distance ≈ 0), so an anchor without another image of its identity
    contributes ``d_ap ≈ 0``, as in torchreid / BoT.

    Args:
        distances: N × N distance matrix.
        labels: N identity labels.

    Returns:
        ``(d_ap, d_an)``, each of length N.

    Raises:
        ValueError: The batch has a single identity (no negatives).
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    if bool(same.all()):
        raise ValueError(
            f"batch-hard triplet mining needs at least 2 identities in the batch, got {labels.tolist()}"
        )
    d_ap = distances.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = distances.masked_fill(same, float("inf")).amin(dim=1)
    return d_ap, d_an


class TripletLoss(nn.Module):
    """Batch-hard triplet loss ``mean_a max(0, d(a, p*) − d(a, n*) + m)``, or soft ``softplus(d_ap − d_an)``.

    Args:
        margin: Margin m; None selects the soft-margin variant ``log(1 + exp(d_ap − d_an))``.
        normalize_features: L2-normalize the features before computing distances.
    """

    def __init__(self, margin: float | None = 0.3, *, normalize_features: bool = False) -> None:
        super().__init__()
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}")
        self.margin = margin
        self.normalize_features = normalize_features

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Mean batch-hard triplet loss over all anchors.

        Args:
            features: N × D features (BoT: the pooled feature before the BN neck).
            labels: N identity labels; the batch needs at least 2 identities.
        """
        if self.normalize_features:
            features = F.normalize(features, dim=1)
        d_ap, d_an = batch_hard_mining(euclidean_distances(features), labels)
        if self.margin is None:
            return F.softplus(d_ap - d_an).mean()
        return torch.relu(d_ap - d_an + self.margin).mean()
