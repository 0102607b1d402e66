"""Fixtures for the importer tests: pedestrian images as encoded bytes, random torchreid checkpoints and
one imported (uncalibrated) model folder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio."""
    return "asyncio"


def pedestrian_png(seed: int, height: int = 128, width: int = 64) -> bytes:
    """One rendered synthetic pedestrian, PNG-encoded (what a client uploads)."""
    from training.data.synthetic import (
        SynthConfig,
        camera_profiles,
        person_rng,
        render_pedestrian_image,
        sample_person,
    )

    cameras = camera_profiles(SynthConfig(seed=seed))
    person = sample_person(person_rng(seed, 1))
    image = render_pedestrian_image(person, cameras[0], np.random.default_rng(seed), height, width)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_random_torchreid(arch: str, path: Path, seed: int = 0) -> Path:
    """A torchreid-layout checkpoint of ``arch`` with random weights (our module, torchreid's names)."""
    from training.importers.torchreid import TorchreidModel

    torch.manual_seed(seed)
    model = TorchreidModel(arch)
    state = {f"module.{k}": v for k, v in model.torchreid_state_dict().items()}
    state["module.classifier.weight"] = torch.zeros(10, model.embedding_dim)
    torch.save({"state_dict": state, "epoch": 1}, path)
    return path


@pytest.fixture(scope="session")
def imported_osnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models/osnet`` imported from a random torchreid osnet_x0_25 checkpoint at 64×32 (uncalibrated)."""
    from service.cli import main

    root = tmp_path_factory.mktemp("imported")
    weights = save_random_torchreid("osnet_x0_25", root / "osnet_x0_25.pth.tar")
    argv = ["models", "import", "--format", "torchreid", "--arch", "osnet_x0_25", "--weights", str(weights),
            "--output", str(root / "models" / "osnet"), "--height", "64", "--width", "32"]
    assert main(argv) == 0
    return root / "models" / "osnet"
