"""Tests for the multi-depth smoothed features (paper 001): box filter, exploration, descriptor, export."""

from __future__ import annotations

import io
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from training.models.backbones import Backbone
from training.models.backbones.base import LevelStep
from training.models.multidepth import (
    DescriptorExport,
    MultiDepthVGG,
    box_smooth,
    descriptor_dim,
    explore_filters,
    filter_margins,
)


class ToyBackbone(Backbone):
    """Level ``a`` = the image itself (3 channels), level ``b`` = its 2×2 average pool."""

    feature_dim = 3

    def level_steps(self) -> list[LevelStep]:
        return [("a", lambda x: x), ("b", lambda x: F.avg_pool2d(x, 2))]


def toy_model(
    *, selected: dict[str, list[int]] | None = None, map_size: tuple[int, int] | None = None
) -> MultiDepthVGG:
    return MultiDepthVGG(
        num_classes=4,
        backbone=ToyBackbone(),
        layers=("a", "b"),
        filter_size=3,
        selected=selected,
        map_size=map_size,
    )


def test_box_filter_keeps_a_constant_map_constant() -> None:
    maps = torch.full((2, 3, 7, 5), 2.5)
    for size in (1, 2, 3, 20):
        torch.testing.assert_close(box_smooth(maps, size), maps)


def test_box_filter_equals_avg_pool_without_padding_counts_for_odd_sizes() -> None:
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 9, 6)
    for size in (3, 5):
        expected = F.avg_pool2d(maps, size, stride=1, padding=size // 2, count_include_pad=False)
        torch.testing.assert_close(box_smooth(maps, size), expected)


def test_box_filter_hand_computed_row() -> None:
    row = torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0]).reshape(1, 1, 1, 5)
    # l = 3: centred window; at the borders only the in-map pixels are averaged.
    assert box_smooth(row, 3).flatten().tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # l = 2: the window covers the pixel and the next one (the last pixel averages itself alone).
    assert box_smooth(row, 2).flatten().tolist() == [0.0, 1.5, 1.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="filter_size"):
        box_smooth(row, 0)


def hand_triplet(height: int = 8, width: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Channel 0 equal everywhere, channel 1 separates the persons, channel 2 the two views of one person."""
    query = torch.zeros(2, 3, height, width)
    query[:, 0] = 0.7
    same = query.clone()
    same[:, 2] = 2.0
    different = query.clone()
    different[:, 1] = 1.0
    return query, same, different


def test_filter_margins_and_selection_pick_the_discriminative_channel() -> None:
    model = toy_model()
    margins = filter_margins(model, [hand_triplet(), hand_triplet()])
    root_a, root_b = math.sqrt(8 * 4), math.sqrt(4 * 2)  # constant maps: distance = value × sqrt(h·w)
    d_s, d_d = margins["a"]
    torch.testing.assert_close(d_s, torch.tensor([0.0, 0.0, 2.0 * root_a]))
    torch.testing.assert_close(d_d, torch.tensor([0.0, root_a, 0.0]))
    torch.testing.assert_close(margins["b"][1], torch.tensor([0.0, root_b, 0.0]))
    assert explore_filters(model, hand_triplet()) == {"a": [1], "b": [1]}
    assert explore_filters(model, [hand_triplet()], layers=["b"], top_k=3) == {"b": [1, 0, 2]}
    with pytest.raises(ValueError, match="top_k"):
        explore_filters(model, hand_triplet(), top_k=4)
    with pytest.raises(ValueError, match="empty"):
        explore_filters(model, [])


def test_descriptor_concatenates_the_selected_smoothed_maps() -> None:
    model = toy_model(selected={"a": [1], "b": [0, 2]})
    images = torch.randn(2, 3, 8, 4)
    expected = torch.cat(
        [
            box_smooth(images, 3)[:, [1]].flatten(1),
            box_smooth(F.avg_pool2d(images, 2), 3)[:, [0, 2]].flatten(1),
        ],
        dim=1,
    )
    torch.testing.assert_close(model.descriptor(images), expected)
    assert descriptor_dim(model, (8, 4)) == expected.shape[1] == 1 * 32 + 2 * 8


def test_map_size_resizes_before_smoothing() -> None:
    model = toy_model(selected={"a": [0], "b": [0]}, map_size=(8, 4))
    images = torch.randn(1, 3, 8, 4)
    descriptor = model.descriptor(images)
    assert descriptor.shape == (1, 64) == (1, descriptor_dim(model, (8, 4)))
    upsampled = F.interpolate(F.avg_pool2d(images, 2), size=(8, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(descriptor[:, 32:], box_smooth(upsampled, 3)[:, 0].flatten(1))


def test_selection_is_validated() -> None:
    model = toy_model()
    with pytest.raises(ValueError, match="no filters selected"):
        model.descriptor(torch.randn(1, 3, 8, 4))
    with pytest.raises(ValueError, match=r"selected\['a'\]"):
        model.set_selection({"a": [3], "b": [0]})
    with pytest.raises(ValueError, match=r"selected\['b'\]"):
        model.set_selection({"a": [0]})
    with pytest.raises(ValueError, match="not among"):
        model.set_selection({"a": [0], "b": [0], "c": [0]})
    with pytest.raises(ValueError, match="layers"):
        MultiDepthVGG(num_classes=2, backbone=ToyBackbone(), layers=("pool3",))


def test_vgg16_identity_classifier_and_descriptor_export_parity() -> None:
    torch.manual_seed(0)
    model = MultiDepthVGG(num_classes=5, layers=("pool2", "pool3"), filter_size=3)
    assert model.forward(torch.randn(2, 3, 64, 32)).shape == (2, 5)
    model.set_selection({"pool2": [3], "pool3": [7, 1]})
    export = DescriptorExport(model)
    buffer = io.BytesIO()
    torch.onnx.export(
        export,
        (torch.randn(1, 3, 64, 32),),
        buffer,  # type: ignore[arg-type]
        dynamo=False,
        opset_version=18,
        input_names=["images"],
        output_names=["embedding"],
        dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}},
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        images = torch.randn(batch, 3, 64, 32)
        with torch.no_grad():
            expected = export(images)
        assert expected.shape == (batch, descriptor_dim(model, (64, 32))) == (batch, 16 * 8 + 2 * 8 * 4)
        (got,) = session.run(None, {"images": images.numpy()})
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-4)
