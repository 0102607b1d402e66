"""Loss functions, one file per family: ID (label-smoothed CE), triplet, center, contrastive, verification."""

from training.losses.center import CenterLoss, center_optimizer, rescale_center_gradients
from training.losses.combined import CombinedLoss
from training.losses.contrastive import ContrastiveLoss, contrastive_loss_from_distances
from training.losses.cross_entropy import CrossEntropyLabelSmooth
from training.losses.factory import Penalty, build_loss
from training.losses.triplet import TripletLoss, batch_hard_mining, euclidean_distances
from training.losses.verification import VerificationLoss, verification_targets

__all__ = [
    "CenterLoss",
    "CombinedLoss",
    "ContrastiveLoss",
    "CrossEntropyLabelSmooth",
    "Penalty",
    "TripletLoss",
    "VerificationLoss",
    "batch_hard_mining",
    "build_loss",
    "center_optimizer",
    "contrastive_loss_from_distances",
    "euclidean_distances",
    "rescale_center_gradients",
    "verification_targets",
]
