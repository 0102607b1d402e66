"""Backbone registry sweep, feature-map and level shapes, layers and parameter counts.

Loading torchvision / torchreid state dicts is tested in ``test_backbone_weights.py``.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from tests.training.models.backbone_cache import eval_backbone
from training.models.backbones import build_backbone, list_backbones
from training.models.backbones.layers import StochasticDepth, make_divisible

pytestmark = pytest.mark.usefixtures("single_thread")

ALL_BACKBONES = [
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "mobilenetv3_large",
    "osnet_ain_x0_25",
    "osnet_ain_x0_5",
    "osnet_ain_x0_75",
    "osnet_ain_x1_0",
    "osnet_ibn_x1_0",
    "osnet_x0_25",
    "osnet_x0_5",
    "osnet_x0_75",
    "osnet_x1_0",
    "resnet50",
    "vgg16",
]


def _torchvision_params_without_classifier(total: int, classifier_dims: list[int]) -> int:
    """torchvision's published ``num_params`` minus its Linear classifier layers ``d0 → d1 → … → 1000``."""
    linear = sum(d_in * d_out + d_out for d_in, d_out in pairwise(classifier_dims))
    return total - linear


# --------------------------------------------------------------------------- registry


def test_list_backbones_names_every_family() -> None:
    assert list_backbones() == sorted(list_backbones())
    assert set(ALL_BACKBONES) <= set(list_backbones())


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet51'.*'resnet50'.*'vgg16'"):
        build_backbone("resnet51")


def test_resnet_rejects_bad_last_stride() -> None:
    with pytest.raises(ValueError, match="last_stride must be 1 or 2, got 3"):
        build_backbone("resnet50", last_stride=3)


# --------------------------------------------------------------------------- sweep


@pytest.mark.parametrize("size", [(256, 128), (160, 80)], ids=["256x128", "160x80"])
@pytest.mark.parametrize("name", list_backbones())  # every registered backbone, future ones included
def test_sweep_feature_map_and_levels(name: str, size: tuple[int, int]) -> None:
    backbone = eval_backbone(name)
    batch = 1 if name in ("efficientnet_b4", "efficientnet_b5") else 2
    images = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feature_map = backbone(images)
        levels = backbone.forward_levels(images, backbone.level_names)
    assert feature_map.ndim == 4
    assert feature_map.shape[:2] == (batch, backbone.feature_dim)
    assert torch.isfinite(feature_map).all()
    assert list(levels) == backbone.level_names
    for level, level_map in levels.items():
        assert level_map.ndim == 4 and level_map.shape[0] == batch, level
        assert torch.isfinite(level_map).all(), level
    # The deepest level is the final feature map.
    torch.testing.assert_close(levels[backbone.level_names[-1]], feature_map)


EXPECTED_LEVEL_SHAPES_256X128: dict[str, dict[str, tuple[int, int, int]]] = {
    "resnet50": {
        "stem": (64, 64, 32),
        "layer1": (256, 64, 32),
        "layer2": (512, 32, 16),
        "layer3": (1024, 16, 8),
        "layer4": (2048, 8, 4),
    },
    "osnet_x1_0": {
        "conv1": (64, 128, 64),
        "conv2": (256, 32, 16),
        "conv3": (384, 16, 8),
        "conv4": (512, 16, 8),
        "conv5": (512, 16, 8),
    },
    "osnet_x0_25": {"conv1": (16, 128, 64), "conv5": (128, 16, 8)},
    "vgg16": {
        "pool1": (64, 128, 64),
        "pool2": (128, 64, 32),
        "pool3": (256, 32, 16),
        "pool4": (512, 16, 8),
        "pool5": (512, 8, 4),
    },
    "efficientnet_b0": {
        "stem": (32, 128, 64),
        "stage1": (16, 128, 64),
        "stage2": (24, 64, 32),
        "stage3": (40, 32, 16),
        "stage4": (80, 16, 8),
        "stage5": (112, 16, 8),
        "stage6": (192, 8, 4),
        "stage7": (320, 8, 4),
        "head": (1280, 8, 4),
    },
    "efficientnet_b5": {"head": (2048, 8, 4)},
    "mobilenetv3_large": {
        "features.0": (16, 128, 64),
        "features.2": (24, 64, 32),
        "features.4": (40, 32, 16),
        "features.7": (80, 16, 8),
        "features.13": (160, 8, 4),
        "features.16": (960, 8, 4),
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LEVEL_SHAPES_256X128))
def test_level_shapes_at_256x128(name: str) -> None:
    expected = EXPECTED_LEVEL_SHAPES_256X128[name]
    with torch.no_grad():
        levels = eval_backbone(name).forward_levels(torch.zeros(1, 3, 256, 128), list(expected))
    assert {level: tuple(m.shape[1:]) for level, m in levels.items()} == expected


def test_resnet_last_stride_1_keeps_stride_16() -> None:
    backbone = build_backbone("resnet50", last_stride=1).eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 256, 128)).shape == (1, 2048, 16, 8)


def test_unknown_or_empty_levels_raise() -> None:
    backbone = eval_backbone("osnet_x0_25")
    valid = r"\['conv1', 'conv2', 'conv3', 'conv4', 'conv5'\]"
    with pytest.raises(ValueError, match=rf"unknown level 'layer4'.*{valid}"):
        backbone.forward_levels(torch.zeros(1, 3, 64, 32), ["conv2", "layer4"])
    with pytest.raises(ValueError, match="at least one"):
        backbone.forward_levels(torch.zeros(1, 3, 64, 32), [])


def test_training_mode_backward_reaches_first_conv() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("osnet_x0_25").train()
    backbone(torch.randn(2, 3, 64, 32)).mean().backward()
    grad = dict(backbone.named_parameters())["conv1.conv.weight"].grad
    assert grad is not None and grad.abs().sum() > 0


def test_stochastic_depth_drops_whole_samples_in_training_only() -> None:
    torch.manual_seed(0)
    drop = StochasticDepth(0.5)
    x = torch.ones(64, 3, 2, 2)
    out = drop(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert (per_sample == per_sample[:, :1]).all()  # one decision per sample
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert torch.equal(drop.eval()(x), x)


def test_make_divisible_known_values() -> None:
    assert make_divisible(72 // 4) == 24  # MobileNetV3 SE squeeze of 72 channels: 16 < 0.9 × 18, bumped
    assert make_divisible(320 * 1.1) == 352  # EfficientNet-B2 last stage
    assert make_divisible(32 * 1.6) == 48  # EfficientNet-B5 stem
    assert make_divisible(16 * 1.1) == 16


# --------------------------------------------------------------------------- parameter counts

# torchvision's published num_params (model card meta) minus the classifier = backbone-only counts.
EXACT_PARAMS = {
    "resnet50": _torchvision_params_without_classifier(25_557_032, [2048, 1000]),
    "vgg16": _torchvision_params_without_classifier(138_357_544, [512 * 7 * 7, 4096, 4096, 1000]),
    "mobilenetv3_large": _torchvision_params_without_classifier(5_483_032, [960, 1280, 1000]),
    "efficientnet_b0": _torchvision_params_without_classifier(5_288_548, [1280, 1000]),
    "efficientnet_b1": _torchvision_params_without_classifier(7_794_184, [1280, 1000]),
    "efficientnet_b2": _torchvision_params_without_classifier(9_109_994, [1408, 1000]),
    "efficientnet_b3": _torchvision_params_without_classifier(12_233_232, [1536, 1000]),
    "efficientnet_b4": _torchvision_params_without_classifier(19_341_616, [1792, 1000]),
    "efficientnet_b5": _torchvision_params_without_classifier(30_389_784, [2048, 1000]),
}


@pytest.mark.parametrize(
    ("name", "millions"),
    [("resnet50", 23.5), ("vgg16", 14.7), ("efficientnet_b0", 4.0), ("mobilenetv3_large", 3.0)],
)
def test_param_count_within_3_percent(name: str, millions: float) -> None:
    count = eval_backbone(name).num_parameters()
    assert abs(count - millions * 1e6) <= 0.03 * millions * 1e6, count


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_param_count_equals_torchvision_without_classifier(name: str) -> None:
    assert eval_backbone(name).num_parameters() == EXACT_PARAMS[name]


@pytest.mark.parametrize(("name", "millions"), [("osnet_x1_0", 2.2), ("osnet_x0_25", 0.2)])
def test_osnet_param_count_matches_torchreid(name: str, millions: float) -> None:
    # torchreid's published counts include its 512-d feature layer (Linear + BatchNorm1d), not the classifier.
    backbone = eval_backbone(name)
    feature_fc = backbone.feature_dim * 512 + 512 + 2 * 512
    count = backbone.num_parameters() + feature_fc
    assert abs(count - millions * 1e6) <= 0.10 * millions * 1e6, count
