"""Tests for the multi-level similarity network (paper 002): sizes, CSN pieces, score, ONNX wrappers."""

from __future__ import annotations

import copy
import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from service.contract import tensors
from training.models.flops import count_flops, count_parameters
from training.models.heads import SAME_INDEX
from training.models.mls import (
    PAPER_SIZES,
    MLSComparatorExport,
    MLSEncoderExport,
    MLSNet,
    MLSOutput,
    count_pair_flops,
    similarity_score,
)
from training.models.stn import MAX_ROTATION, DepthwiseCorrelation, PartSampler, StripeSTN

SMALL_SIZE = (32, 16)  # maps: l2 8×4, l3 / l4 4×2
SMALL_PARTS = {"l2": 4, "l3": 3, "l4": 3}


def stns(model: MLSNet) -> list[StripeSTN]:
    return [stn for stn in model.stn.values() if isinstance(stn, StripeSTN)]


def conv4(model: MLSNet) -> torch.nn.Conv2d:
    layer = model.comparison[0][0]  # type: ignore[index]
    assert isinstance(layer, torch.nn.Conv2d)
    return layer


def small_model(levels: tuple[str, ...] = ("l2", "l3"), seed: int = 0) -> MLSNet:
    """A small-input MLS with non-trivial BN statistics and STN transforms, in eval mode."""
    torch.manual_seed(seed)
    model = MLSNet(levels=levels, input_size=SMALL_SIZE, part_sizes=SMALL_PARTS)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    for stn in stns(model):
        torch.nn.init.normal_(stn.localization.fc.weight, std=0.5)
    return model.eval()


@pytest.mark.parametrize("levels", [("l2", "l3"), ("l2", "l3", "l4")])
def test_size_matches_paper_table5(levels: tuple[str, ...]) -> None:
    paper_params, paper_gflops = PAPER_SIZES[levels]
    model = MLSNet(levels=levels).eval()  # 160×60, the paper's input
    seen: dict[str, tuple[int, ...]] = {}
    hook = model.comparison[0].register_forward_hook(lambda m, i, o: seen.update(sim=tuple(i[0].shape)))
    count = count_pair_flops(model)  # one pair, FLOPs = 2 × MACs
    hook.remove()
    manual = count_flops(model, lambda: model(torch.randn(1, 3, 160, 60), torch.randn(1, 3, 160, 60)))
    assert manual.macs == count.macs
    params = count_parameters(model)
    assert abs(params - paper_params) / paper_params < 0.10, params
    assert abs(count.gflops - paper_gflops) / paper_gflops < 0.10, count.gflops
    assert seen["sim"] == (1, 6 * 96 * len(levels), 20, 8)  # 1152 channels for (L2, L3)
    assert model.map_sizes["l2"] == (40, 15) and model.map_sizes["l3"] == (20, 8)


@pytest.mark.parametrize("levels", [("l2", "l3"), ("l2", "l3", "l4")])
def test_forward_shapes_and_finite_outputs(levels: tuple[str, ...]) -> None:
    model = small_model(levels).train()
    out = model(torch.randn(3, 3, *SMALL_SIZE), torch.randn(3, 3, *SMALL_SIZE))
    assert isinstance(out, MLSOutput)
    assert out.logits.shape == (3, 2)
    assert out.descriptor_a.shape == out.descriptor_b.shape == (3, 256)
    torch.testing.assert_close(out.descriptor_a.norm(dim=1), torch.ones(3))
    assert out.stn_penalty.shape == () and out.stn_penalty.item() >= 0
    assert all(torch.isfinite(t).all() for t in out)
    (F.cross_entropy(out.logits, torch.tensor([0, 1, 1])) + out.stn_penalty).backward()
    for stn in stns(model):  # the gradient reaches the localisation nets through the sampler
        grad = stn.localization.fc.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_depthwise_correlation_hand_computed_and_methods_agree() -> None:
    ones = DepthwiseCorrelation()(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 2, 2))
    # f = 2: the window reaches 0 rows / cols back and 1 forward; zeros outside the map.
    assert ones[0, 0].tolist() == [[4, 4, 2], [4, 4, 2], [2, 2, 1]]
    torch.manual_seed(0)
    signal, parts = torch.randn(2, 4, 7, 5), torch.randn(2, 3, 4, 3, 3)
    grouped = DepthwiseCorrelation("grouped")(signal, parts)
    unfold = DepthwiseCorrelation("unfold")(signal, parts)
    padded = DepthwiseCorrelation("padded", max_batch=5)(signal, parts)
    # One ordinary depth-wise conv per (image, part); f = 3 so padding 1 is the "same" padding.
    def one_image(n: int) -> torch.Tensor:
        per_part = [F.conv2d(signal[n, None], parts[n, s, :, None], padding=1, groups=4) for s in range(3)]
        return torch.cat(per_part, dim=1)

    naive = torch.cat([one_image(0), one_image(1)])
    torch.testing.assert_close(grouped, naive)
    torch.testing.assert_close(unfold, naive)
    torch.testing.assert_close(padded, naive)
    with pytest.raises(RuntimeError):  # more pairs than the padded batch
        DepthwiseCorrelation("padded", max_batch=1)(signal, parts)
    with pytest.raises(ValueError, match="unknown correlation method"):
        DepthwiseCorrelation("fft")


def test_part_sampler_equals_affine_grid_sample() -> None:
    torch.manual_seed(0)
    x, theta = torch.randn(3, 4, 10, 8), torch.randn(3, 2, 3) * 0.5
    expected = F.grid_sample(x, F.affine_grid(theta, [3, 4, 5, 5], align_corners=False), align_corners=False)
    torch.testing.assert_close(PartSampler(5)(x, theta), expected)


def test_stn_constraints_hold_for_wild_localisation_outputs() -> None:
    torch.manual_seed(0)
    stn = StripeSTN(6, stripe_rows=[(0, 10), (5, 15), (10, 20)], part_size=5, map_size=(20, 8))
    # Identity-like start: centred window of f rows / f columns of the stripe, no rotation.
    out = stn(torch.randn(2, 6, 20, 8))
    assert out.parts.shape == (2, 3, 6, 5, 5)
    torch.testing.assert_close(out.theta[..., 0, 0], torch.full((2, 3), 5 / 8), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.theta[..., 1, 1], torch.full((2, 3), 5 / 10), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.rotation_l1, torch.zeros(2))
    torch.nn.init.normal_(stn.localization.fc.weight, std=50.0)
    torch.nn.init.normal_(stn.localization.fc.bias, std=50.0)
    out = stn(torch.randn(8, 6, 20, 8))
    theta = out.theta
    scales = torch.stack([theta[..., 0, 0], theta[..., 1, 1]])
    assert (scales > 0).all() and (scales <= 1).all()
    rotations = torch.stack([theta[..., 0, 1], theta[..., 1, 0]])
    assert (rotations.abs() <= MAX_ROTATION).all() and rotations.abs().max() > 0.1
    # translation bounded by 1 − scale: an unrotated window stays inside its stripe
    assert (theta[..., 0, 2].abs() <= 1 - theta[..., 0, 0] + 1e-6).all()
    torch.testing.assert_close(out.rotation_l1, rotations.abs().sum(dim=0).mean(dim=1))


def test_score_formula() -> None:
    score = similarity_score(torch.tensor([0.25, 1.0]), torch.tensor([0.0, 1.9999]))
    torch.testing.assert_close(score, torch.tensor([0.25 + 0.2 / 1e-4, 1.0 + 0.2 / 2.0]))
    model = small_model()
    images_a, images_b = torch.randn(2, 3, *SMALL_SIZE), torch.randn(2, 3, *SMALL_SIZE)
    with torch.no_grad():
        enc_a, enc_b = model.encode(images_a), model.encode(images_b)
        p_same = model.compare(enc_a, enc_b).softmax(dim=1)[:, SAME_INDEX]
        distance = torch.linalg.vector_norm(enc_a.descriptor - enc_b.descriptor, dim=1)
        torch.testing.assert_close(model.score(images_a, images_b), p_same + 0.2 / (distance + 1e-4))


def test_compare_is_symmetric_up_to_the_order_of_the_two_directions() -> None:
    model = small_model(("l2", "l3", "l4"))
    swapped = copy.deepcopy(model)
    # Swap, per level, the input channels of "A's map ⋆ B's parts" and "B's map ⋆ A's parts" in conv4.
    half = 3 * 96
    blocks = [torch.cat([b + half + torch.arange(half), b + torch.arange(half)]) for b in (0, 576, 1152)]
    order = torch.cat(blocks)
    conv4(swapped).weight.data = conv4(model).weight.data[:, order]
    with torch.no_grad():
        enc_a = model.encode(torch.randn(2, 3, *SMALL_SIZE))
        enc_b = model.encode(torch.randn(2, 3, *SMALL_SIZE))
        logits_ab = model.compare(enc_a, enc_b)
        torch.testing.assert_close(swapped.compare(enc_b, enc_a), logits_ab, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(model.compare(enc_b, enc_a), logits_ab)
        # Same image on both sides: both directions give the same maps, so the swap changes nothing.
        same_image = model.compare(enc_a, enc_a)
        torch.testing.assert_close(swapped.compare(enc_a, enc_a), same_image, atol=1e-5, rtol=1e-4)


def test_flat_encoding_round_trip() -> None:
    model = small_model(("l2", "l3", "l4"))
    with torch.no_grad():
        enc = model.encode(torch.randn(2, 3, *SMALL_SIZE))
    flat = model.flatten_encoding(enc)
    assert flat.shape == (2, model.encoding_dim)
    back = model.unflatten_encoding(flat)
    for level in model.levels:
        torch.testing.assert_close(back.maps[level], enc.maps[level])
        torch.testing.assert_close(back.parts[level], enc.parts[level])
    torch.testing.assert_close(back.descriptor, enc.descriptor)
    with pytest.raises(ValueError, match="flat encoding"):
        model.unflatten_encoding(flat[:, :-1])


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="levels"):
        MLSNet(levels=("l3",))
    with pytest.raises(ValueError, match="input_size"):
        MLSNet(input_size=(16, 16))
    with pytest.raises(ValueError, match="expected images of size"):
        small_model().encode(torch.randn(1, 3, 64, 16))


def _export(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], inputs: tuple[str, ...], outputs: tuple[str, ...]
) -> ort.InferenceSession:
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        args,
        buffer,  # type: ignore[arg-type]
        dynamo=False,
        opset_version=18,
        input_names=list(inputs),
        output_names=list(outputs),
        dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)},
    )
    return ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("method", ["padded", "unfold"])
def test_encoder_and_comparator_export_match_onnxruntime_at_batch_1_and_3(method: str) -> None:
    model = small_model(("l2", "l3", "l4"))
    model.set_correlation_method(method, max_batch=4)
    encoder, comparator = MLSEncoderExport(model), MLSComparatorExport(model)
    dim = model.encoding_dim
    image = (torch.randn(1, 3, *SMALL_SIZE),)
    encoder_session = _export(encoder, image, (tensors.IMAGES,), tensors.ENCODER_OUTPUTS)
    pair = (torch.randn(1, dim), torch.randn(1, dim))
    comparator_session = _export(comparator, pair, tensors.COMPARATOR_INPUTS, tensors.COMPARATOR_OUTPUTS)
    for batch in (1, 3):
        images_a, images_b = torch.randn(batch, 3, *SMALL_SIZE), torch.randn(batch, 3, *SMALL_SIZE)
        with torch.no_grad():
            encoding_a, descriptor_a = encoder(images_a)
            encoding_b, _ = encoder(images_b)
            expected = comparator(encoding_a, encoding_b)
            torch.testing.assert_close(expected[0], model.score(images_a, images_b), atol=1e-4, rtol=1e-5)
        got_encoding, got_descriptor = encoder_session.run(None, {"images": images_a.numpy()})
        np.testing.assert_allclose(got_encoding, encoding_a.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(got_descriptor, descriptor_a.numpy(), atol=1e-4, rtol=0)
        feed = {"encoding_a": encoding_a.numpy(), "encoding_b": encoding_b.numpy()}
        got = comparator_session.run(None, feed)
        assert [g.shape for g in got] == [(batch,), (batch, 2), (batch,)]
        for got_value, want in zip(got, expected, strict=True):
            np.testing.assert_allclose(got_value, want.numpy(), atol=1e-4, rtol=1e-5)
