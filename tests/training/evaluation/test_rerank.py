import numpy as np
import pytest
from scipy.spatial.distance import cdist

from training.evaluation.metrics import evaluate_rank
from training.evaluation.rerank import re_ranking


def _dists(query: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return cdist(query, gallery), cdist(query, query), cdist(gallery, gallery)


def _dense_reference(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lam: float
) -> np.ndarray:
    """The paper's steps written out directly on dense matrices, with Python sets (slow, tiny inputs only)."""
    num_q = len(q_g)
    d = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2
    d = d / d.max(axis=1, keepdims=True)
    n = len(d)
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> list[int]:
        return [int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for c in r:
            half = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(half) & set(r)) > 2 / 3 * len(half):
                expanded |= set(half)
        idx = sorted(expanded)
        w = np.exp(-d[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    out = np.zeros((num_q, n - num_q))
    for i in range(num_q):
        for j in range(num_q, n):
            shared = np.minimum(v[i], v[j]).sum()
            out[i, j - num_q] = (1 - lam) * (1 - shared / (2 - shared)) + lam * d[i, j]
    return out


@pytest.mark.parametrize(("num_q", "num_g", "k1", "k2", "lam"), [(7, 30, 5, 3, 0.3), (10, 40, 20, 6, 0.3),
                                                                   (3, 5, 20, 6, 0.5), (12, 50, 4, 1, 0.0)])
def test_matches_dense_reference(num_q: int, num_g: int, k1: int, k2: int, lam: float) -> None:
    rng = np.random.default_rng(num_q)
    q_g, q_q, g_g = _dists(rng.normal(size=(num_q, 8)), rng.normal(size=(num_g, 8)))
    got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam, chunk_size=4)  # several ragged chunks
    np.testing.assert_allclose(got, _dense_reference(q_g, q_q, g_g, k1, k2, lam), atol=1e-5)


def test_k_reciprocal_neighbours_fix_a_hard_negative() -> None:
    """The query's nearest gallery image is another person's, whose own neighbours are all that person's
    images; the query's reciprocal neighbours are its own person's images, so re-ranking puts them first."""
    e = np.eye(20)
    query_a, query_c = np.zeros(20), 3 * e[19]
    hard_negative = 0.3 * e[0]  # person B, 0.3 from query_a
    person_b = [hard_negative + 0.25 * (0.8 * e[0] + 0.6 * e[k]) for k in range(1, 7)]  # 0.52 from query_a
    person_a = [0.5 * (-0.6 * e[0] + 0.8 * e[k]) for k in range(7, 13)]  # 0.5 from query_a, 0.57 apart
    person_c = [3 * e[19] + 0.2 * e[k] for k in range(13, 19)]
    gallery = np.array([*person_a, hard_negative, *person_b, *person_c])
    g_pids = np.array([0] * 6 + [1] * 7 + [2] * 6)
    query, q_pids = np.array([query_a, query_c]), np.array([0, 2])
    q_cams, g_cams = np.zeros(2, dtype=int), np.ones(len(gallery), dtype=int)
    q_g, q_q, g_g = _dists(query, gallery)

    plain = evaluate_rank(q_g, q_pids, g_pids, q_cams, g_cams)
    reranked_dist = re_ranking(q_g, q_q, g_g, k1=6, k2=3, lambda_value=0.3)
    reranked = evaluate_rank(reranked_dist, q_pids, g_pids, q_cams, g_cams)
    assert g_pids[np.argmin(q_g[0])] == 1  # the hard negative wins before re-ranking
    assert plain.rank(1) == 0.5
    assert reranked.rank(1) == 1.0
    assert reranked.mean_ap > plain.mean_ap + 0.1
    assert reranked.mean_ap == pytest.approx(1.0)


def test_raises_map_on_noisy_identity_clusters() -> None:
    rng = np.random.default_rng(4)
    num_ids, per_id = 12, 8
    centres = rng.normal(size=(num_ids, 16))
    g_pids, q_pids = np.repeat(np.arange(num_ids), per_id), np.arange(num_ids)
    gallery = centres[g_pids] + 0.6 * rng.normal(size=(len(g_pids), 16))
    query = centres[q_pids] + 0.6 * rng.normal(size=(num_ids, 16))
    q_cams, g_cams = np.zeros(num_ids, dtype=int), np.ones(len(g_pids), dtype=int)
    q_g, q_q, g_g = _dists(query, gallery)
    plain = evaluate_rank(q_g, q_pids, g_pids, q_cams, g_cams).mean_ap
    reranked = evaluate_rank(re_ranking(q_g, q_q, g_g, k1=6, k2=3), q_pids, g_pids, q_cams, g_cams).mean_ap
    assert reranked > plain + 0.02


def test_output_shape_dtype_and_range() -> None:
    rng = np.random.default_rng(5)
    q_g, q_q, g_g = _dists(rng.normal(size=(9, 4)), rng.normal(size=(31, 4)))
    out = re_ranking(q_g, q_q, g_g)
    assert out.shape == (9, 31)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6  # a mix of two distances that lie in [0, 1]


def test_lambda_one_keeps_the_original_order() -> None:
    rng = np.random.default_rng(6)
    q_g, q_q, g_g = _dists(rng.normal(size=(5, 4)), rng.normal(size=(20, 4)))
    out = re_ranking(q_g, q_q, g_g, lambda_value=1.0)
    np.testing.assert_array_equal(np.argsort(out, axis=1), np.argsort(q_g, axis=1))


def test_permuting_the_gallery_permutes_the_result() -> None:
    rng = np.random.default_rng(7)
    query, gallery = rng.normal(size=(6, 5)), rng.normal(size=(25, 5))
    perm = rng.permutation(25)
    out = re_ranking(*_dists(query, gallery), k1=5, k2=3)
    permuted = re_ranking(*_dists(query, gallery[perm]), k1=5, k2=3)
    np.testing.assert_allclose(permuted, out[:, perm], atol=1e-6)


def test_duplicate_images_stay_finite() -> None:
    gallery = np.zeros((6, 3))  # every distance is zero
    q_g, q_q, g_g = _dists(np.zeros((2, 3)), gallery)
    assert np.all(np.isfinite(re_ranking(q_g, q_q, g_g, k1=3, k2=2)))


@pytest.mark.parametrize(
    ("shapes", "kwargs", "message"),
    [
        (((2, 3), (2, 2), (4, 4)), {}, "g_g_dist must be 3"),
        (((2, 3), (3, 3), (3, 3)), {}, "q_q_dist must be 2"),
        (((2, 3), (2, 2), (3, 3)), {"k1": 0}, "k1 and k2"),
        (((2, 3), (2, 2), (3, 3)), {"lambda_value": 1.5}, "lambda_value"),
    ],
)
def test_bad_arguments(shapes: tuple, kwargs: dict, message: str) -> None:
    q_g, q_q, g_g = (np.ones(s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        re_ranking(q_g, q_q, g_g, **kwargs)


def test_rejects_non_finite_distances() -> None:
    q_g = np.array([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="q_g_dist contains NaN"):
        re_ranking(q_g, np.zeros((1, 1)), np.zeros((2, 2)))
