"""Evaluation reports: ``metrics.json`` and the pictures, written into a run folder.

The verification part measures, for each scoring mode the service offers (cosine, correlation, euclidean, plus
the modes whose Q × G scores the family's evaluation added, e.g. softmax for Siamese models), the score
distributions of same-person and different-person query × gallery pairs of the *test* split — persons never
seen in training — on embeddings without flip TTA (what the service computes). Same-person pairs are those
across different cameras (the Market protocol drops same-camera matches); different-person pairs are sampled
down to ``max_negatives``. ``metrics.json`` gets the TPR at FMR 1e-2 / 1e-3 / 1e-4 (``tpr_at_fmr``) and the
ROC AUC / EER (``verification``) of each mode.

These are quality numbers of the PyTorch model, not the manifest's thresholds: ``reid export`` calibrates
again with the exported graphs (fp16 included) and the service's scoring functions, so that a stored threshold
means what the service computes (:mod:`training.export.calibrate`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from service.contract.scoring import SERVED_EMBEDDING_METRICS, score_matrix
from training.evaluation import plots
from training.evaluation.calibration import (
    DEFAULT_FMR_TARGETS,
    calibrate,
    equal_error_rate,
    roc_curve,
    threshold_at_fmr,
)
from training.evaluation.evaluator import EvaluationResult


def pair_score_matrix(result: EvaluationResult, mode: str) -> np.ndarray:
    """Q × G scores in the service's units, float64: the family's own matrix (``result.scores``, e.g. softmax)
    or the embeddings scored by :func:`service.contract.scoring.score_matrix`."""
    if mode in result.scores:
        return result.scores[mode].astype(np.float64)
    return score_matrix(mode, result.query_features, result.gallery_features).astype(np.float64)


def calibration_masks(
    result: EvaluationResult, *, max_negatives: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into the Q × G matrix of the same-person and the (sampled) different-person pairs.

    Raises:
        ValueError: No same-person or no different-person pair.
    """
    q_pids, g_pids, q_cams, g_cams = result.ids()
    same_person = q_pids[:, None] == g_pids[None, :]
    cross_camera = q_cams[:, None] != g_cams[None, :]
    positive = np.flatnonzero(same_person & cross_camera)
    if positive.size == 0:  # e.g. custom sets with one camera: any same-person pair
        positive = np.flatnonzero(same_person)
    negative = np.flatnonzero(~same_person)
    if positive.size == 0 or negative.size == 0:
        raise ValueError(
            f"calibration needs same- and different-person pairs, got {positive.size} and {negative.size}"
        )
    if negative.size > max_negatives:
        negative = np.sort(np.random.default_rng(seed).choice(negative, size=max_negatives, replace=False))
    return positive, negative


def calibrate_result(
    result: EvaluationResult,
    *,
    target_fmr: float = 1e-3,
    max_negatives: int = 2_000_000,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Calibrate every scoring mode on the test split's query × gallery pairs.

    Returns:
        The calibration summary (pairs, per-mode :class:`~service.contract.manifest.ScoringMode` dicts, ROC
        points) and, per mode, the (same, different) score arrays.
    """
    modes = [*SERVED_EMBEDDING_METRICS, *(m for m in result.scores if m not in SERVED_EMBEDDING_METRICS)]
    positive, negative = calibration_masks(result, max_negatives=max_negatives, seed=seed)
    scoring: dict[str, Any] = {}
    roc: dict[str, Any] = {}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for mode in modes:
        matrix = pair_score_matrix(result, mode).ravel()
        same, diff = matrix[positive], matrix[negative]
        scores[mode] = (same, diff)
        scoring_mode = calibrate(same, diff, mode, target_fmr=target_fmr)
        for target in DEFAULT_FMR_TARGETS:
            key = f"fmr_{target:.0e}"
            if key not in scoring_mode.thresholds:
                higher = scoring_mode.higher_is_better
                scoring_mode.thresholds[key] = threshold_at_fmr(same, diff, target, higher)
        scoring[mode] = scoring_mode.model_dump()
        roc[mode] = {
            key: {"tpr": t.tpr, "threshold": t.threshold, "fmr": t.fmr}
            for key, t in scoring_mode.thresholds.items()
            if key.startswith("fmr_")
        }
    calibration = {
        "pairs": {
            "source": "query × gallery of the test split (identities disjoint from training), no flip TTA",
            "same_person": int(positive.size),
            "different_person": int(negative.size),
            "seed": seed,
        },
        "target_fmr": target_fmr,
        "scoring": scoring,
        "roc": roc,
    }
    return calibration, scores


def verification_summary(same: np.ndarray, diff: np.ndarray, higher_is_better: bool) -> dict[str, float]:
    """ROC AUC and verification accuracy of one scoring mode on the calibration pairs.

    ``roc_auc`` is the area under the ROC (trapezoids); ``accuracy_eer`` the balanced accuracy
    ``(TPR + 1 − FMR) / 2`` at the equal-error threshold (the pairs are unbalanced, so plain accuracy would
    mostly count the negatives); ``eer`` the equal-error rate.
    """
    curve = roc_curve(same, diff, higher_is_better)
    eer = equal_error_rate(same, diff, higher_is_better)
    auc = float(np.sum(np.diff(curve.fpr) * (curve.tpr[1:] + curve.tpr[:-1]) / 2))
    return {"roc_auc": auc, "accuracy_eer": (eer.tpr + 1.0 - eer.fmr) / 2, "eer": float(eer.eer)}


def write_report(
    result: EvaluationResult,
    output_dir: str | Path,
    *,
    target_fmr: float = 1e-3,
    extra: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write metrics.json, cmc.png, ranks.png, distances.png and roc.png.

    Args:
        result: The evaluation.
        output_dir: Folder to write into (created).
        target_fmr: False-match rate of the default calibrated thresholds.
        extra: More fields for ``metrics.json`` (dataset, checkpoint …).
        seed: Seed of the negative-pair sampling and of the queries shown in ``ranks.png``.

    Returns:
        The ``metrics.json`` content.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    calibration, scores = calibrate_result(result, target_fmr=target_fmr, seed=seed)
    metrics = {**(extra or {}), **result.metrics}
    metrics["tpr_at_fmr"] = {
        mode: {key: value["tpr"] for key, value in table.items()}
        for mode, table in calibration["roc"].items()
    }
    metrics["verification"] = {
        mode: verification_summary(same, diff, calibration["scoring"][mode]["higher_is_better"])
        for mode, (same, diff) in scores.items()
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")

    q_pids, g_pids, q_cams, g_cams = result.ids()
    metric = result.metrics["metric"]
    plots.plot_cmc(np.asarray(result.metrics["cmc"]), out / "cmc.png", title=f"CMC ({metric})")
    plots.plot_ranked_lists(
        [r.path for r in result.query], [r.path for r in result.gallery], result.distmat,
        q_pids, g_pids, q_cams, g_cams, out / "ranks.png", seed=seed,
    )
    shown = metric if metric in scores else "cosine"
    same, diff = scores[shown]
    thresholds = {
        key: value["threshold"] for key, value in calibration["scoring"][shown]["thresholds"].items()
        if key in (f"fmr_{target_fmr:.0e}", "eer")
    }
    plots.plot_distance_histograms(same, diff, out / "distances.png", shown, thresholds=thresholds)
    higher = calibration["scoring"][shown]["higher_is_better"]
    curve = roc_curve(same, diff, higher)
    plots.plot_roc(curve.fpr, curve.tpr, out / "roc.png", title=f"ROC ({shown}, test-split pairs)")
    return metrics
