"""VGG-16 (Simonyan & Zisserman 2015), conv part only, torchvision layout ``features.0`` … ``features.30``.

Thirteen 3×3 conv + ReLU layers in five blocks, each block closed by a 2×2 max-pool; the fully connected
``classifier`` is left out (14.7 M parameters remain). Parameterised layers are
``features.{0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}``.

Levels are the block outputs **after** their max-pool: ``pool1`` (/2, 64 ch), ``pool2`` (/4, 128),
``pool3`` (/8, 256), ``pool4`` (/16, 512), ``pool5`` (/32, 512) = the final feature map.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from training.models.backbones.base import Backbone, LevelStep
from training.models.backbones.layers import init_conv_bn
from training.models.backbones.registry import register_backbone

# Output channels of the convs in each block ("configuration D" of the paper).
VGG16_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


class VGG(Backbone):
    """VGG feature extractor (no batch norm): blocks of 3×3 conv + ReLU, each followed by a max-pool.

    Args:
        blocks: Output channels of the convs of each block.
    """

    def __init__(self, *, blocks: tuple[tuple[int, ...], ...] = VGG16_BLOCKS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self._block_ends: list[int] = []  # index one past each block's max-pool in ``features``
        in_channels = 3
        for block in blocks:
            for out_channels in block:
                layers += [
                    nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                    nn.ReLU(inplace=True),
                ]
                in_channels = out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            self._block_ends.append(len(layers))
        self.features = nn.Sequential(*layers)
        self.feature_dim = in_channels
        init_conv_bn(self)

    def level_steps(self) -> list[LevelStep]:
        steps: list[LevelStep] = []
        start = 0
        for i, end in enumerate(self._block_ends, start=1):
            steps.append((f"pool{i}", partial(self._run_features, start=start, end=end)))
            start = end
        return steps

    def _run_features(self, x: Tensor, *, start: int, end: int) -> Tensor:
        for index in range(start, end):
            x = self.features[index](x)
        return x


@register_backbone("vgg16")
def vgg16() -> VGG:
    """VGG-16 convolutional layers: 512-d feature map at stride 32, 14.7 M parameters."""
    return VGG(blocks=VGG16_BLOCKS)
