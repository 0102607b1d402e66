"""Optimizers and the learning-rate schedule (warm-up, then step or cosine), as small pure functions.

The schedule is a factor of the base learning rate evaluated at a *fractional* epoch and applied at every
step, so warm-up is smooth and ``--resume`` needs no scheduler state: the factor depends only on the position.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import torch
from torch import nn

from training.checks import at_least
from training.engine.config import TrainConfig

#: The cosine schedule decays to this fraction of the base learning rate.
COSINE_FLOOR = 0.01


def lr_factor(cfg: TrainConfig, epoch: float) -> float:
    """Multiplier of ``cfg.lr`` at fractional epoch ``epoch`` (0 = start of training).

    Warm-up: linear from ``warmup_factor`` to 1 over ``warmup_epochs``. Then ``step``: ``gamma`` to the
    number of milestones passed; ``cosine``: half a cosine from 1 to :data:`COSINE_FLOOR` at ``epochs``.
    """
    at_least("epoch", epoch, 0)
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * epoch / cfg.warmup_epochs
    if cfg.scheduler == "step":
        return cfg.gamma ** bisect.bisect_right(list(cfg.milestones), math.floor(epoch + 1e-9))
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
    return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(cfg: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, SGD (momentum, Nesterov off) or RMSprop over the trainable ``params`` at ``cfg.lr``.

    Raises:
        ValueError: Unknown optimizer name (lists the valid ones).
    """
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(trainable, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: adam, sgd, rmsprop")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr
