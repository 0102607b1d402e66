"""Verification loss: 2-way cross-entropy on the verification head's (different, same) logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.models.heads import DIFFERENT_INDEX, SAME_INDEX


def verification_targets(is_same: Tensor) -> Tensor:
    """Class targets: :data:`SAME_INDEX` for same-person pairs, :data:`DIFFERENT_INDEX` otherwise."""
    same = is_same.bool()
    same_target = torch.full_like(same, SAME_INDEX, dtype=torch.long)
    different_target = torch.full_like(same, DIFFERENT_INDEX, dtype=torch.long)
    return torch.where(same, same_target, different_target)


class VerificationLoss(nn.Module):
    """Mean cross-entropy of N × 2 verification logits against the same / different pair labels."""

    def forward(self, logits: Tensor, is_same: Tensor) -> Tensor:
        if logits.dim() != 2 or logits.shape[1] != 2:
            raise ValueError(f"expected verification logits N×2, got {tuple(logits.shape)}")
        return F.cross_entropy(logits, verification_targets(is_same))
