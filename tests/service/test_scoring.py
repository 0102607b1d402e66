"""The scoring registry: every metric's index algebra agrees with its direct pair score."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from service.contract import scoring
from service.contract.scoring import HeadWeights, MetricName, ServedMetric


@pytest.fixture
def head() -> HeadWeights:
    rng = np.random.default_rng(7)
    return HeadWeights(weight=rng.normal(size=6).astype(np.float32) * 0.2, bias=-0.4)


def test_the_registry_and_the_literal_types_list_the_same_names() -> None:
    assert set(scoring.METRICS) == set(get_args(MetricName))
    assert set(scoring.SERVED_METRICS) == set(get_args(ServedMetric))
    assert set(scoring.METRICS) - set(scoring.SERVED_METRICS) == {"cityblock", "minkowski"}
    assert scoring.SERVED_EMBEDDING_METRICS == ("cosine", "correlation", "euclidean")
    for name in scoring.METRICS:
        metric = scoring.get(name)
        assert metric.name == name and metric.pair_score and metric.threshold
        assert metric.direction() in metric.threshold
    with pytest.raises(ValueError, match="registered twice"):
        scoring.register(scoring.get("cosine"))


@pytest.mark.parametrize("name", [m for m in scoring.METRICS if m != "pairwise"])
def test_score_matrix_agrees_with_pair_scores(name: str, head: HeadWeights) -> None:
    rng = np.random.default_rng(1)
    query, gallery = rng.normal(size=(5, 6)), rng.normal(size=(8, 6))
    matrix = scoring.score_matrix(name, query, gallery, head, p=2.5)
    rows, cols = (i.ravel() for i in np.meshgrid(np.arange(5), np.arange(8), indexing="ij"))
    direct = scoring.pair_scores(name, query[rows], gallery[cols], head, p=2.5).reshape(5, 8)
    np.testing.assert_allclose(matrix, direct, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", [m for m in scoring.SERVED_METRICS if m != "pairwise"])
def test_the_index_path_in_float32_agrees_with_pair_scores(name: str, head: HeadWeights) -> None:
    rng = np.random.default_rng(2)
    query, gallery = rng.normal(size=(3, 6)).astype(np.float32), rng.normal(size=(9, 6)).astype(np.float32)
    q_vec, constants = scoring.query_vectors(name, query, head)
    g_vec = scoring.gallery_vectors(name, gallery, head)
    assert g_vec.dtype == q_vec.dtype == np.float32 and g_vec.shape[1] == scoring.index_dim(name, 6)
    if scoring.get(name).inner_product:
        raw = q_vec.astype(np.float64) @ g_vec.T.astype(np.float64)
    else:
        raw = ((q_vec[:, None, :].astype(np.float64) - g_vec[None]) ** 2).sum(-1)
    got = scoring.index_scores(name, raw, constants)
    rows, cols = (i.ravel() for i in np.meshgrid(np.arange(3), np.arange(9), indexing="ij"))
    direct = scoring.pair_scores(name, query[rows], gallery[cols], head).reshape(3, 9)
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5 * np.abs(direct).max())


def test_refusals_name_the_reason() -> None:
    x = np.zeros((1, 3))
    with pytest.raises(ValueError, match="scored by comparator"):
        scoring.pair_scores("pairwise", x, x)
    with pytest.raises(ValueError, match="evaluation-only: the service"):
        scoring.gallery_vectors("cityblock", x)
    with pytest.raises(ValueError, match="p must be > 0"):
        scoring.pair_scores("minkowski", x, x, p=0.0)
    assert "softmax: p(same)" in scoring.describe()


def test_the_readme_table_states_every_metric() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for name in scoring.METRICS:
        metric = scoring.get(name)
        assert f"| `{name}` | {metric.pair_score} | {metric.threshold} |" in readme, name
