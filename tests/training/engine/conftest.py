"""Shared fixtures: a tiny synthetic Market-layout dataset and the tiny-run command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.synthetic.market import SynthConfig, generate_market_dataset

#: 8 train ids × 2 cameras × 2 images at 64×32 with OSNet x0.25: a training epoch takes about a second.
TINY_FLAGS: list[str] = [
    "--backbone", "osnet_x0_25", "--height", "64", "--width", "32", "--p", "4", "--k", "2",
    "--threads", "1", "--num_workers", "0", "--warmup_epochs", "1", "--max_train_minutes", "none",
]


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 persons (8 train, 8 test) × 2 cameras × 2 images, Market-1501 layout."""
    root = tmp_path_factory.mktemp("tiny_market")
    config = SynthConfig(identities=16, train_identities=8, cameras=2, images_per_camera=2, seed=3)
    generate_market_dataset(root, config, workers=1)
    return root
