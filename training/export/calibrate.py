"""Thresholds for the manifest, measured with the exported graph on identities the model never trained on.

The scores are computed by :func:`service.inference.scoring.pair_scores` — the very function the service
applies a threshold to — from embeddings produced by the exported ONNX graph, so a stored threshold means
exactly the same thing at serving time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.inference.preprocess import PreprocessSpec, preprocess_file, stack_batch
from service.inference.scoring import HeadWeights, pair_scores
from service.manifest import ScoringMode
from training.evaluation.calibration import calibrate, make_pairs
from training.export.parity import cpu_session


def onnx_embeddings(
    onnx_path: str | Path, paths: Sequence[Path], spec: PreprocessSpec, batch_size: int = 64
) -> np.ndarray:
    """Embed image files with an exported ``embedding.onnx`` through the shared preprocessing."""
    session = cpu_session(onnx_path)
    out = []
    for start in range(0, len(paths), batch_size):
        batch = stack_batch([preprocess_file(p, spec) for p in paths[start : start + batch_size]])
        out.append(session.run(None, {"images": batch})[0])
    return np.concatenate(out, axis=0)


def calibrate_scoring(
    embeddings: np.ndarray,
    person_ids: np.ndarray,
    camera_ids: np.ndarray,
    metrics: Sequence[str],
    *,
    head: HeadWeights | None = None,
    target_fmr: float = 1e-3,
    max_negatives: int = 200_000,
    seed: int = 0,
) -> tuple[dict[str, ScoringMode], dict[str, int]]:
    """Calibrate every scoring mode in ``metrics`` on held-out embeddings.

    Returns:
        (metric → ScoringMode with 'fmr_…' and 'eer' thresholds, pair counts).
    """
    if not 0.0 < target_fmr < 1.0:
        raise ValueError(f"target_fmr must be in (0, 1), got {target_fmr}")
    pairs = make_pairs(person_ids, camera_ids, max_negatives=max_negatives, seed=seed)
    positives, negatives = pairs.positive, pairs.negative
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError(
            "calibration needs same-person pairs across cameras and different-person pairs; "
            f"got {len(positives)} and {len(negatives)} from {len(person_ids)} images"
        )
    modes: dict[str, ScoringMode] = {}
    for metric in metrics:
        same = pair_scores(metric, embeddings[positives[:, 0]], embeddings[positives[:, 1]], head)
        diff = pair_scores(metric, embeddings[negatives[:, 0]], embeddings[negatives[:, 1]], head)
        modes[metric] = calibrate(same, diff, metric, target_fmr=target_fmr)
    return modes, {"positive_pairs": len(positives), "negative_pairs": len(negatives)}
