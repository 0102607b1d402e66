"""The model folder and the pre-filled gallery the HTTP benchmarks serve (:mod:`benchmarks.http_bench`).

A model folder comes from ``--model`` under ``--models-dir``, a demo model, a random-weights export of
``--backbone``, or the tiny test models of ``tests/service/conftest.py``; the gallery is filled with random
embeddings straight through the service's own classes (no HTTP).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MODELS = ("demo-siamese", "demo-osnet")


def load_script(name: str, path: Path) -> Any:
    """Import a script by path (the tests' conftest, a sibling benchmark) under ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def export_backbone_model(root: Path, backbone: str, height: int, width: int) -> str:
    """A served ``embedding`` model folder of a random-weights backbone (thresholds are placeholders)."""
    import torch

    from benchmarks.embed_speed import build_model
    from service.contract import tensors
    from service.contract.manifest import (
        InputSpec,
        ModelManifest,
        Provenance,
        ScoringMode,
        Threshold,
        file_entry,
    )
    from service.contract.scoring import SERVED_EMBEDDING_METRICS, higher_is_better
    from training.export.onnx_io import export_onnx

    name = f"bench-{backbone}"
    folder = root / name
    folder.mkdir(parents=True)
    model = build_model(backbone)
    export_onnx(
        model,
        (torch.randn(2, 3, height, width),),
        folder / "embedding.onnx",
        input_names=list(tensors.EMBEDDING_INPUTS),
        output_names=list(tensors.EMBEDDING_OUTPUTS),
    )
    placeholder = {"eer": Threshold(threshold=0.5, tpr=0.5, fmr=0.5)}
    scoring: dict[Any, ScoringMode] = {
        m: ScoringMode(higher_is_better=higher_is_better(m), thresholds=placeholder, default_threshold="eer")
        for m in SERVED_EMBEDDING_METRICS
    }
    ModelManifest(
        name=name,
        kind="embedding",
        description=f"random-weights {backbone} for benchmarking only",
        input=InputSpec(height=height, width=width, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        files={"embedding": file_entry(folder, "embedding.onnx")},
        embedding_dim=model.embedding_dim,
        normalize_embeddings=False,
        default_metric="cosine",
        scoring=scoring,
        provenance=Provenance(recipe="none", dataset="none", notes="benchmark only"),
    ).save(folder)
    return name


def resolve_model(args: argparse.Namespace, tmp: Path) -> tuple[Path, str, str]:
    """(models dir, model folder name, where it came from)."""
    if args.backbone:
        return (
            tmp / "models",
            export_backbone_model(tmp / "models", args.backbone, args.height, args.width),
            "random-weights export",
        )
    if args.model:
        if not (args.models_dir / args.model / "manifest.json").is_file():
            raise FileNotFoundError(f"no model folder {args.models_dir / args.model} with a manifest.json")
        return args.models_dir, args.model, "models dir"
    for name in DEMO_MODELS:
        if (args.models_dir / name / "manifest.json").is_file():
            return args.models_dir, name, "demo model"
    conftest = load_script("_service_conftest", REPO_ROOT / "tests" / "service" / "conftest.py")
    return (
        conftest.build_tiny_models(tmp / "tiny"),
        "tiny-siamese",
        "tiny test model (tests/service/conftest.py)",
    )


def open_gallery(runtime: Any, data_dir: Path) -> Any:
    """The service's gallery of ``runtime``'s model in ``data_dir``, opened."""
    from service.gallery.gallery import Gallery
    from service.gallery.index import IndexConfig
    from service.state import indexed_metrics

    gallery = Gallery(
        data_dir,
        model_id=runtime.manifest.model_id,
        dim=runtime.manifest.embedding_dim,
        metrics=indexed_metrics(runtime),
        head=runtime.head_weights,
        config=IndexConfig(),
        encoding_dim=runtime.pairwise.encoding_dim if runtime.pairwise is not None else None,
    )
    gallery.open()
    return gallery


def fill_gallery(runtime: Any, data_dir: Path, size: int) -> None:
    """Write ``size`` random embeddings (10 per person) into the gallery, snapshots included."""
    from service.gallery.store import NewEntry

    gallery = open_gallery(runtime, data_dir)
    rng = np.random.default_rng(0)
    dim = runtime.manifest.embedding_dim
    for start in range(0, size, 5000):
        n = min(5000, size - start)
        entries = [
            NewEntry(person_id=f"p{(start + i) // 10}", camera_id=f"c{i % 6}", metadata={}, image=None)
            for i in range(n)
        ]
        gallery.add(entries, rng.standard_normal((n, dim)).astype(np.float32))
    gallery.close()
