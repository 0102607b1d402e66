"""Tests for the forward-hook FLOP counter (MACs per layer, FLOPs = 2 × MACs)."""

from __future__ import annotations

import torch
from torch import nn

from training.models.flops import count_flops, count_parameters, layer_macs
from training.models.stn import DepthwiseCorrelation, PartSampler


def test_conv_linear_bn_pool_counts_are_hand_computed() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=3, padding=1),  # 8·4·4 outputs × 3·3·3 = 3456
        nn.BatchNorm2d(8),  # 128
        nn.ReLU(),  # not counted
        nn.MaxPool2d(2),  # reads 128
        nn.Conv2d(8, 8, kernel_size=1, groups=2),  # 8·2·2 outputs × 4 = 128
        nn.AdaptiveAvgPool2d(1),  # reads 32
        nn.Flatten(),
        nn.Linear(8, 5),  # 40
    ).eval()
    count = count_flops(model, lambda: model(torch.randn(1, 3, 4, 4)))
    assert count.macs_by_layer_type == {
        "Conv2d": 3456 + 128,
        "BatchNorm2d": 128,
        "MaxPool2d": 128,
        "AdaptiveAvgPool2d": 32,
        "Linear": 40,
    }
    assert count.macs == 3912
    assert count.flops == 2 * 3912
    assert count.gflops == 2 * 3912 / 1e9


def test_counts_scale_with_batch_size() -> None:
    model = nn.Linear(10, 5)
    one = count_flops(model, lambda: model(torch.randn(1, 10))).macs
    four = count_flops(model, lambda: model(torch.randn(4, 10))).macs
    assert (one, four) == (50, 200)


def test_depthwise_correlation_and_sampler_counts() -> None:
    signal = torch.randn(2, 4, 6, 5)
    parts = torch.randn(2, 3, 4, 3, 3)
    corr = DepthwiseCorrelation()
    out = corr(signal, parts)
    assert layer_macs(corr, (signal, parts), out) == 2 * 3 * 4 * 6 * 5 * 9
    sampler = PartSampler(3)
    sampled = sampler(signal, torch.eye(2, 3).expand(2, 2, 3))
    assert layer_macs(sampler, (signal,), sampled) == 4 * 2 * 4 * 3 * 3
    assert layer_macs(nn.ReLU(), (signal,), signal) is None


def test_hooks_are_removed_and_parameters_counted() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(2, 2))  # 3·4·9 + 4 + 2·2 + 2
    count_flops(model, lambda: model[0](torch.randn(1, 3, 3, 3)))
    assert all(not m._forward_hooks for m in model.modules())
    assert count_parameters(model) == 108 + 4 + 4 + 2
