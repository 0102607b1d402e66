"""fast-reid checkpoint → ``reid models import --format fastreid`` → served embeddings equal fast-reid's own.

The reference is fast-reid 1.4.0's own code from its PyPI sdist (``get_cfg`` + ``build_model`` on the same
config file; it loads here once termcolor and yacs are installed): a BoT ResNet-50 (GAP, BN neck) and an
SBS-style ResNet-50-IBN-a (non-local blocks, learnable GeM, BN neck, config through ``_BASE_``), random
weights with randomised BN / IN parameters, saved as fast-reid's checkpointer saves (``{'model': …}``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.cli import main
from service.contract.manifest import load
from service.contract.preprocess import PreprocessSpec, preprocess_bytes
from tests.training.importers.conftest import agreement, pedestrian_png, served_embeddings
from tests.training.importers.upstream import fastreid_model, randomise
from training.importers.fastreid import input_defaults, read_config
from training.importers.folder import sample_images

BOT = """MODEL:
  META_ARCHITECTURE: Baseline
  BACKBONE:
    NAME: build_resnet_backbone
    DEPTH: 50x
    LAST_STRIDE: 1
    FEAT_DIM: 2048
    WITH_IBN: False
  HEADS:
    NAME: EmbeddingHead
    NORM: BN
    WITH_BNNECK: True
    POOL_LAYER: GlobalAvgPool
    NECK_FEAT: before
    CLS_LAYER: Linear
INPUT:
  SIZE_TEST: [64, 32]
"""
SBS_IBN = """_BASE_: bot.yml
MODEL:
  BACKBONE:
    WITH_IBN: True
    WITH_NL: True
  HEADS:
    POOL_LAYER: GeneralizedMeanPoolingP
    NECK_FEAT: after
    CLS_LAYER: CircleSoftmax
    SCALE: 64
    MARGIN: 0.35
"""
MIN_COSINE = 0.99999
MAX_REL_DIFF = 1e-4


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["bot", "sbs_ibn"])
async def test_served_embeddings_equal_fastreid(name: str, tmp_path: Path) -> None:
    (tmp_path / "bot.yml").write_text(BOT)
    (tmp_path / "sbs_ibn.yml").write_text(SBS_IBN)
    config = tmp_path / f"{name}.yml"
    reference = fastreid_model(config)
    heads = reference.heads
    spec = PreprocessSpec(**input_defaults(read_config(config)))
    images = torch.from_numpy(sample_images(spec, 16, seed=99))
    randomise(reference, seed=3, images=images,
              forward=lambda x: heads.bottleneck(heads.pool_layer(reference.backbone(x))))
    torch.save({"model": reference.state_dict(), "iteration": 1000}, tmp_path / "model_final.pth")
    models = tmp_path / "models"
    argv = ["models", "import", "--format", "fastreid", "--config", str(config), "--weights",
            str(tmp_path / "model_final.pth"), "--output", str(models / name)]
    assert main(argv) == 0
    manifest = load(models / name)
    assert (manifest.input.height, manifest.input.width) == (64, 32) and manifest.embedding_dim == 2048

    pngs = [pedestrian_png(seed) for seed in (1, 2)]
    served = await served_embeddings(models, name, pngs, tmp_path / "data")

    batch = np.stack([preprocess_bytes(b, manifest.input.to_spec()) for b in pngs])
    mean = np.asarray(manifest.input.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(manifest.input.std, dtype=np.float32)[:, None, None]
    pixels = torch.from_numpy((batch * std + mean) * 255.0)  # fast-reid normalises 0…255 pixels itself
    with torch.no_grad():
        expected = reference.eval()(pixels).double().numpy()
    cosine, diff, rel = agreement(served, expected)
    print(f"fastreid {name}: max |Δ| = {diff:.3g} (relative {rel:.3g}), min cosine = {cosine:.8f}")
    assert cosine >= MIN_COSINE and rel <= MAX_REL_DIFF
