"""Layers shared by the MobileNetV3 and EfficientNet backbones, named like torchvision's ``ops.misc``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from training.checks import unit_interval

NormFactory = Callable[[int], nn.Module]
ActivationFactory = Callable[[], nn.Module]


def init_conv_bn(module: nn.Module) -> None:
    """He initialisation (fan-out) of every convolution, zero biases; batch norms start as the identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never going below 90 % of ``value``.

    This is the rounding of the MobileNet / EfficientNet reference code, so scaled widths match
    torchvision's exactly.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    norm: NormFactory,
    activation: ActivationFactory | None,
) -> nn.Sequential:
    """``Sequential(conv, norm[, activation])`` with "same" padding: parameters ``0.weight``, ``1.*``.

    Same layout as torchvision's ``Conv2dNormActivation``.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        ),
        norm(out_channels),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool → ``fc1`` (1×1 conv) → activation → ``fc2`` → gate × input.

    Args:
        channels: Input (and output) channels.
        squeeze_channels: Channels after ``fc1``.
        activation: Factory of the activation after ``fc1``.
        scale_activation: Factory of the gate activation (sigmoid or hard-sigmoid).
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        *,
        activation: ActivationFactory,
        scale_activation: ActivationFactory,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, kernel_size=1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, kernel_size=1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: Tensor) -> Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(scale))))
        return x * scale


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample with probability ``p`` during training (Huang et al. 2016).

    Kept samples are rescaled by ``1 / (1 - p)``; identity in eval mode or when ``p == 0``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        unit_interval("stochastic depth probability", p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"
