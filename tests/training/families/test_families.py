"""Registry sweep over the built-in families: build, one loss dict, one backward pass, one evaluation.

Each family is driven only through its registered object (as the trainer, evaluator and exporter drive it),
on a tiny config of one of its recipes and a hand-made batch of the family's kind (P × K or pairs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data.datasets.base import ImageRecord
from training.engine.checkpoint import architecture_name, build_model
from training.engine.recipes import resolve_config
from training.engine.trainer import preprocess_spec
from training.evaluation.evaluator import EvalSettings
from training.families import BUILTIN, family_names, get_family
from training.losses import CombinedLoss

#: A recipe of each built-in family, with tiny inputs.
TINY: dict[str, tuple[str, dict[str, object]]] = {
    "embedding": ("osnet-x0_25", {"height": 64, "width": 32, "embedding_dim": 16}),
    "siamese": ("demo-siamese-cpu", {"height": 64, "width": 32, "siamese.embedding": "bnneck"}),
    "pairwise": ("mls-l2l3", {"height": 32, "width": 16, "pairwise.part_sizes": {"l2": 4, "l3": 3}}),
    "multidepth": ("multidepth-vgg16", {
        "height": 64, "width": 32, "multidepth.filter_size": 3, "multidepth.image_resolution": False,
    }),
}
NUM_CLASSES = 4


def test_every_builtin_family_is_registered_and_swept() -> None:
    assert list(BUILTIN) == family_names()[: len(BUILTIN)] and set(TINY) == set(BUILTIN)
    with pytest.raises(ValueError, match=r"unknown model family 'nope'; valid families: embedding, siamese"):
        get_family("nope")


def _batch(pairs: bool, cfg_height: int, cfg_width: int) -> list[torch.Tensor]:
    """4 images of 2 persons (P × K) or 4 pairs, half of them same-person, as the loaders yield them."""
    images = torch.randn(4, 3, cfg_height, cfg_width)
    if not pairs:
        return [images, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]), torch.arange(4)]
    pid_a, pid_b = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 3, 2])
    return [images, torch.randn(4, 3, cfg_height, cfg_width), pid_a, pid_b, pid_a == pid_b]


def _records(folder: Path, height: int, width: int) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """2 query and 2 gallery JPEGs of persons 1 and 2 (query camera 1, gallery camera 2)."""
    rng = np.random.default_rng(1)
    records = []
    for i, (pid, cam) in enumerate([(1, 1), (2, 1), (1, 2), (2, 2)]):
        path = folder / f"{pid}_{cam}_{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(path, pid, cam))
    return records[:2], records[2:]


@pytest.mark.parametrize("name", BUILTIN)
def test_family_builds_trains_a_step_and_evaluates(name: str, tmp_path: Path) -> None:
    recipe, tiny = TINY[name]
    cfg = resolve_config(recipe, {**tiny, "pretrained": None})
    family = get_family(name)
    assert cfg.family is family and architecture_name(cfg).startswith(f"{name}:")
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES)
    losses = family.build_losses(cfg, NUM_CLASSES, model)
    assert set(losses) == set(cfg.loss_weights())
    terms, count = family.loss_terms(model, _batch(family.pairs, cfg.height, cfg.width), losses,
                                     torch.device("cpu"))
    total, components = CombinedLoss(cfg.loss_weights())(terms)
    total.backward()
    assert count == (8 if family.pairs else 4) and all(math.isfinite(v) for v in components.values())
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())

    model.eval()
    if name == "multidepth":  # this family embeds after `reid explore-filters` stored a selection
        family.load_extras(model, {"selected_filters": {"pool3": [0], "pool4": [1], "pool5": [2]}})
    query, gallery = _records(tmp_path, cfg.height, cfg.width)
    spec = preprocess_spec(cfg)
    settings = EvalSettings(spec=spec, metric=cfg.eval_metric, batch_size=4, options=cfg.section)
    result = family.evaluate(model, query, gallery, settings)
    assert result.distmat.shape == (2, 2) and 0.0 <= result.metrics["mAP"] <= 1.0
    assert all(scores.shape == (2, 2) for scores in result.scores.values())

    # exports: tests/training/export/ (test_graphs: embedding, siamese; test_export_pairwise: pairwise,
    # multidepth) and tests/training/families/test_toy_family.py
