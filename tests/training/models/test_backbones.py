"""Backbone registry sweep, parameter counts, level maps and torchvision / torchreid state-dict loading."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from training.models.backbones import Backbone, build_backbone, list_backbones
from training.models.backbones.layers import StochasticDepth, make_divisible

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


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """One intra-op thread: on a small shared CPU, oversubscribed OpenMP threads make the sweep ~6x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@cache
def _eval_backbone(name: str) -> Backbone:
    """One eval-mode instance per backbone for the whole module (building B5 or VGG costs ~0.3 s)."""
    torch.manual_seed(0)
    return build_backbone(name).eval()


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
    backbone = _eval_backbone(name)
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
        levels = _eval_backbone(name).forward_levels(torch.zeros(1, 3, 256, 128), list(expected))
    assert {level: tuple(m.shape[1:]) for level, m in levels.items()} == expected


def test_resnet_last_stride_1_keeps_stride_16() -> None:
    backbone = build_backbone("resnet50", last_stride=1).eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 256, 128)).shape == (1, 2048, 16, 8)


def test_unknown_or_empty_levels_raise() -> None:
    backbone = _eval_backbone("osnet_x0_25")
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
    count = _eval_backbone(name).num_parameters()
    assert abs(count - millions * 1e6) <= 0.03 * millions * 1e6, count


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_param_count_equals_torchvision_without_classifier(name: str) -> None:
    assert _eval_backbone(name).num_parameters() == EXACT_PARAMS[name]


@pytest.mark.parametrize(("name", "millions"), [("osnet_x1_0", 2.2), ("osnet_x0_25", 0.2)])
def test_osnet_param_count_matches_torchreid(name: str, millions: float) -> None:
    # torchreid's published counts include its 512-d feature layer (Linear + BatchNorm1d), not the classifier.
    backbone = _eval_backbone(name)
    feature_fc = backbone.feature_dim * 512 + 512 + 2 * 512
    count = backbone.num_parameters() + feature_fc
    assert abs(count - millions * 1e6) <= 0.10 * millions * 1e6, count


# --------------------------------------------------------------------------- pretrained state dicts

Shape = tuple[int, ...]


def _bn_keys(prefix: str, channels: int) -> dict[str, Shape]:
    return {
        f"{prefix}.weight": (channels,),
        f"{prefix}.bias": (channels,),
        f"{prefix}.running_mean": (channels,),
        f"{prefix}.running_var": (channels,),
        f"{prefix}.num_batches_tracked": (),
    }


def torchvision_resnet50_keys() -> dict[str, Shape]:
    """Every key of torchvision's ``resnet50().state_dict()``, written from the architecture spec."""
    keys: dict[str, Shape] = {"conv1.weight": (64, 3, 7, 7), **_bn_keys("bn1", 64)}
    in_channels = 64
    for stage, (planes, num_blocks) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), start=1
    ):
        for block in range(num_blocks):
            prefix = f"layer{stage}.{block}"
            keys[f"{prefix}.conv1.weight"] = (planes, in_channels, 1, 1)
            keys.update(_bn_keys(f"{prefix}.bn1", planes))
            keys[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            keys.update(_bn_keys(f"{prefix}.bn2", planes))
            keys[f"{prefix}.conv3.weight"] = (planes * 4, planes, 1, 1)
            keys.update(_bn_keys(f"{prefix}.bn3", planes * 4))
            if block == 0:
                keys[f"{prefix}.downsample.0.weight"] = (planes * 4, in_channels, 1, 1)
                keys.update(_bn_keys(f"{prefix}.downsample.1", planes * 4))
            in_channels = planes * 4
    keys["fc.weight"] = (1000, 2048)
    keys["fc.bias"] = (1000,)
    return keys


def torchvision_vgg16_keys() -> dict[str, Shape]:
    """Every key of torchvision's ``vgg16().state_dict()`` (features and classifier)."""
    conv_indices = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    widths = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
    keys: dict[str, Shape] = {}
    in_channels = 3
    for index, width in zip(conv_indices, widths, strict=True):
        keys[f"features.{index}.weight"] = (width, in_channels, 3, 3)
        keys[f"features.{index}.bias"] = (width,)
        in_channels = width
    for index, (d_in, d_out) in zip((0, 3, 6), ((25088, 4096), (4096, 4096), (4096, 1000)), strict=True):
        keys[f"classifier.{index}.weight"] = (d_out, d_in)
        keys[f"classifier.{index}.bias"] = (d_out,)
    return keys


# Spot checks written from torchvision's / torchreid's layouts (block.N numbering, SE squeeze widths).
SPOT_CHECK_KEYS: dict[str, dict[str, Shape]] = {
    "mobilenetv3_large": {
        "features.0.0.weight": (16, 3, 3, 3),
        "features.1.block.0.0.weight": (16, 1, 3, 3),  # no expansion: depthwise first
        "features.1.block.1.0.weight": (16, 16, 1, 1),
        "features.4.block.0.0.weight": (72, 24, 1, 1),
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),  # make_divisible(72 // 4) = 24
        "features.4.block.2.fc2.bias": (72,),
        "features.4.block.3.1.running_var": (40,),
        "features.15.block.2.fc1.weight": (240, 960, 1, 1),
        "features.16.0.weight": (960, 160, 1, 1),
    },
    "efficientnet_b0": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.0.block.0.0.weight": (32, 1, 3, 3),  # expand ratio 1: depthwise first
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.1.0.block.2.0.weight": (16, 32, 1, 1),
        "features.2.0.block.0.0.weight": (96, 16, 1, 1),
        "features.2.0.block.2.fc1.weight": (4, 96, 1, 1),  # squeeze = block input // 4
        "features.2.1.block.3.1.weight": (24,),
        "features.6.3.block.1.0.weight": (1152, 1, 5, 5),
        "features.7.0.block.3.0.weight": (320, 1152, 1, 1),
        "features.8.0.weight": (1280, 320, 1, 1),
    },
    "efficientnet_b5": {
        "features.0.0.weight": (48, 3, 3, 3),
        "features.6.8.block.3.0.weight": (304, 1824, 1, 1),  # 4 × 2.2 → 9 blocks, 192 × 1.6 → 304 wide
        "features.8.0.weight": (2048, 512, 1, 1),
    },
    "osnet_x1_0": {
        "conv1.conv.weight": (64, 3, 7, 7),
        "conv1.bn.running_mean": (64,),
        "conv2.0.conv1.conv.weight": (64, 64, 1, 1),
        "conv2.0.conv2a.conv1.weight": (64, 64, 1, 1),
        "conv2.0.conv2a.conv2.weight": (64, 1, 3, 3),
        "conv2.0.conv2d.3.bn.weight": (64,),
        "conv2.0.gate.fc1.weight": (4, 64, 1, 1),
        "conv2.0.gate.fc1.bias": (4,),
        "conv2.0.gate.fc2.weight": (64, 4, 1, 1),
        "conv2.0.conv3.conv.weight": (256, 64, 1, 1),
        "conv2.0.downsample.conv.weight": (256, 64, 1, 1),
        "conv2.2.0.conv.weight": (256, 256, 1, 1),  # transition
        "conv3.0.downsample.bn.weight": (384,),
        "conv4.1.conv2c.2.conv2.weight": (128, 1, 3, 3),
        "conv5.conv.weight": (512, 512, 1, 1),
    },
}


def _random_state_dict(shapes: dict[str, Shape]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        key: torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape, generator=gen)
        for key, shape in shapes.items()
    }


def _save(state_dict: object, path: Path) -> Path:
    torch.save(state_dict, path)
    return path


@pytest.mark.parametrize("last_stride", [2, 1])
def test_resnet50_loads_torchvision_state_dict(tmp_path: Path, last_stride: int) -> None:
    expected = torchvision_resnet50_keys()
    assert len(expected) == 320  # 161 params + 3 × 53 BN buffers, fc included
    file = _save(_random_state_dict(expected), tmp_path / "resnet50.pth")
    backbone = build_backbone("resnet50", pretrained=file, last_stride=last_stride)
    loaded = backbone.state_dict()
    assert {k: tuple(v.shape) for k, v in loaded.items()} == {
        k: s for k, s in expected.items() if not k.startswith("fc.")
    }
    reference = torch.load(file, weights_only=True)
    for key in ("conv1.weight", "layer4.2.bn3.running_var", "layer3.0.downsample.0.weight"):
        torch.testing.assert_close(loaded[key], reference[key])


def test_old_torchvision_file_without_num_batches_tracked_loads(tmp_path: Path) -> None:
    shapes = {k: s for k, s in torchvision_resnet50_keys().items() if not k.endswith("num_batches_tracked")}
    build_backbone("resnet50", pretrained=_save(_random_state_dict(shapes), tmp_path / "old.pth"))


def test_renamed_key_fails_naming_it(tmp_path: Path) -> None:
    state_dict = _random_state_dict(torchvision_resnet50_keys())
    state_dict["layer2.1.conv_2.weight"] = state_dict.pop("layer2.1.conv2.weight")
    file = _save(state_dict, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match="does not match backbone 'resnet50'") as excinfo:
        build_backbone("resnet50", pretrained=file)
    assert "unexpected key 'layer2.1.conv_2.weight'" in str(excinfo.value)
    assert "missing key 'layer2.1.conv2.weight'" in str(excinfo.value)


def test_shape_mismatch_fails_naming_key_and_shapes(tmp_path: Path) -> None:
    state_dict = _random_state_dict(torchvision_resnet50_keys())
    state_dict["layer3.0.conv1.weight"] = torch.zeros(256, 512, 3, 3)
    file = _save(state_dict, tmp_path / "mismatch.pth")
    message = (
        r"shape mismatch for 'layer3\.0\.conv1\.weight': "
        r"file has \(256, 512, 3, 3\), model expects \(256, 512, 1, 1\)"
    )
    with pytest.raises(ValueError, match=message):
        build_backbone("resnet50", pretrained=file)


def test_missing_pretrained_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        build_backbone("vgg16", pretrained=tmp_path / "nope.pth")


def test_vgg16_loads_torchvision_state_dict(tmp_path: Path) -> None:
    expected = torchvision_vgg16_keys()
    classifier_free = {k: s for k, s in expected.items() if not k.startswith("classifier.")}
    backbone = _eval_backbone("vgg16")
    assert {k: tuple(v.shape) for k, v in backbone.state_dict().items()} == classifier_free
    # Only the (small) conv part goes through a file; the 120 M-parameter classifier is faked with 1 key.
    state_dict = _random_state_dict(classifier_free) | {"classifier.6.bias": torch.zeros(1000)}
    loaded = build_backbone("vgg16", pretrained=_save(state_dict, tmp_path / "vgg16.pth"))
    torch.testing.assert_close(loaded.state_dict()["features.28.weight"], state_dict["features.28.weight"])


@pytest.mark.parametrize("name", sorted(SPOT_CHECK_KEYS))
def test_spot_check_parameter_names_and_shapes(name: str) -> None:
    state = _eval_backbone(name).state_dict()
    actual = {key: tuple(state[key].shape) for key in SPOT_CHECK_KEYS[name] if key in state}
    assert actual == SPOT_CHECK_KEYS[name]


def test_efficientnet_b0_and_osnet_block_layout() -> None:
    effnet_keys = _eval_backbone("efficientnet_b0").state_dict()
    assert "features.6.3.block.0.0.weight" in effnet_keys  # stage 6 of B0 has 4 blocks
    assert "features.6.4.block.0.0.weight" not in effnet_keys
    osnet_keys = _eval_backbone("osnet_x1_0").state_dict()
    assert "conv3.2.0.conv.weight" in osnet_keys  # conv3 ends with a transition …
    assert "conv4.2.0.conv.weight" not in osnet_keys  # … conv4 does not


def test_osnet_loads_torchreid_checkpoint(tmp_path: Path) -> None:
    """torchreid ImageNet file: ``module.`` prefixes, a ``state_dict`` wrapper, ``fc`` and ``classifier``."""
    source = build_backbone("osnet_x0_25")
    with torch.no_grad():
        for param in source.parameters():
            param.normal_()
    torchreid = {f"module.{k}": v for k, v in source.state_dict().items()}
    torchreid |= {
        "module.fc.0.weight": torch.zeros(512, 128),
        "module.fc.1.running_mean": torch.zeros(512),
        "module.classifier.weight": torch.zeros(1000, 512),
    }
    file = _save({"state_dict": torchreid, "epoch": 3}, tmp_path / "osnet_x0_25_imagenet.pth")
    loaded = build_backbone("osnet_x0_25", pretrained=file)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
