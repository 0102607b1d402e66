"""A small FLOP counter: forward hooks on the layers that do the arithmetic.

Convention (the one that reproduces the MLS paper's Table 5, 0.96 G for one (L2, L3) pair — see
``tests/training/models/test_mls.py``): we count **multiply-accumulates (MACs)** of the layers below and
report ``flops = 2 × MACs`` (a multiply and an add each count as one FLOP), for exactly the inputs passed
(one pair for a Siamese model). The paper does not spell its convention out; with ``flops = MACs`` the
(L2, L3) model would be 0.48 G, half the published figure, while ``2 × MACs`` lands within a few percent for
both published variants. Elementwise work (ReLU, softmax, normalisation, tanh) is not counted.

MACs per layer:

* ``Conv2d``: ``output elements × in_channels / groups × kh × kw``;
* ``Linear``: ``batch × in_features × out_features``;
* ``BatchNorm1d/2d``: one per element (the inference-time scale-and-shift);
* ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``: one per input element read;
* :class:`~training.models.stn.DepthwiseCorrelation`: ``N × S·C × H × W × f²``;
* :class:`~training.models.stn.PartSampler` (bilinear ``grid_sample``): four per sampled value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from training.models.stn import DepthwiseCorrelation, PartSampler


@dataclass
class FlopCount:
    """Result of :func:`count_flops`.

    Attributes:
        macs: Total multiply-accumulates.
        macs_by_layer_type: MACs per layer class name (``"Conv2d"``, ``"DepthwiseCorrelation"``, …).
    """

    macs: int = 0
    macs_by_layer_type: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        """FLOPs under this module's convention: ``2 × macs``."""
        return 2 * self.macs

    @property
    def gflops(self) -> float:
        """:attr:`flops` in units of 1e9."""
        return self.flops / 1e9

    def add(self, layer_type: str, macs: int) -> None:
        self.macs += macs
        self.macs_by_layer_type[layer_type] = self.macs_by_layer_type.get(layer_type, 0) + macs


def layer_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int | None:
    """MACs of one call of ``module``, or ``None`` for a module type that is not counted."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return (output.numel() // module.out_features) * module.in_features * module.out_features
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return output.numel()
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return inputs[0].numel()
    if isinstance(module, DepthwiseCorrelation):
        parts = inputs[1]
        return output.numel() * parts.shape[-2] * parts.shape[-1]
    if isinstance(module, PartSampler):
        return 4 * output.numel()
    return None


def count_flops(model: nn.Module, run: Callable[[], Any]) -> FlopCount:
    """Count the MACs of every hooked layer of ``model`` while ``run()`` executes (under ``no_grad``).

    Args:
        model: The module whose sub-modules are hooked (the model itself included).
        run: A callable doing one forward pass, e.g. ``lambda: model(images_a, images_b)``.

    Returns:
        The counts; ``.flops`` / ``.gflops`` apply the ``2 × MACs`` convention.
    """
    count = FlopCount()

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        macs = layer_macs(module, inputs, output)
        if macs is not None:
            count.add(type(module).__name__, int(macs))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return count


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
