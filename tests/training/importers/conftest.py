"""Fixtures for the importer tests: pedestrian images as encoded bytes, random torchreid checkpoints and
one imported (uncalibrated) model folder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from service.config import Settings
from tests.service.conftest import running
from training.importers.folder import render_pedestrians


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio."""
    return "asyncio"


def pedestrian_png(seed: int) -> bytes:
    """One rendered synthetic pedestrian (128×64), PNG-encoded (what a client uploads)."""
    buf = io.BytesIO()
    render_pedestrians(1, seed)[0].save(buf, format="PNG")
    return buf.getvalue()


async def served_embeddings(models_dir: Path, name: str, images: list[bytes], data_dir: Path) -> np.ndarray:
    """``POST /embeddings`` of the real app serving ``models_dir/name``: the served vectors (float64)."""
    settings = Settings(models_dir=models_dir, model=name, data_dir=data_dir, device="cpu",
                        max_wait_ms=2.0, intra_op_threads=1)  # type: ignore[call-arg]
    async with running(settings) as (_, client):
        r = await client.post("/embeddings", files=[("images", (f"{i}.png", b, "image/png"))
                                                      for i, b in enumerate(images)])
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["embeddings"], dtype=np.float64)


def agreement(served: np.ndarray, expected: np.ndarray) -> tuple[float, float, float]:
    """(min row cosine, max |Δ|, max |Δ| / max |expected|) of two embedding batches of the same shape."""
    assert served.shape == expected.shape, (served.shape, expected.shape)
    norms = np.linalg.norm(served, axis=1) * np.linalg.norm(expected, axis=1)
    cosine = float(((served * expected).sum(1) / norms).min())
    diff = float(np.abs(served - expected).max())
    return cosine, diff, diff / float(np.abs(expected).max())


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
