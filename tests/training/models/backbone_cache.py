"""One eval-mode instance per backbone, shared by the backbone test modules."""

from __future__ import annotations

from functools import cache

import torch

from training.models.backbones import Backbone, build_backbone


@cache
def eval_backbone(name: str) -> Backbone:
    """One eval-mode instance per backbone for the whole session (building B5 or VGG costs ~0.3 s)."""
    torch.manual_seed(0)
    return build_backbone(name).eval()
