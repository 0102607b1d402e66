"""Evaluator pieces on hand-made inputs: Siamese softmax scores, single-shot metrics, calibration pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.datasets.base import ImageRecord, ReidSplit
from training.evaluation.evaluator import EvaluationResult, is_single_shot, rank_metrics
from training.evaluation.metrics import RankIds
from training.evaluation.report import calibration_masks
from training.families.siamese import softmax_same_probability
from training.models.heads import VerificationHead


class _Siamese(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.verification_head = VerificationHead(4, dropout=0.5)
        torch.nn.init.normal_(self.verification_head.classifier.weight, std=1.0)
        torch.nn.init.normal_(self.verification_head.classifier.bias, std=1.0)


def test_softmax_matrix_equals_the_head_on_every_pair() -> None:
    model = _Siamese().eval()
    rng = np.random.default_rng(0)
    query, gallery = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    matrix = softmax_same_probability(model, query, gallery)
    q = torch.from_numpy(query).repeat_interleave(5, dim=0)
    g = torch.from_numpy(gallery).repeat(3, 1)
    with torch.no_grad():
        expected = model.verification_head.same_probability(q, g).reshape(3, 5).numpy()
    np.testing.assert_allclose(matrix, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no verification_head"):
        softmax_same_probability(torch.nn.Linear(2, 2), query, gallery)


def test_rank_metrics_known_values_and_single_shot() -> None:
    # 2 queries (persons 1, 2 in camera 1); gallery: person 1 twice and person 2 once, all in camera 2.
    distmat = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.3]])
    ids = RankIds(np.array([1, 2]), np.array([1, 1, 2]), np.array([1, 1]), np.array([2, 2, 2]))
    metrics = rank_metrics(distmat, ids, single_shot=True, repetitions=4)
    # query 1: matches at ranks 1 and 3 → AP = (1 + 2/3) / 2; query 2: its match is at rank 2 → AP 1/2.
    assert metrics["rank1"] == pytest.approx(0.5) and metrics["rank5"] == pytest.approx(1.0)
    assert metrics["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert set(metrics["single_shot"]["rank1"]) == {"mean", "std"}
    assert metrics["cmc"][:2] == pytest.approx([0.5, 1.0])


def test_single_shot_datasets() -> None:
    assert is_single_shot(ReidSplit("viper", [], [], []))
    assert is_single_shot(ReidSplit("cuhk03", [], [], [], info={"protocol": "classic"}))
    assert not is_single_shot(ReidSplit("cuhk03", [], [], [], info={"protocol": "new"}))
    assert not is_single_shot(ReidSplit("market1501", [], [], []))


def test_calibration_pairs_are_cross_camera_positives_and_sampled_negatives() -> None:
    def rec(pid: int, cam: int) -> ImageRecord:
        return ImageRecord(Path(f"{pid}_{cam}.jpg"), pid, cam)

    query, gallery = [rec(1, 1), rec(2, 1)], [rec(1, 1), rec(1, 2), rec(2, 2), rec(3, 2)]
    empty = np.zeros((0, 1), dtype=np.float32)
    result = EvaluationResult({}, np.zeros((2, 4)), empty, empty, query, gallery)
    positive, negative = calibration_masks(result, max_negatives=100, seed=0)
    assert positive.tolist() == [1, 6]  # (q0, g1) and (q1, g2); (q0, g0) is the same camera
    assert negative.tolist() == [2, 3, 4, 5, 7]
    assert len(calibration_masks(result, max_negatives=2, seed=0)[1]) == 2
