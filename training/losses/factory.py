"""Build a loss module by name from a run config (the families' default ``build_losses`` uses this)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from training.losses.center import CenterLoss
from training.losses.contrastive import ContrastiveLoss
from training.losses.cross_entropy import CrossEntropyLabelSmooth
from training.losses.triplet import TripletLoss
from training.losses.verification import VerificationLoss

if TYPE_CHECKING:
    from training.engine.config import TrainConfig


class Penalty(nn.Module):
    """A loss term the model already computed (e.g. the MLS STN rotation prior): returned as is."""

    def forward(self, penalty: Tensor) -> Tensor:
        return penalty


def build_loss(name: str, cfg: TrainConfig, num_classes: int, model: nn.Module) -> nn.Module:
    """The loss module ``name`` (``id``, ``triplet``, ``center``, ``verification``, ``contrastive``, ``stn``).

    Raises:
        ValueError: Unknown loss name.
    """
    if name == "id":
        return CrossEntropyLabelSmooth(num_classes, epsilon=cfg.label_smoothing)
    if name == "triplet":
        return TripletLoss(margin=cfg.triplet_margin)
    if name == "center":
        feat_dim: Any = model.embedding_dim
        return CenterLoss(num_classes, feat_dim=int(feat_dim))
    if name == "verification":
        return VerificationLoss()
    if name == "contrastive":
        return ContrastiveLoss(margin=cfg.contrastive_margin)
    if name == "stn":
        return Penalty()
    valid = "id, triplet, center, verification, contrastive, stn"
    raise ValueError(f"unknown loss {name!r}; valid losses: {valid}")
