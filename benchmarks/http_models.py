"""A served ``embedding`` model of a random-weights backbone, for ``reid bench http --backbone``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
