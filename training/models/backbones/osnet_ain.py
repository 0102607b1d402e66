"""OSNet-AIN (Zhou et al., TPAMI 2021): OSNet with instance normalisation placed by architecture search.

torchreid's ``osnet_ain_x1_0`` … ``x0_25`` (the cross-domain models of its zoo), with its parameter names.
It differs from :mod:`.osnet` in three ways:

* every OSBlock keeps its four streams in a ``conv2`` list (``conv2.<t>.layers.<i>``, stream ``t`` has
  ``t + 1`` Lite 3×3 layers) instead of ``conv2a`` … ``conv2d``;
* some blocks are *IN-in* blocks: their ``conv3`` projection has no BN and an affine InstanceNorm (``IN``)
  normalises the residual branch before the sum. The pattern is ``[IN, IN]``, ``[plain, IN]``, ``[IN, plain]``
  for ``conv2``, ``conv3``, ``conv4``;
* the transitions are separate modules ``pool2`` and ``pool3`` (1×1 conv + BN + ReLU, 2×2/2 average pool),
  and ``conv1`` uses an affine InstanceNorm (still named ``conv1.bn``).

Levels: ``conv1`` (/2), ``conv2`` (/8, after ``pool2``), ``conv3`` (/16, after ``pool3``), ``conv4``,
``conv5`` (/16) = the final feature map, as for OSNet.
"""

from __future__ import annotations

from torch import Tensor, nn

from training.checks import at_least
from training.models.backbones.base import Backbone, LevelStep
from training.models.backbones.layers import init_conv_bn
from training.models.backbones.osnet import (
    ChannelGate,
    Conv1x1Linear,
    ConvLayer,
    LightConv3x3,
    osnet_channels,
)
from training.models.backbones.registry import register_backbone

#: Which blocks of conv2, conv3, conv4 are IN-in blocks (torchreid's searched architecture).
AIN_PATTERN: tuple[tuple[bool, bool], ...] = ((True, True), (False, True), (True, False))
#: Streams per block (depths 1 … T).
STREAMS = 4


class LightConvStream(nn.Module):
    """``depth`` Lite 3×3 layers in a row (parameters ``layers.<i>``)."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        at_least("depth", depth, 1)
        self.layers = nn.Sequential(*(LightConv3x3(channels, channels) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class AINBlock(nn.Module):
    """OSNet-AIN block; ``instance_norm`` makes it an IN-in block (InstanceNorm on the residual branch)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, instance_norm: bool, bottleneck_reduction: int = 4
    ) -> None:
        super().__init__()
        if out_channels % bottleneck_reduction:
            raise ValueError(f"out_channels {out_channels} is not divisible by {bottleneck_reduction}")
        mid = out_channels // bottleneck_reduction
        self.conv1 = ConvLayer(in_channels, mid, kernel_size=1)
        self.conv2 = nn.ModuleList(LightConvStream(mid, depth) for depth in range(1, STREAMS + 1))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_channels, bn=not instance_norm)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        # torchreid's parameter name (``conv2.0.IN.weight``)
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if instance_norm else None

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.conv1(x)
        fused = sum(self.gate(stream(reduced)) for stream in self.conv2)
        branch = self.conv3(fused)
        if self.IN is not None:
            branch = self.IN(branch)
        identity = x if self.downsample is None else self.downsample(x)
        return nn.functional.relu(branch + identity)


def _transition(channels: int) -> nn.Sequential:
    return nn.Sequential(ConvLayer(channels, channels, kernel_size=1), nn.AvgPool2d(2, stride=2))


def _stage(in_channels: int, out_channels: int, pattern: tuple[bool, ...]) -> nn.Sequential:
    return nn.Sequential(
        *(
            AINBlock(in_channels if i == 0 else out_channels, out_channels, instance_norm=instance_norm)
            for i, instance_norm in enumerate(pattern)
        )
    )


class OSNetAIN(Backbone):
    """OSNet-AIN feature extractor (``conv1`` … ``conv5``), no feature ``fc`` and no classifier.

    Args:
        channels: Widths of conv1 and of the conv2, conv3, conv4 stages (conv5 keeps the last).
    """

    def __init__(self, *, channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.conv1 = ConvLayer(3, c1, kernel_size=7, stride=2, instance_norm=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(c1, c2, AIN_PATTERN[0])
        self.pool2 = _transition(c2)
        self.conv3 = _stage(c2, c3, AIN_PATTERN[1])
        self.pool3 = _transition(c3)
        self.conv4 = _stage(c3, c4, AIN_PATTERN[2])
        self.conv5 = ConvLayer(c4, c4, kernel_size=1)
        self.feature_dim = c4
        init_conv_bn(self)  # InstanceNorm's affine parameters start at 1 / 0 already

    def _conv2(self, x: Tensor) -> Tensor:
        return self.pool2(self.conv2(self.maxpool(x)))

    def _conv3(self, x: Tensor) -> Tensor:
        return self.pool3(self.conv3(x))

    def level_steps(self) -> list[LevelStep]:
        return [
            ("conv1", self.conv1),
            ("conv2", self._conv2),
            ("conv3", self._conv3),
            ("conv4", self.conv4),
            ("conv5", self.conv5),
        ]


@register_backbone("osnet_ain_x1_0")
def osnet_ain_x1_0() -> OSNetAIN:
    """OSNet-AIN ×1.0: widths 64-256-384-512, 512-d feature map."""
    return OSNetAIN(channels=osnet_channels(1.0))


@register_backbone("osnet_ain_x0_75")
def osnet_ain_x0_75() -> OSNetAIN:
    """OSNet-AIN ×0.75: widths 48-192-288-384, 384-d feature map."""
    return OSNetAIN(channels=osnet_channels(0.75))


@register_backbone("osnet_ain_x0_5")
def osnet_ain_x0_5() -> OSNetAIN:
    """OSNet-AIN ×0.5: widths 32-128-192-256, 256-d feature map."""
    return OSNetAIN(channels=osnet_channels(0.5))


@register_backbone("osnet_ain_x0_25")
def osnet_ain_x0_25() -> OSNetAIN:
    """OSNet-AIN ×0.25: widths 16-64-96-128, 128-d feature map."""
    return OSNetAIN(channels=osnet_channels(0.25))
