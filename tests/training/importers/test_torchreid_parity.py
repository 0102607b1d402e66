"""torchreid checkpoint → ``reid models import`` → served ``/embeddings`` equal torchreid's own eval output.

The reference is torchreid 0.2.5's model code from its PyPI sdist (see ``upstream.py``), not our reading of
it: random weights with random BN statistics and IN parameters, saved the three ways torchreid files come
(``{'state_dict': module.…}`` from a DataParallel run, ``{'state_dict': …}``, a bare state dict), imported
with the real command, served by the real app, compared on the same preprocessed image.
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
from tests.training.importers.upstream import TORCHREID_FILES, randomise, torchreid_model
from training.importers.folder import IMAGENET_MEAN, IMAGENET_STD, sample_images
from training.importers.torchreid import ARCHS

HEIGHT, WIDTH = 64, 32
MIN_COSINE = 0.99999
#: Max |served − torchreid| relative to the largest |torchreid| value (float32 through two runtimes).
MAX_REL_DIFF = 1e-4


def save_as_torchreid(model: torch.nn.Module, path: Path, style: int) -> Path:
    """Save as torchreid's ``save_checkpoint`` does (style 0), without ``module.`` (1), or bare (2)."""
    state = model.state_dict()
    if style == 0:
        torch.save(
            {
                "state_dict": {f"module.{k}": v for k, v in state.items()},
                "epoch": 60,
                "rank1": 0.9,
                "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4, "params": [0, 1]}]},
            },
            path,
        )
    else:
        torch.save({"state_dict": state} if style == 1 else state, path)
    return path


def test_every_supported_arch_has_an_upstream_reference() -> None:
    assert sorted(TORCHREID_FILES) == sorted(ARCHS)


@pytest.mark.anyio
@pytest.mark.parametrize("arch", sorted(ARCHS))
async def test_served_embeddings_equal_torchreid(arch: str, tmp_path: Path) -> None:
    index = sorted(ARCHS).index(arch)
    spec = PreprocessSpec(height=HEIGHT, width=WIDTH, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    statistics_images = torch.from_numpy(sample_images(spec, 16, seed=99))
    reference = randomise(torchreid_model(arch), seed=index, images=statistics_images)
    weights = save_as_torchreid(reference, tmp_path / f"{arch}.pth.tar", style=index % 3)
    models = tmp_path / "models"
    argv = ["models", "import", "--format", "torchreid", "--arch", arch, "--weights", str(weights),
            "--output", str(models / arch), "--height", str(HEIGHT), "--width", str(WIDTH)]
    assert main(argv) == 0

    manifest = load(models / arch)
    assert manifest.provenance.source is not None and manifest.provenance.source.arch == arch
    assert manifest.uncalibrated == ["correlation", "cosine", "euclidean"]
    images = [pedestrian_png(seed) for seed in (1, 2)]
    served = await served_embeddings(models, arch, images, tmp_path / "data")
    batch = np.stack([preprocess_bytes(b, manifest.input.to_spec()) for b in images])
    with torch.no_grad():
        expected = reference(torch.from_numpy(batch)).double().numpy()
    assert served.shape == (2, manifest.embedding_dim)
    cosine, diff, rel = agreement(served, expected)
    print(f"{arch}: max |Δ| = {diff:.3g} (relative {rel:.3g}), min cosine = {cosine:.8f}")
    assert cosine >= MIN_COSINE and rel <= MAX_REL_DIFF
