"""A weighted sum of named loss terms, with the unweighted components returned for logging."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


class CombinedLoss:
    """``total = Σ weight[name] · loss[name]`` for a fixed set of named terms.

    BoT: ``CombinedLoss({"id": 1.0, "triplet": 1.0, "center": 0.0005})``; ID + verification fusion:
    ``CombinedLoss({"verification": 3.0, "id": 1.0})``.

    Args:
        weights: Loss name → weight (>= 0). The terms passed at call time must have exactly these names.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        if not weights:
            raise ValueError("CombinedLoss needs at least one named weight")
        bad = {name: w for name, w in weights.items() if w < 0}
        if bad:
            raise ValueError(f"loss weights must be >= 0, got {bad}")
        self.weights = dict(weights)

    def __call__(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Weighted total and a logging dict of the unweighted components plus ``total`` (floats).

        Raises:
            ValueError: The names of ``losses`` differ from the configured names.
        """
        if set(losses) != set(self.weights):
            raise ValueError(f"expected loss terms {sorted(self.weights)}, got {sorted(losses)}")
        total = torch.stack([self.weights[name] * value.reshape(()) for name, value in losses.items()]).sum()
        components = {name: float(value.detach()) for name, value in losses.items()}
        components["total"] = float(total.detach())
        return total, components
