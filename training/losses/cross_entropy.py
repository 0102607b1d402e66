"""Identity (ID) loss: cross-entropy with label smoothing (Szegedy et al.; BoT uses epsilon 0.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.checks import at_least, unit_interval


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy against smoothed one-hot targets ``(1 − ε)·onehot(y) + ε / C``.

    ``loss = mean_n Σ_c −q_{n,c} · log_softmax(logits)_{n,c}``. With uniform logits the loss is ``log(C)`` for
    every ε; with ε = 0 it is the plain cross-entropy.

    Args:
        num_classes: Number of identities C.
        epsilon: Smoothing ε in [0, 1).
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        self.num_classes = at_least("num_classes", num_classes, 1)
        self.epsilon = unit_interval("epsilon", epsilon)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean smoothed cross-entropy.

        Args:
            logits: N × C identity logits.
            targets: N integer identity labels in [0, C).
        """
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"expected logits N×{self.num_classes}, got {tuple(logits.shape)}")
        log_probs = torch.log_softmax(logits, dim=1)
        smoothed = torch.full_like(log_probs, self.epsilon / self.num_classes)
        smoothed.scatter_add_(
            1, targets.long().unsqueeze(1), torch.full_like(log_probs[:, :1], 1.0 - self.epsilon)
        )
        return (-smoothed * log_probs).sum(dim=1).mean()
