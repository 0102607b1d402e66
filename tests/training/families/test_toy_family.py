"""A model family defined in this file only: it registers itself, trains, exports and is served.

This is what adding a family costs: a module with a ``@register_family`` class (config section, build, loss
terms; evaluation and export inherited from :class:`ImageEmbeddingFamily`) — no edit anywhere else. The test
drives the real commands: ``reid train --model_kind toy --toy.width 4`` (the section's flag exists because
the family is registered), the final evaluation and report, ``reid export`` through the parity gate, and
the real service app on the exported folder (lifespan + httpx ASGI transport).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from service.cli import main
from service.config import Settings
from service.contract.manifest import load
from tests.service.conftest import running, synthetic_pedestrian_images
from tests.training.engine.conftest import TINY_FLAGS, tiny_market  # noqa: F401  (fixture)
from training.engine.checkpoint import load_model
from training.engine.config import TrainConfig
from training.families import family_names, get_family, register_family
from training.families.embedding import ImageEmbeddingFamily, identity_batch

pytestmark = pytest.mark.anyio


class ToyNet(nn.Module):
    """One strided convolution → global average pooling → embedding; a linear identity classifier."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embedding_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, images: Tensor) -> Tensor:
        return self.features(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.embed(images))


@dataclass
class ToyOptions:
    """The toy section: ``--toy.width``."""

    width: int = 8

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"toy.width must be >= 1, got {self.width}")


@register_family
class ToyFamily(ImageEmbeddingFamily):
    """A convolution and a pooling: the smallest image-embedding family."""

    name = "toy"
    description = "one convolution + pooling (a test's family)"
    options_type = ToyOptions
    losses = ("id",)
    network = "toynet"

    def architecture(self, cfg: TrainConfig) -> str:
        return f"{self.name}:{self.network}+w{self.options(cfg).width}"

    def build(self, cfg: TrainConfig, num_classes: int) -> nn.Module:
        return ToyNet(self.options(cfg).width, num_classes)

    def loss_terms(
        self, net: nn.Module, batch: list[Any], losses: dict[str, nn.Module], device: torch.device
    ) -> tuple[dict[str, Tensor], int]:
        images, pids = identity_batch(batch, device)
        return {"id": losses["id"](net(images), pids)}, images.shape[0]


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio."""
    return "asyncio"


def test_toy_family_is_registered_and_validated() -> None:
    assert "toy" in family_names() and isinstance(get_family("toy"), ToyFamily)
    with pytest.raises(ValueError, match="family 'toy' is registered twice"):
        register_family(ToyFamily)
    with pytest.raises(ValueError, match=r"triplet_weight needs model_kind 'embedding', got .* 'toy'"):
        TrainConfig(model_kind="toy")
    with pytest.raises(ValueError, match=r"toy.width must be >= 1, got 0"):
        TrainConfig(model_kind="toy", triplet_weight=0.0, section={"width": 0})


async def test_toy_family_trains_exports_and_is_served(tiny_market: Path, tmp_path: Path,  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["train", "--recipe", "osnet-x0_25", "--model_kind", "toy", "--toy.width", "4",
            "--triplet_weight", "0", "--center_weight", "0", "--root", str(tiny_market), *TINY_FLAGS,
            "--epochs", "1", "--eval_every", "0", "--batch_size", "8", "--output", str(run), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0.0 <= summary["mAP"] <= 1.0  # the final evaluation ran through the family
    saved = json.loads((run / "config.json").read_text())
    assert saved["model_kind"] == "toy" and saved["toy"] == {"width": 4} and saved["backbone"] == "toynet"
    model, cfg, ckpt = load_model(run / "checkpoint.pt")
    assert ckpt["architecture"] == "toy:toynet+w4" and isinstance(model, ToyNet) and cfg.toy.width == 4

    models_dir = tmp_path / "models"
    argv = ["export", "--checkpoint", str(run / "checkpoint.pt"), "--output", str(models_dir / "toy")]
    assert main(argv) == 0
    manifest = load(models_dir / "toy")
    assert manifest.kind == "embedding" and manifest.embedding_dim == 4
    gate = manifest.parity.rule
    assert gate is not None and manifest.parity.outputs["embedding"].max_rel_diff <= gate.max_rel_diff
    assert set(manifest.scoring) == {
        "cosine", "correlation", "euclidean",
    }

    pedestrians = synthetic_pedestrian_images(persons=2)
    settings = Settings(models_dir=models_dir, model="toy", data_dir=tmp_path / "data", device="cpu",
                        max_wait_ms=2.0, intra_op_threads=1)
    async with running(settings) as (_, client):
        ready = (await client.get("/ready")).json()
        assert ready["model"] == manifest.model_id and ready["kind"] == "embedding"
        for person, images in pedestrians.enrol.items():
            files = [("images", (f"{person}-{i}.jpg", img, "image/jpeg")) for i, img in enumerate(images[:2])]
            r = await client.post("/gallery", files=files, data={"person_id": person})
            assert r.status_code == 201, r.text
        query = next(iter(pedestrians.query.values()))
        r = await client.post("/search", files=[("images", ("q.jpg", query, "image/jpeg"))],
                              data={"top_k": "4"})
        assert r.status_code == 200, r.text
        matches = r.json()["results"][0]["matches"]
        scores = [m["score"] for m in matches]
        assert len(matches) == 4 and all(math.isfinite(s) for s in scores)
        assert scores == sorted(scores, reverse=True)  # cosine: higher is more alike
