"""Checkpoint round trip, model rebuilding from the stored config, and the architecture-mismatch error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.engine.checkpoint import (
    architecture_name,
    build_model,
    load_model,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from training.engine.config import TrainConfig
from training.models.reid_model import EmbeddingModel, SiameseModel


def _cfg(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {"backbone": "osnet_x0_25", "height": 64, "width": 32, **overrides}
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_build_model_kinds() -> None:
    embedding = build_model(_cfg(embedding_dim=32), num_classes=5)
    assert isinstance(embedding, EmbeddingModel) and embedding.embedding_dim == 32
    siamese_cfg = _cfg(model_kind="siamese", sampler="pairs", triplet_weight=0.0, verification_weight=1.0)
    siamese = build_model(siamese_cfg, num_classes=5)
    assert isinstance(siamese, SiameseModel) and siamese.identity_classifier is not None
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet5'.*valid backbones"):
        build_model(_cfg(backbone="resnet5"), num_classes=5)
    with pytest.raises(ValueError, match=r"does not take options \['last_stride'\]"):
        build_model(_cfg(last_stride=1), num_classes=5)


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    cfg = _cfg(embedding_dim=16)
    model = build_model(cfg, num_classes=6)
    path = save_checkpoint(tmp_path / "checkpoint.pt", model=model, cfg=cfg, num_classes=6, epoch=4,
                           metrics={"mAP": 0.5})
    loaded, loaded_cfg, ckpt = load_model(path)
    assert loaded_cfg == cfg and ckpt["epoch"] == 4 and ckpt["metrics"] == {"mAP": 0.5}
    assert ckpt["architecture"] == "embedding:osnet_x0_25+reduce16" == architecture_name(cfg)
    assert not loaded.training
    images = torch.randn(3, 3, 64, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_other_architecture_fails_naming_both(tmp_path: Path) -> None:
    cfg = _cfg()
    path = save_checkpoint(tmp_path / "a.pt", model=build_model(cfg, 4), cfg=cfg, num_classes=4, epoch=0)
    other_cfg = _cfg(embedding_dim=8)
    other = build_model(other_cfg, 4)
    expected = r"holds architecture 'embedding:osnet_x0_25' but the model is 'embedding:osnet_x0_25\+reduce8'"
    with pytest.raises(ValueError, match=expected):
        load_weights(other, read_checkpoint(path), architecture=architecture_name(other_cfg), source="a.pt")
    # Same architecture name but a different number of identities: the first bad key is named.
    with pytest.raises(ValueError, match=r"shape mismatch for 'head.classifier.weight'"):
        load_weights(build_model(cfg, 7), read_checkpoint(path), architecture=architecture_name(cfg))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2)}, bogus)
    with pytest.raises(ValueError, match=r"not a reid-checkpoint/1 checkpoint"):
        load_model(bogus)
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found"):
        load_model(tmp_path / "missing.pt")
