import numpy as np
import pytest
from scipy.spatial.distance import cdist

from service.contract.scoring import HeadWeights, higher_is_better, pair_scores, score_matrix
from training.evaluation.distances import METRICS, compute_distance


@pytest.fixture
def embeddings() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(13, 7)), rng.normal(size=(29, 7))


@pytest.mark.parametrize("metric", METRICS)
def test_matches_scipy_cdist(metric: str, embeddings: tuple[np.ndarray, np.ndarray]) -> None:
    query, gallery = embeddings
    kwargs = {"p": 3.0} if metric == "minkowski" else {}
    expected = cdist(query, gallery, metric=metric, **kwargs)
    got = compute_distance(query, gallery, metric, chunk_size=5)  # 5 does not divide 13: ragged last chunk
    assert got.shape == (13, 29)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "correlation"])
def test_float32_input_is_close_to_float64_reference(metric: str) -> None:
    rng = np.random.default_rng(1)
    query, gallery = rng.normal(size=(6, 64)).astype(np.float32), rng.normal(size=(9, 64)).astype(np.float32)
    expected = cdist(query.astype(np.float64), gallery.astype(np.float64), metric=metric)
    np.testing.assert_allclose(compute_distance(query, gallery, metric), expected, rtol=1e-4, atol=1e-4)


def test_minkowski_p_is_used() -> None:
    query, gallery = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    assert compute_distance(query, gallery, "minkowski", p=1.0)[0, 0] == pytest.approx(7.0)
    assert compute_distance(query, gallery, "minkowski", p=2.0)[0, 0] == pytest.approx(5.0)


def test_hand_computed_values() -> None:
    query = np.array([[1.0, 0.0]])
    gallery = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    np.testing.assert_allclose(compute_distance(query, gallery, "cosine"), [[0.0, 1.0, 2.0]], atol=1e-7)
    np.testing.assert_allclose(compute_distance(query, gallery, "euclidean"), [[0.0, 5**0.5, 4.0]], atol=1e-6)
    np.testing.assert_allclose(compute_distance(query, gallery, "cityblock"), [[0.0, 3.0, 4.0]])


def test_identical_vectors_are_at_near_zero_euclidean_distance() -> None:
    x = np.random.default_rng(2).normal(size=(4, 32)).astype(np.float32) * 100
    d = compute_distance(x, x, "euclidean")
    assert np.all(np.isfinite(d)) and np.all(d >= 0)  # rounding below zero is clamped before the sqrt
    off_diagonal = d[~np.eye(4, dtype=bool)]
    assert np.all(np.diag(d) <= 1e-3 * off_diagonal.min())  # float32 cancellation stays tiny
    np.testing.assert_array_equal(np.diag(compute_distance(x.astype(np.float64), x, "euclidean")), 0.0)


def test_zero_vector_is_at_cosine_distance_one() -> None:
    d = compute_distance(np.zeros((1, 3)), np.array([[1.0, 2.0, 3.0]]), "cosine")
    assert d[0, 0] == pytest.approx(1.0)


def test_unknown_metric_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid metrics: cosine, correlation, euclidean"):
        compute_distance(np.zeros((1, 2)), np.zeros((1, 2)), "hamming")


@pytest.mark.parametrize(
    ("query", "gallery", "kwargs", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), {}, "dimensions differ"),
        (np.zeros(3), np.zeros((2, 3)), {}, "must be 2-D"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments(query: np.ndarray, gallery: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_distance(query, gallery, "euclidean", **kwargs)


@pytest.mark.parametrize("metric", METRICS)
def test_pair_scores_match_the_distance_matrix_diagonal(metric: str) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(11, 5)), rng.normal(size=(11, 5))
    scores = pair_scores(metric, a, b, p=2.5)
    diagonal = np.diag(cdist(a, b, metric=metric, **({"p": 2.5} if metric == "minkowski" else {})))
    expected = 1.0 - diagonal if higher_is_better(metric) else diagonal
    assert scores.shape == (11,)
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-12)


def test_higher_is_better() -> None:
    assert higher_is_better("cosine") and higher_is_better("correlation") and higher_is_better("softmax")
    assert not any(higher_is_better(m) for m in ("euclidean", "cityblock", "minkowski"))
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better("sqeuclidean")


def test_softmax_distance_is_one_minus_the_heads_pair_score() -> None:
    rng = np.random.default_rng(4)
    head = HeadWeights(weight=rng.normal(size=5).astype(np.float32) * 0.3, bias=0.7)
    query, gallery = rng.normal(size=(4, 5)), rng.normal(size=(6, 5))
    got = compute_distance(query, gallery, "softmax", head=head, chunk_size=3)
    rows, cols = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    expected = 1.0 - pair_scores("softmax", query[rows.ravel()], gallery[cols.ravel()], head).reshape(4, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(score_matrix("softmax", query, gallery, head), 1.0 - expected, atol=1e-12)


def test_pair_scores_rejects_unpaired_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        pair_scores("cosine", np.zeros((3, 2)), np.zeros((4, 2)))
