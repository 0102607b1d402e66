"""Tests for the BN-neck embedding head, identity classifier and verification head."""

from __future__ import annotations

import pytest
import torch

from training.models.heads import (
    DIFFERENT_INDEX,
    SAME_INDEX,
    BNNeckHead,
    GeneralizedMeanPooling,
    HeadOutput,
    IdentityClassifier,
    VerificationHead,
    build_pooling,
)


def test_bnneck_train_returns_logits_and_pre_bn_features() -> None:
    torch.manual_seed(0)
    head = BNNeckHead(8, 5)
    fmap = torch.randn(4, 8, 3, 2)
    out = head.train()(fmap)
    assert isinstance(out, HeadOutput)
    assert out.logits.shape == (4, 5)
    torch.testing.assert_close(out.features, fmap.mean(dim=(2, 3)))


def test_bnneck_eval_returns_only_post_bn_embedding() -> None:
    torch.manual_seed(0)
    head = BNNeckHead(8, 5)
    head.bottleneck.running_mean.fill_(0.5)
    head.bottleneck.running_var.fill_(4.0)
    fmap = torch.randn(3, 8, 2, 2)
    emb = head.eval()(fmap)
    assert isinstance(emb, torch.Tensor)
    expected = (fmap.mean(dim=(2, 3)) - 0.5) / torch.sqrt(torch.tensor(4.0) + head.bottleneck.eps)
    torch.testing.assert_close(emb, expected)


def test_bnneck_init_and_frozen_bias() -> None:
    torch.manual_seed(0)
    head = BNNeckHead(64, 300)
    assert not head.bottleneck.bias.requires_grad
    assert torch.equal(head.bottleneck.bias, torch.zeros(64))
    assert torch.equal(head.bottleneck.weight, torch.ones(64))
    assert head.classifier.bias is None
    assert 0.0007 < float(head.classifier.weight.detach().std()) < 0.0013
    head.train()(torch.randn(4, 64, 2, 2)).logits.sum().backward()
    assert head.bottleneck.bias.grad is None


def test_bnneck_reduction_and_pooling_choice() -> None:
    head = BNNeckHead(16, 3, embedding_dim=4, pool="max")
    assert head.embedding_dim == 4
    fmap = torch.randn(2, 16, 3, 3)
    out = head.train()(fmap)
    assert out.features.shape == (2, 4)
    torch.testing.assert_close(out.features, fmap.amax(dim=(2, 3)) @ head.reduction.weight.t())


def test_gem_pooling_between_avg_and_max() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    gem = GeneralizedMeanPooling(p=3.0)(x)
    torch.testing.assert_close(gem, torch.tensor([[(100.0 / 4) ** (1 / 3)]]))
    assert 2.5 < float(gem) < 4.0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown pooling 'mean'"):
        build_pooling("mean")
    with pytest.raises(ValueError, match="num_classes"):
        BNNeckHead(8, 0)
    with pytest.raises(ValueError, match="dropout"):
        VerificationHead(8, dropout=1.0)
    with pytest.raises(ValueError, match="feature map"):
        BNNeckHead(8, 2)(torch.randn(2, 8, 3))


def test_identity_classifier_shape_and_eval_determinism() -> None:
    clf = IdentityClassifier(6, 4, dropout=0.5).eval()
    x = torch.randn(3, 6)
    torch.testing.assert_close(clf(x), x @ clf.classifier.weight.t() + clf.classifier.bias)


def test_verification_head_is_square_layer_then_linear() -> None:
    head = VerificationHead(3, dropout=0.0, relu=True)
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]]))
        head.classifier.bias.copy_(torch.tensor([0.5, -0.5]))
    a = torch.tensor([[1.0, 2.0, 3.0]])
    b = torch.tensor([[0.0, 0.0, 1.0]])
    # (a − b)² = (1, 4, 4) → same logit = 1 − 4 + 8 − 0.5 = 4.5; different logit = 0.5
    torch.testing.assert_close(head(a, b), torch.tensor([[0.5, 4.5]]))
    assert (SAME_INDEX, DIFFERENT_INDEX) == (1, 0)


def test_effective_weights_reproduce_softmax_same_probability() -> None:
    torch.manual_seed(1)
    head = VerificationHead(16, dropout=0.5, relu=True)
    with torch.no_grad():
        head.classifier.weight.normal_(std=0.5)
        head.classifier.bias.normal_()
    head.eval()
    a, b = torch.randn(10, 16), torch.randn(10, 16)
    w, bias = head.effective_weights()
    assert w.shape == (16,) and bias.shape == ()
    p_logistic = torch.sigmoid(((a - b) ** 2) @ w + bias)
    p_softmax = torch.softmax(head(a, b), dim=1)[:, SAME_INDEX]
    torch.testing.assert_close(p_logistic, p_softmax, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.same_probability(a, b), p_softmax)
