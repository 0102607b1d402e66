"""OSNet, the omni-scale network for person re-ID (Zhou et al., ICCV 2019), with torchreid parameter names.

Architecture (width multiplier ``w`` ∈ {1.0, 0.75, 0.5, 0.25} scales channels ``[64, 256, 384, 512]``):

* ``conv1``: 7×7/2 conv + BN + ReLU (``conv1.conv``, ``conv1.bn``), then a 3×3/2 max-pool;
* ``conv2``, ``conv3``: two OSBlocks each, then a transition (1×1 conv + BN + ReLU, 2×2/2 average pool) as
  their third child (``conv2.2.0.conv``); ``conv4``: two OSBlocks, no transition;
* ``conv5``: 1×1 conv + BN + ReLU keeping the width (512 × ``w`` = ``feature_dim``).

An OSBlock reduces to a quarter of its output width (``conv1``), runs four streams of T = 1…4 Lite 3×3
layers (1×1 linear conv + depthwise 3×3 conv + BN + ReLU; ``conv2a``, ``conv2b.0``-``.1``,
``conv2c.0``-``.2``, ``conv2d.0``-``.3``), fuses them with one unified aggregation gate shared by the
streams (``gate``: global average pool → ``fc1`` (reduction 16) → ReLU → ``fc2`` → sigmoid, each stream
weighted by its own gate values and summed), restores the width with a linear 1×1 conv (``conv3``) and
adds the (projected, ``downsample``) input before a final ReLU.

torchreid's ImageNet model adds a 512-d ``fc`` (Linear + BN1d + ReLU) and a ``classifier``; both are head
parts here and are dropped when loading a torchreid checkpoint.

OSNet-IBN (``osnet_ibn_x1_0``, after Pan et al., ECCV 2018) replaces ``conv1``'s BN by an affine
InstanceNorm (still named ``conv1.bn``) and adds an affine InstanceNorm after the residual sum of every
``conv2`` block (``conv2.0.IN``, ``conv2.1.IN``), as torchreid does.

Levels: ``conv1`` (/2, before the max-pool), ``conv2`` (/8, after its transition), ``conv3`` (/16),
``conv4`` (/16), ``conv5`` (/16) = the final feature map (16×8 for a 256×128 image).
"""

from __future__ import annotations

from torch import Tensor, nn

from training.checks import at_least
from training.models.backbones.base import Backbone, LevelStep
from training.models.backbones.layers import init_conv_bn
from training.models.backbones.registry import register_backbone

OSNET_CHANNELS: tuple[int, int, int, int] = (64, 256, 384, 512)


class ConvLayer(nn.Module):
    """k×k conv (no bias) + BN (or affine InstanceNorm) + ReLU: parameters ``conv``, ``bn``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        stride: int = 1,
        instance_norm: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False
        )
        self.bn: nn.Module = (
            nn.InstanceNorm2d(out_channels, affine=True) if instance_norm else nn.BatchNorm2d(out_channels)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Conv1x1Linear(nn.Module):
    """1×1 conv + BN (optional) without activation (block output projection and shortcut)."""

    def __init__(self, in_channels: int, out_channels: int, *, bn: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if bn else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)


class LightConv3x3(nn.Module):
    """Lite 3×3: 1×1 linear conv (``conv1``) → depthwise 3×3 (``conv2``) → BN → ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, kernel_size=3, padding=1, groups=out_channels, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Unified aggregation gate: GAP → ``fc1`` → ReLU → ``fc2`` → sigmoid, multiplied onto the input."""

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * gate


class OSBlock(nn.Module):
    """Omni-scale residual block: four Lite-3×3 streams of depth 1…4 fused by one shared gate.

    With ``instance_norm`` (OSNet-IBN) an affine InstanceNorm (``IN``) follows the residual sum.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_reduction: int = 4,
        instance_norm: bool = False,
    ) -> None:
        super().__init__()
        mid = out_channels // bottleneck_reduction
        self.conv1 = ConvLayer(in_channels, mid, kernel_size=1)
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(4)))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_channels)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None
        # torchreid's parameter name (``conv2.0.IN.weight``)
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if instance_norm else None

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.conv1(x)
        fused = (
            self.gate(self.conv2a(reduced))
            + self.gate(self.conv2b(reduced))
            + self.gate(self.conv2c(reduced))
            + self.gate(self.conv2d(reduced))
        )
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(fused) + identity
        return nn.functional.relu(out if self.IN is None else self.IN(out))


def _osnet_stage(
    in_channels: int, out_channels: int, *, num_blocks: int, transition: bool, instance_norm: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [OSBlock(in_channels, out_channels, instance_norm=instance_norm)]
    layers += [
        OSBlock(out_channels, out_channels, instance_norm=instance_norm) for _ in range(num_blocks - 1)
    ]
    if transition:
        layers.append(
            nn.Sequential(ConvLayer(out_channels, out_channels, kernel_size=1), nn.AvgPool2d(2, stride=2))
        )
    return nn.Sequential(*layers)


class OSNet(Backbone):
    """OSNet feature extractor (``conv1`` … ``conv5``), no feature ``fc`` and no classifier.

    Args:
        channels: Widths of conv1 and of the conv2, conv3, conv4 stages (conv5 keeps the last).
        blocks_per_stage: OSBlocks in each of conv2, conv3, conv4.
        instance_norm: OSNet-IBN: InstanceNorm in ``conv1`` and after every ``conv2`` block.
    """

    def __init__(
        self, *, channels: tuple[int, int, int, int], blocks_per_stage: int = 2, instance_norm: bool = False
    ) -> None:
        super().__init__()
        at_least("blocks_per_stage", blocks_per_stage, 1)
        c1, c2, c3, c4 = channels
        self.conv1 = ConvLayer(3, c1, kernel_size=7, stride=2, instance_norm=instance_norm)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _osnet_stage(
            c1, c2, num_blocks=blocks_per_stage, transition=True, instance_norm=instance_norm
        )
        self.conv3 = _osnet_stage(c2, c3, num_blocks=blocks_per_stage, transition=True)
        self.conv4 = _osnet_stage(c3, c4, num_blocks=blocks_per_stage, transition=False)
        self.conv5 = ConvLayer(c4, c4, kernel_size=1)
        self.feature_dim = c4
        init_conv_bn(self)

    def _pool_conv2(self, x: Tensor) -> Tensor:
        return self.conv2(self.maxpool(x))

    def level_steps(self) -> list[LevelStep]:
        return [
            ("conv1", self.conv1),
            ("conv2", self._pool_conv2),
            ("conv3", self.conv3),
            ("conv4", self.conv4),
            ("conv5", self.conv5),
        ]


def osnet_channels(width_mult: float) -> tuple[int, int, int, int]:
    """conv1 … conv4 widths of OSNet at a width multiplier."""
    c1, c2, c3, c4 = (int(c * width_mult) for c in OSNET_CHANNELS)
    return c1, c2, c3, c4


def _osnet(width_mult: float, *, instance_norm: bool = False) -> OSNet:
    return OSNet(channels=osnet_channels(width_mult), instance_norm=instance_norm)


@register_backbone("osnet_x1_0")
def osnet_x1_0() -> OSNet:
    """OSNet ×1.0: widths 64-256-384-512, 512-d feature map at stride 16."""
    return _osnet(1.0)


@register_backbone("osnet_x0_75")
def osnet_x0_75() -> OSNet:
    """OSNet ×0.75: widths 48-192-288-384, 384-d feature map at stride 16."""
    return _osnet(0.75)


@register_backbone("osnet_x0_5")
def osnet_x0_5() -> OSNet:
    """OSNet ×0.5: widths 32-128-192-256, 256-d feature map at stride 16."""
    return _osnet(0.5)


@register_backbone("osnet_x0_25")
def osnet_x0_25() -> OSNet:
    """OSNet ×0.25: widths 16-64-96-128, 128-d feature map at stride 16."""
    return _osnet(0.25)


@register_backbone("osnet_ibn_x1_0")
def osnet_ibn_x1_0() -> OSNet:
    """OSNet-IBN ×1.0: OSNet ×1.0 with InstanceNorm in conv1 and the conv2 blocks (cross-domain re-ID)."""
    return _osnet(1.0, instance_norm=True)
