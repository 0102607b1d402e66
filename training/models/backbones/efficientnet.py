"""EfficientNet-B0 … B5 (Tan & Le 2019), torchvision layout ``features.0`` … ``features.8``, no classifier.

``features.0`` is the 3×3/2 stem, ``features.1`` … ``features.7`` the seven MBConv stages (block ``j`` of
stage ``i`` is ``features.i.j``, its layers ``block.N``; squeeze-excitation ``fc1`` / ``fc2``), ``features.8``
the 1×1 conv to ``4 × last stage channels`` (1280 for B0, 2048 for B5). Compound scaling multiplies the B0
widths (rounded to multiples of 8) and depths (rounded up) by the (width, depth) pairs below.

Levels: ``stem`` (/2), ``stage1`` (/2), ``stage2`` (/4), ``stage3`` (/8), ``stage4`` (/16), ``stage5`` (/16),
``stage6`` (/32), ``stage7`` (/32), ``head`` (/32) = the final feature map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from training.checks import unit_interval
from training.models.backbones.base import Backbone, LevelStep
from training.models.backbones.layers import (
    NormFactory,
    SqueezeExcitation,
    StochasticDepth,
    conv_norm_act,
    init_conv_bn,
    make_divisible,
)
from training.models.backbones.registry import register_backbone


@dataclass(frozen=True)
class StageConfig:
    """One MBConv stage of EfficientNet-B0 (Table 1 of the paper)."""

    expand_ratio: int
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    num_blocks: int


EFFICIENTNET_B0_STAGES: tuple[StageConfig, ...] = (
    StageConfig(1, 3, 1, 32, 16, 1),
    StageConfig(6, 3, 2, 16, 24, 2),
    StageConfig(6, 5, 2, 24, 40, 2),
    StageConfig(6, 3, 2, 40, 80, 3),
    StageConfig(6, 5, 1, 80, 112, 3),
    StageConfig(6, 5, 2, 112, 192, 4),
    StageConfig(6, 3, 1, 192, 320, 1),
)

# (width multiplier, depth multiplier) per variant, as in the paper and torchvision.
COMPOUND_SCALING: dict[str, tuple[float, float]] = {
    "b0": (1.0, 1.0),
    "b1": (1.0, 1.1),
    "b2": (1.1, 1.2),
    "b3": (1.2, 1.4),
    "b4": (1.4, 1.8),
    "b5": (1.6, 2.2),
}


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand 1×1 (if ratio > 1) → depthwise k×k → SE → project 1×1 [+ input].

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        expand_ratio: Expansion of the hidden width.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride.
        stochastic_depth_prob: Probability of dropping the residual branch in training.
        norm: Normalisation factory.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        stochastic_depth_prob: float,
        norm: NormFactory,
    ) -> None:
        super().__init__()
        hidden = make_divisible(in_channels * expand_ratio, 8)
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(conv_norm_act(in_channels, hidden, kernel_size=1, norm=norm, activation=nn.SiLU))
        layers.append(
            conv_norm_act(
                hidden,
                hidden,
                kernel_size=kernel_size,
                stride=stride,
                groups=hidden,
                norm=norm,
                activation=nn.SiLU,
            )
        )
        # EfficientNet squeezes relative to the block *input* width (MobileNetV3: the expanded width).
        layers.append(
            SqueezeExcitation(
                hidden, max(1, in_channels // 4), activation=nn.SiLU, scale_activation=nn.Sigmoid
            )
        )
        layers.append(conv_norm_act(hidden, out_channels, kernel_size=1, norm=norm, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_residual else out


class EfficientNet(Backbone):
    """EfficientNet feature extractor scaled from B0 by ``width_mult`` and ``depth_mult``.

    Args:
        width_mult: Channel multiplier (widths rounded to multiples of 8).
        depth_mult: Block-count multiplier (rounded up per stage).
        stochastic_depth_prob: Drop probability of the last block; it grows linearly from 0 over the blocks.
        bn_eps: BatchNorm epsilon (torchvision uses 1e-3 with momentum 0.01 for B5, the defaults below).
        bn_momentum: BatchNorm momentum.
    """

    def __init__(
        self,
        *,
        width_mult: float,
        depth_mult: float,
        stochastic_depth_prob: float = 0.2,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        unit_interval("stochastic_depth_prob", stochastic_depth_prob)
        norm: NormFactory = partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)
        stages = [
            StageConfig(
                expand_ratio=s.expand_ratio,
                kernel_size=s.kernel_size,
                stride=s.stride,
                in_channels=make_divisible(s.in_channels * width_mult, 8),
                out_channels=make_divisible(s.out_channels * width_mult, 8),
                num_blocks=math.ceil(s.num_blocks * depth_mult),
            )
            for s in EFFICIENTNET_B0_STAGES
        ]
        layers: list[nn.Module] = [
            conv_norm_act(3, stages[0].in_channels, kernel_size=3, stride=2, norm=norm, activation=nn.SiLU)
        ]
        total_blocks = sum(s.num_blocks for s in stages)
        block_id = 0
        for s in stages:
            blocks = []
            for j in range(s.num_blocks):
                blocks.append(
                    MBConv(
                        in_channels=s.in_channels if j == 0 else s.out_channels,
                        out_channels=s.out_channels,
                        expand_ratio=s.expand_ratio,
                        kernel_size=s.kernel_size,
                        stride=s.stride if j == 0 else 1,
                        stochastic_depth_prob=stochastic_depth_prob * block_id / total_blocks,
                        norm=norm,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        last_in = stages[-1].out_channels
        self.feature_dim = 4 * last_in
        layers.append(conv_norm_act(last_in, self.feature_dim, kernel_size=1, norm=norm, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        init_conv_bn(self)

    def level_steps(self) -> list[LevelStep]:
        names = ["stem"] + [f"stage{i}" for i in range(1, len(self.features) - 1)] + ["head"]
        return list(zip(names, self.features, strict=True))


def _efficientnet(variant: str, stochastic_depth_prob: float) -> EfficientNet:
    width_mult, depth_mult = COMPOUND_SCALING[variant]
    # torchvision's B5 (ported TF weights) uses TensorFlow's BatchNorm settings.
    bn = {"bn_eps": 1e-3, "bn_momentum": 0.01} if variant == "b5" else {}
    return EfficientNet(
        width_mult=width_mult, depth_mult=depth_mult, stochastic_depth_prob=stochastic_depth_prob, **bn
    )


@register_backbone("efficientnet_b0")
def efficientnet_b0(*, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B0 features: 1280-d feature map at stride 32, 4.0 M parameters."""
    return _efficientnet("b0", stochastic_depth_prob)


@register_backbone("efficientnet_b1")
def efficientnet_b1(*, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B1 features (width 1.0, depth 1.1): 1280-d feature map."""
    return _efficientnet("b1", stochastic_depth_prob)


@register_backbone("efficientnet_b2")
def efficientnet_b2(*, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B2 features (width 1.1, depth 1.2): 1408-d feature map."""
    return _efficientnet("b2", stochastic_depth_prob)


@register_backbone("efficientnet_b3")
def efficientnet_b3(*, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B3 features (width 1.2, depth 1.4): 1536-d feature map."""
    return _efficientnet("b3", stochastic_depth_prob)


@register_backbone("efficientnet_b4")
def efficientnet_b4(*, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B4 features (width 1.4, depth 1.8): 1792-d feature map."""
    return _efficientnet("b4", stochastic_depth_prob)


@register_backbone("efficientnet_b5")
def efficientnet_b5(*, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """EfficientNet-B5 features (width 1.6, depth 2.2): 2048-d feature map."""
    return _efficientnet("b5", stochastic_depth_prob)
