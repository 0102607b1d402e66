"""Loading torchvision / torchreid state dicts into the backbones: every key and shape, written from the
architecture specs, and errors that name the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.models.backbone_cache import eval_backbone
from training.models.backbones import build_backbone

pytestmark = pytest.mark.usefixtures("single_thread")

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
    backbone = eval_backbone("vgg16")
    assert {k: tuple(v.shape) for k, v in backbone.state_dict().items()} == classifier_free
    # Only the (small) conv part goes through a file; the 120 M-parameter classifier is faked with 1 key.
    state_dict = _random_state_dict(classifier_free) | {"classifier.6.bias": torch.zeros(1000)}
    loaded = build_backbone("vgg16", pretrained=_save(state_dict, tmp_path / "vgg16.pth"))
    torch.testing.assert_close(loaded.state_dict()["features.28.weight"], state_dict["features.28.weight"])


@pytest.mark.parametrize("name", sorted(SPOT_CHECK_KEYS))
def test_spot_check_parameter_names_and_shapes(name: str) -> None:
    state = eval_backbone(name).state_dict()
    actual = {key: tuple(state[key].shape) for key in SPOT_CHECK_KEYS[name] if key in state}
    assert actual == SPOT_CHECK_KEYS[name]


def test_efficientnet_b0_and_osnet_block_layout() -> None:
    effnet_keys = eval_backbone("efficientnet_b0").state_dict()
    assert "features.6.3.block.0.0.weight" in effnet_keys  # stage 6 of B0 has 4 blocks
    assert "features.6.4.block.0.0.weight" not in effnet_keys
    osnet_keys = eval_backbone("osnet_x1_0").state_dict()
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
