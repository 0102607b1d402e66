"""Tests for the embedding and Siamese models and their ONNX export wrappers."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from training.models.heads import SAME_INDEX, BNNeckHead, HeadOutput
from training.models.reid_model import (
    EmbeddingExport,
    EmbeddingModel,
    SiameseModel,
    SiameseOutput,
    VerificationHeadExport,
)


class TinyBackbone(nn.Module):
    """Stand-in backbone: one strided conv, feature map N × 6 × H/4 × W/4."""

    feature_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, self.feature_dim, kernel_size=4, stride=4)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x))


def test_embedding_model_train_and_eval_outputs() -> None:
    torch.manual_seed(0)
    model = EmbeddingModel(TinyBackbone(), BNNeckHead(6, 7))
    assert (model.embedding_dim, model.num_classes) == (6, 7)
    images = torch.randn(4, 3, 16, 8)
    out = model.train()(images)
    assert isinstance(out, HeadOutput)
    assert out.logits.shape == (4, 7) and out.features.shape == (4, 6)
    emb = model.eval()(images)
    assert isinstance(emb, Tensor) and emb.shape == (4, 6)
    torch.testing.assert_close(model.embed(images), emb)


def test_embedding_model_rejects_mismatched_head() -> None:
    with pytest.raises(ValueError, match=r"does not match backbone\.feature_dim 6"):
        EmbeddingModel(TinyBackbone(), BNNeckHead(8, 3))


@pytest.mark.parametrize("embedding", ["pooled", "bnneck"])
def test_siamese_forward_shapes_and_embed(embedding: str) -> None:
    torch.manual_seed(0)
    model = SiameseModel(TinyBackbone(), num_classes=5, dropout=0.0, relu=True, embedding=embedding)
    a, b = torch.randn(3, 3, 16, 8), torch.randn(3, 3, 16, 8)
    out = model.train()(a, b)
    assert isinstance(out, SiameseOutput)
    assert out.verif_logits.shape == (3, 2)
    assert out.id_logits1 is not None and out.id_logits1.shape == (3, 5)
    assert out.id_logits2 is not None and out.id_logits2.shape == (3, 5)
    model.eval()
    out = model(a, b)
    torch.testing.assert_close(out.f1, model.pooled_features(a))
    emb_a, emb_b = model.embed(a), model.embed(b)
    torch.testing.assert_close(out.verif_logits, model.verification_head(emb_a, emb_b))
    if embedding == "pooled":
        torch.testing.assert_close(emb_a, model.backbone(a).mean(dim=(2, 3)))


def test_siamese_without_classes_has_no_id_logits() -> None:
    model = SiameseModel(TinyBackbone(), num_classes=None)
    out = model.train()(torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))
    assert out.id_logits1 is None and out.id_logits2 is None
    with pytest.raises(ValueError, match="unknown embedding 'cosine'"):
        SiameseModel(TinyBackbone(), num_classes=None, embedding="cosine")


def test_export_wrappers_eval_only_and_consistent() -> None:
    torch.manual_seed(0)
    siamese = SiameseModel(TinyBackbone(), num_classes=3, embedding="bnneck")
    siamese.train()(torch.randn(4, 3, 16, 8), torch.randn(4, 3, 16, 8))  # move the BN running stats
    export = EmbeddingExport(siamese)
    assert not siamese.training and export.embedding_dim == 6
    images = torch.randn(5, 3, 16, 8)
    emb = export(images)
    # eval mode: each embedding is independent of the rest of the batch
    torch.testing.assert_close(export(images[:1]), emb[:1])
    verifier = VerificationHeadExport(siamese.verification_head)
    probs = verifier(emb[:2], emb[2:4])
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    expected = siamese.verification_head.same_probability(emb[:2], emb[2:4])
    torch.testing.assert_close(probs[:, SAME_INDEX], expected)
    export.train()
    with pytest.raises(RuntimeError, match="eval mode only"):
        export(images)


def test_real_backbone_composes() -> None:
    backbones = pytest.importorskip("training.models.backbones")
    torch.manual_seed(0)
    backbone = backbones.build_backbone("osnet_x0_25")
    model = EmbeddingModel(backbone, BNNeckHead(backbone.feature_dim, 4))
    images = torch.randn(2, 3, 64, 32)
    out = model.train()(images)
    assert out.logits.shape == (2, 4) and out.features.shape == (2, backbone.feature_dim)
    emb = EmbeddingExport(model)(images)
    assert emb.shape == (2, backbone.feature_dim) and torch.isfinite(emb).all()
