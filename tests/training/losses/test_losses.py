"""Loss functions checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    CenterLoss,
    CombinedLoss,
    ContrastiveLoss,
    CrossEntropyLabelSmooth,
    TripletLoss,
    VerificationLoss,
    batch_hard_mining,
    center_optimizer,
    contrastive_loss_from_distances,
    euclidean_distances,
    rescale_center_gradients,
    verification_targets,
)
from training.models.heads import DIFFERENT_INDEX, SAME_INDEX


def test_label_smoothing_uniform_logits_is_log_c() -> None:
    loss = CrossEntropyLabelSmooth(num_classes=7, epsilon=0.1)
    value = loss(torch.zeros(3, 7), torch.tensor([0, 4, 6]))
    assert float(value) == pytest.approx(math.log(7), rel=1e-6)


def test_label_smoothing_known_value() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    log_p = torch.log_softmax(logits, dim=1)[0]
    eps = 0.3
    expected = -((1 - eps + eps / 3) * log_p[0] + eps / 3 * log_p[1] + eps / 3 * log_p[2])
    value = CrossEntropyLabelSmooth(3, epsilon=eps)(logits, torch.tensor([0]))
    assert float(value) == pytest.approx(float(expected), rel=1e-6)
    plain = CrossEntropyLabelSmooth(3, epsilon=0.0)(logits, torch.tensor([0]))
    assert float(plain) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([0]))))


def test_batch_hard_triplet_on_a_line() -> None:
    # points 0, 1 (id 0) and 3, 5 (id 1) on a line
    features = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    d_ap, d_an = batch_hard_mining(euclidean_distances(features), labels)
    torch.testing.assert_close(d_ap, torch.tensor([1.0, 1.0, 2.0, 2.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(d_an, torch.tensor([3.0, 2.0, 2.0, 4.0]), atol=1e-5, rtol=0)
    # margin 0.3: max(0, ap − an + m) = (0, 0, 0.3, 0) → mean 0.075
    assert float(TripletLoss(margin=0.3)(features, labels)) == pytest.approx(0.075, abs=1e-5)
    # margin 1.5: (0, 0.5, 1.5, 0) → 0.5
    assert float(TripletLoss(margin=1.5)(features, labels)) == pytest.approx(0.5, abs=1e-5)
    soft = sum(math.log1p(math.exp(ap - an)) for ap, an in [(1, 3), (1, 2), (2, 2), (2, 4)]) / 4
    assert float(TripletLoss(margin=None)(features, labels)) == pytest.approx(soft, abs=1e-5)


def test_triplet_normalized_and_errors() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    # after L2 normalization: (1,0), (0,1), (1,0): every ap = 0, an = √2 → loss 0 for margin 0.3
    value = TripletLoss(margin=0.3, normalize_features=True)(features, labels)
    assert float(value) == pytest.approx(0.0, abs=1e-5)
    # raw: only anchor 0 is violated: ap 9, an √2 → (9 − √2 + 0.3) / 3
    raw = TripletLoss(margin=0.3)(features, labels)
    assert float(raw) == pytest.approx((9 - math.sqrt(2) + 0.3) / 3, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 identities"):
        TripletLoss()(features, torch.tensor([1, 1, 1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triplet_gradient_is_finite_with_duplicate_points(dtype: torch.dtype) -> None:
    features = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype=dtype, requires_grad=True)
    loss = TripletLoss(margin=0.3)(features, torch.tensor([0, 0, 1]))
    assert loss.dtype == torch.float32
    loss.backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_center_loss_known_value_and_optimizer_rescale() -> None:
    loss = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    features = torch.tensor([[3.0, 4.0], [1.0, 2.0]])
    # ||(3,4) − (0,0)||² = 25, ||(1,2) − (1,1)||² = 1 → mean 13
    value = loss(features, torch.tensor([0, 1]))
    assert float(value.detach()) == pytest.approx(13.0)
    beta = 0.0005
    opt = center_optimizer(loss, lr=0.5)
    (beta * value).backward()
    rescale_center_gradients(loss, weight=beta)
    # d/dc0 of mean = −2 (f − c0) / 2 = −(3, 4)
    torch.testing.assert_close(loss.centers.grad[0], torch.tensor([-3.0, -4.0]))
    opt.step()
    torch.testing.assert_close(loss.centers.detach()[0], torch.tensor([1.5, 2.0]))


def test_contrastive_on_given_distances() -> None:
    distances = torch.tensor([0.5, 2.0, 0.25, 1.5])
    is_same = torch.tensor([True, True, False, False])
    # same: 0.25, 4.0; different: (1 − 0.25)² = 0.5625, max(0, −0.5)² = 0 → sum 4.8125 / 4 / 2
    value = contrastive_loss_from_distances(distances, is_same, margin=1.0)
    assert float(value) == pytest.approx(4.8125 / 8)


def test_contrastive_on_embeddings() -> None:
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    # distances 5 and 1; pair 0 same → 25; pair 1 different, margin 2 → (2 − 1)² = 1 → (25 + 1) / 2 / 2
    value = ContrastiveLoss(margin=2.0)(a, b, torch.tensor([1, 0]))
    assert float(value) == pytest.approx(6.5, rel=1e-5)
    emb = torch.ones(2, 3, requires_grad=True)
    ContrastiveLoss()(emb, emb.detach().clone(), torch.tensor([0, 0])).backward()
    assert torch.isfinite(emb.grad).all()


def test_verification_loss_targets_and_value() -> None:
    is_same = torch.tensor([True, False])
    assert verification_targets(is_same).tolist() == [SAME_INDEX, DIFFERENT_INDEX]
    logits = torch.zeros(2, 2)
    logits[0, SAME_INDEX] = math.log(3.0)  # p_same = 3/4 for the positive pair
    # pair 1 (different): p = 1/2
    expected = -(math.log(0.75) + math.log(0.5)) / 2
    assert float(VerificationLoss()(logits, is_same)) == pytest.approx(expected, rel=1e-6)


def test_combined_loss_weighted_sum_and_logging() -> None:
    combined = CombinedLoss({"id": 1.0, "triplet": 1.0, "center": 0.0005})
    terms = {"id": torch.tensor(2.0), "triplet": torch.tensor(0.5), "center": torch.tensor(100.0)}
    total, parts = combined(terms)
    assert float(total) == pytest.approx(2.55)
    assert parts == pytest.approx({"id": 2.0, "triplet": 0.5, "center": 100.0, "total": 2.55})
    with pytest.raises(ValueError, match="expected loss terms"):
        combined({"id": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="must be >= 0"):
        CombinedLoss({"id": -1.0})
