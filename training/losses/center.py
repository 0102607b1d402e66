"""Center loss (Wen et al. 2016) as used by BoT: pulls each feature toward a learned center of its identity.

The centers are an ``nn.Parameter`` updated by their own SGD optimizer (:func:`center_optimizer`, lr 0.5). The
total loss adds ``β · center_loss`` (β = 0.0005 in BoT); after ``backward()`` the center gradients are divided
by β (:func:`rescale_center_gradients`) so the centers move independently of β, and then the center optimizer
steps::

    total = id_loss + triplet_loss + beta * center_loss(features, labels)
    optimizer.zero_grad(); center_opt.zero_grad()
    total.backward()
    optimizer.step()
    rescale_center_gradients(center_loss, weight=beta)
    center_opt.step()

Exclude ``center_loss.parameters()`` from the model optimizer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.checks import positive


class CenterLoss(nn.Module):
    """``mean_n ||f_n − c_{y_n}||²`` (BoT's implementation: sum of squares, averaged over the batch).

    Args:
        num_classes: Number of identities.
        feat_dim: Feature size D.
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(f"num_classes and feat_dim must be >= 1, got {num_classes} and {feat_dim}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Mean squared distance of each feature (N × D) to the center of its label (N)."""
        if features.dim() != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"expected features N×{self.feat_dim}, got {tuple(features.shape)}")
        return (features - self.centers[labels.long()]).pow(2).sum(dim=1).mean()


def center_optimizer(center_loss: CenterLoss, lr: float = 0.5) -> torch.optim.SGD:
    """The separate plain-SGD optimizer for the centers (BoT: lr 0.5)."""
    positive("lr", lr)
    return torch.optim.SGD(center_loss.parameters(), lr=lr)


def rescale_center_gradients(center_loss: CenterLoss, weight: float) -> None:
    """Divide the center gradients by the loss weight β (undo its scaling) before the center step."""
    positive("weight", weight)
    for param in center_loss.parameters():
        if param.grad is not None:
            param.grad.mul_(1.0 / weight)
