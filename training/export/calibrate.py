"""Thresholds for the manifest, measured with the exported graph on identities the model never trained on.

The scores are computed by :func:`service.contract.scoring.pair_scores` — the very function the service
applies a threshold to — from embeddings produced by the exported ONNX graph, so a stored threshold means
exactly the same thing at serving time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.contract import tensors
from service.contract.manifest import ScoringMode
from service.contract.preprocess import PreprocessSpec, preprocess_file, stack_batch
from service.contract.scoring import HeadWeights, pair_scores
from service.inference.pairwise import run_comparator
from training.engine.progress import track
from training.evaluation.calibration import PairIndices, calibrate, make_pairs
from training.export.parity import cpu_session


def onnx_embeddings(
    onnx_path: str | Path, paths: Sequence[Path], spec: PreprocessSpec, batch_size: int = 64
) -> np.ndarray:
    """Embed image files with an exported ``embedding.onnx`` through the shared preprocessing."""
    session = cpu_session(onnx_path)
    out = []
    starts = range(0, len(paths), batch_size)
    for start in track(starts, "calibration embeddings", total=len(paths),
                       size=lambda s: min(batch_size, len(paths) - s)):  # fmt: skip
        batch = stack_batch([preprocess_file(p, spec) for p in paths[start : start + batch_size]])
        out.append(session.run([tensors.EMBEDDINGS], {tensors.IMAGES: batch})[0])
    return np.concatenate(out, axis=0)


def _pairs(
    person_ids: np.ndarray, camera_ids: np.ndarray, *, max_negatives: int, seed: int
) -> PairIndices:
    """:func:`make_pairs`, refusing a set without same-person or without different-person pairs."""
    pairs = make_pairs(person_ids, camera_ids, max_negatives=max_negatives, seed=seed)
    if len(pairs.positive) == 0 or len(pairs.negative) == 0:
        raise ValueError(
            "calibration needs same-person pairs across cameras and different-person pairs; "
            f"got {len(pairs.positive)} and {len(pairs.negative)} from {len(person_ids)} images"
        )
    return pairs


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
    positives, negatives = _pairs(person_ids, camera_ids, max_negatives=max_negatives, seed=seed)
    modes: dict[str, ScoringMode] = {}
    for metric in metrics:
        same = pair_scores(metric, embeddings[positives[:, 0]], embeddings[positives[:, 1]], head)
        diff = pair_scores(metric, embeddings[negatives[:, 0]], embeddings[negatives[:, 1]], head)
        modes[metric] = calibrate(same, diff, metric, target_fmr=target_fmr)
    return modes, {"positive_pairs": len(positives), "negative_pairs": len(negatives)}


def onnx_encodings(
    encoder_path: str | Path, paths: Sequence[Path], spec: PreprocessSpec, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Encodings (N × E) and descriptors (N × D) of image files from a pairwise model's ``encoder.onnx``."""
    session = cpu_session(encoder_path)
    encodings, descriptors = [], []
    starts = range(0, len(paths), batch_size)
    for start in track(starts, "calibration encodings", total=len(paths),
                       size=lambda s: min(batch_size, len(paths) - s)):  # fmt: skip
        batch = stack_batch([preprocess_file(p, spec) for p in paths[start : start + batch_size]])
        encoding, descriptor = session.run([tensors.ENCODING, tensors.DESCRIPTOR], {tensors.IMAGES: batch})
        encodings.append(encoding)
        descriptors.append(descriptor)
    return np.concatenate(encodings), np.concatenate(descriptors)


def onnx_comparator_scores(
    comparator_path: str | Path, encodings_a: np.ndarray, encodings_b: np.ndarray, *, max_batch: int | None
) -> np.ndarray:
    """``score`` of ``comparator.onnx`` for the row pairs (float64), through the service's own runner."""
    scores = run_comparator(cpu_session(comparator_path), encodings_a, encodings_b, max_batch)
    return scores.astype(np.float64)


def calibrate_pairwise(
    encodings: np.ndarray,
    person_ids: np.ndarray,
    camera_ids: np.ndarray,
    comparator_path: str | Path,
    *,
    max_batch: int | None,
    target_fmr: float = 1e-3,
    max_negatives: int = 5000,
    seed: int = 0,
) -> tuple[ScoringMode, dict[str, int]]:
    """Calibrate the ``pairwise`` scoring mode on ``comparator.onnx`` scores of held-out pairs.

    The comparator costs one call per pair (not one dot product), so the different-person pairs are sampled
    down to ``max_negatives`` (5,000 by default: thresholds down to an FMR of 1e-3 rest on ≥ 5 negatives).

    Returns:
        The scoring mode (thresholds at ``target_fmr`` and the EER) and the pair counts.
    """
    positives, negatives = _pairs(person_ids, camera_ids, max_negatives=max_negatives, seed=seed)
    same = onnx_comparator_scores(
        comparator_path, encodings[positives[:, 0]], encodings[positives[:, 1]], max_batch=max_batch
    )
    diff = onnx_comparator_scores(
        comparator_path, encodings[negatives[:, 0]], encodings[negatives[:, 1]], max_batch=max_batch
    )
    mode = calibrate(same, diff, "pairwise", target_fmr=target_fmr)
    return mode, {"pairwise_positive_pairs": len(positives), "pairwise_negative_pairs": len(negatives)}
