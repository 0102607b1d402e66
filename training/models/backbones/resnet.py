"""ResNet-50 (He et al. 2016), torchvision layout (v1.5: stride on the 3×3 conv), without ``fc``.

Levels (strides for ``last_stride=2``): ``stem`` (conv1 + bn1 + relu + maxpool, /4), ``layer1`` (/4, 256 ch),
``layer2`` (/8, 512), ``layer3`` (/16, 1024), ``layer4`` (/32, 2048). ``last_stride=1`` keeps ``layer4`` at
/16, the usual re-ID setting (Luo et al. 2019, bag of tricks): a 256×128 image gives a 16×8 map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.models.backbones.base import Backbone, LevelStep
from training.models.backbones.layers import init_conv_bn
from training.models.backbones.registry import register_backbone


class IBN(nn.Module):
    """IBN-a normalisation (Pan et al., ECCV 2018): affine InstanceNorm on the first half of the channels
    (``IN``), BatchNorm on the rest (``BN``) — the names of IBN-Net and fast-reid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split_at = channels // 2
        self.IN = nn.InstanceNorm2d(self.split_at, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.split_at)

    def forward(self, x: Tensor) -> Tensor:
        first, second = x[:, : self.split_at].contiguous(), x[:, self.split_at :].contiguous()
        return torch.cat([self.IN(first), self.BN(second)], dim=1)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand (×4), plus a projected shortcut when the shape changes.

    ``ibn`` replaces the first BN by :class:`IBN` (ResNet-50-IBN-a, layers 1-3).
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, ibn: bool = False) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1: nn.Module = IBN(planes) if ibn else nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """Bottleneck ResNet with torchvision parameter names (``conv1``, ``bn1``, ``layer1.0.conv1`` …).

    Args:
        layers: Number of bottleneck blocks in ``layer1`` … ``layer4``.
        last_stride: Stride of ``layer4`` (2 as in ImageNet, 1 for re-ID).
    """

    def __init__(self, *, layers: tuple[int, int, int, int], last_stride: int = 2) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        stages = []
        for planes, num_blocks, stride in zip(
            (64, 128, 256, 512), layers, (1, 2, 2, last_stride), strict=True
        ):
            blocks = [Bottleneck(in_channels, planes, stride=stride)]
            in_channels = planes * Bottleneck.expansion
            blocks += [Bottleneck(in_channels, planes) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = in_channels
        init_conv_bn(self)

    def _stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def level_steps(self) -> list[LevelStep]:
        return [
            ("stem", self._stem),
            ("layer1", self.layer1),
            ("layer2", self.layer2),
            ("layer3", self.layer3),
            ("layer4", self.layer4),
        ]


@register_backbone("resnet50")
def resnet50(*, last_stride: int = 2) -> ResNet:
    """ResNet-50: 3-4-6-3 bottlenecks, 2048-d feature map, 23.5 M parameters."""
    return ResNet(layers=(3, 4, 6, 3), last_stride=last_stride)
