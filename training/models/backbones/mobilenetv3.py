"""MobileNetV3-Large (Howard et al. 2019), torchvision layout ``features.0`` … ``features.16``, no classifier.

``features.0`` is the 3×3/2 stem (hard-swish), ``features.1`` … ``features.15`` the inverted-residual blocks
(``block.N``; squeeze-excitation ``fc1`` / ``fc2`` with a hard-sigmoid gate), ``features.16`` the 1×1 conv to
960 channels. The classifier (960 → 1280 → 1000) is left out: 3.0 M parameters remain.

Levels are ``features.0`` … ``features.16``; the strides change after ``features.0`` (/2),
``features.2`` (/4), ``features.4`` (/8), ``features.7`` (/16) and ``features.13`` (/32).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from training.models.backbones.base import Backbone, LevelStep
from training.models.backbones.layers import (
    NormFactory,
    SqueezeExcitation,
    conv_norm_act,
    init_conv_bn,
    make_divisible,
)
from training.models.backbones.registry import register_backbone


@dataclass(frozen=True)
class InvertedResidualConfig:
    """One row of Table 1 of the MobileNetV3 paper."""

    in_channels: int
    kernel_size: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    use_hardswish: bool
    stride: int


# input, kernel, expanded, output, SE, hard-swish, stride
MOBILENETV3_LARGE: tuple[InvertedResidualConfig, ...] = tuple(
    InvertedResidualConfig(*row)
    for row in (
        (16, 3, 16, 16, False, False, 1),
        (16, 3, 64, 24, False, False, 2),
        (24, 3, 72, 24, False, False, 1),
        (24, 5, 72, 40, True, False, 2),
        (40, 5, 120, 40, True, False, 1),
        (40, 5, 120, 40, True, False, 1),
        (40, 3, 240, 80, False, True, 2),
        (80, 3, 200, 80, False, True, 1),
        (80, 3, 184, 80, False, True, 1),
        (80, 3, 184, 80, False, True, 1),
        (80, 3, 480, 112, True, True, 1),
        (112, 3, 672, 112, True, True, 1),
        (112, 5, 672, 160, True, True, 2),
        (160, 5, 960, 160, True, True, 1),
        (160, 5, 960, 160, True, True, 1),
    )
)


class InvertedResidual(nn.Module):
    """Expand (1×1, skipped when no expansion) → depthwise k×k → [SE] → project (1×1, linear) [+ input]."""

    def __init__(self, cfg: InvertedResidualConfig, *, norm: NormFactory) -> None:
        super().__init__()
        activation = nn.Hardswish if cfg.use_hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if cfg.expanded_channels != cfg.in_channels:
            layers.append(
                conv_norm_act(
                    cfg.in_channels, cfg.expanded_channels, kernel_size=1, norm=norm, activation=activation
                )
            )
        layers.append(
            conv_norm_act(
                cfg.expanded_channels,
                cfg.expanded_channels,
                kernel_size=cfg.kernel_size,
                stride=cfg.stride,
                groups=cfg.expanded_channels,
                norm=norm,
                activation=activation,
            )
        )
        if cfg.use_se:
            squeeze = make_divisible(cfg.expanded_channels // 4, 8)
            layers.append(
                SqueezeExcitation(
                    cfg.expanded_channels, squeeze, activation=nn.ReLU, scale_activation=nn.Hardsigmoid
                )
            )
        layers.append(
            conv_norm_act(cfg.expanded_channels, cfg.out_channels, kernel_size=1, norm=norm, activation=None)
        )
        self.block = nn.Sequential(*layers)
        self.use_residual = cfg.stride == 1 and cfg.in_channels == cfg.out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


class MobileNetV3(Backbone):
    """MobileNetV3 feature extractor: stem, inverted residuals, 1×1 conv to ``6 × last block channels``.

    Args:
        blocks: Inverted-residual configurations.
    """

    def __init__(self, *, blocks: tuple[InvertedResidualConfig, ...] = MOBILENETV3_LARGE) -> None:
        super().__init__()
        norm: NormFactory = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        layers: list[nn.Module] = [
            conv_norm_act(
                3, blocks[0].in_channels, kernel_size=3, stride=2, norm=norm, activation=nn.Hardswish
            )
        ]
        layers += [InvertedResidual(cfg, norm=norm) for cfg in blocks]
        last_in = blocks[-1].out_channels
        self.feature_dim = 6 * last_in
        layers.append(
            conv_norm_act(last_in, self.feature_dim, kernel_size=1, norm=norm, activation=nn.Hardswish)
        )
        self.features = nn.Sequential(*layers)
        init_conv_bn(self)

    def level_steps(self) -> list[LevelStep]:
        return [(f"features.{i}", layer) for i, layer in enumerate(self.features)]


@register_backbone("mobilenetv3_large")
def mobilenetv3_large() -> MobileNetV3:
    """MobileNetV3-Large features: 960-d feature map at stride 32, 3.0 M parameters."""
    return MobileNetV3(blocks=MOBILENETV3_LARGE)
