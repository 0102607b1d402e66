"""The report scores pairs as the contract does: a family's own matrices as given, the rest by registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from service.contract.scoring import pair_scores
from tests.training.evaluation.test_evaluator import _Siamese
from training.data.datasets.base import ImageRecord
from training.evaluation.evaluator import EvaluationResult
from training.evaluation.report import calibrate_result, pair_score_matrix
from training.families.siamese import softmax_same_probability


def test_pair_score_matrix_is_the_head_and_the_contract_on_every_pair() -> None:
    model = _Siamese().eval()
    rng = np.random.default_rng(0)
    query, gallery = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    records = [ImageRecord(Path(f"{i}.jpg"), i % 2, 1 + i // 3) for i in range(5)]
    result = EvaluationResult({}, np.zeros((3, 5)), query, gallery, records[:3], records)
    result.scores["softmax"] = softmax_same_probability(model, query, gallery)  # what the siamese family adds
    q = np.repeat(query, 5, axis=0)
    g = np.tile(gallery, (3, 1))
    with torch.no_grad():
        head = model.verification_head.same_probability(torch.from_numpy(q), torch.from_numpy(g)).numpy()
    np.testing.assert_allclose(pair_score_matrix(result, "softmax"), head.reshape(3, 5), rtol=1e-5, atol=1e-6)
    for mode in ("cosine", "correlation", "euclidean"):
        direct = pair_scores(mode, q, g).reshape(3, 5)
        np.testing.assert_allclose(pair_score_matrix(result, mode), direct, rtol=1e-5, atol=1e-5)
    calibration, _ = calibrate_result(result)
    assert list(calibration["scoring"]) == ["cosine", "correlation", "euclidean", "softmax"]
    assert calibration["scoring"]["euclidean"]["higher_is_better"] is False
