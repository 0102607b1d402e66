"""Ranking metrics: hand-computed toy cases and a slow obvious reference on random data."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.metrics import evaluate_rank


def _reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    """The obvious, slow implementation: one query at a time, plain Python lists."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        ranked = sorted(range(distmat.shape[1]), key=lambda j: (distmat[i, j], j))
        ranked = [j for j in ranked if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        good = [g_pids[j] == q_pids[i] for j in ranked]
        if not any(good):
            continue
        first = good.index(True)
        cmcs.append([1.0 if k >= first else 0.0 for k in range(max_rank)])
        hits, precisions = 0, []
        for pos, g in enumerate(good):
            if g:
                hits += 1
                precisions.append(hits / (pos + 1))
        aps.append(sum(precisions) / len(precisions))
        last = max(pos for pos, g in enumerate(good) if g)
        inps.append(hits / (last + 1))
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def test_known_average_precision():
    # One query (person 1, camera 0). Gallery in distance order: wrong, right, wrong, right.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4]])
    g_pids = np.array([2, 1, 3, 1])
    g_cams = np.array([1, 1, 1, 1])
    r = evaluate_rank(distmat, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=4)
    # AP = (1/2 + 2/4) / 2 = 0.5 ; INP = 2 / 4 = 0.5 ; first hit at rank 2.
    assert r.mean_ap == pytest.approx(0.5)
    assert r.mean_inp == pytest.approx(0.5)
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1])
    assert r.rank(1) == 0.0 and r.rank(2) == 1.0


def test_same_camera_same_person_removed_and_unmatched_query_skipped():
    # Query 0 (pid 1, cam 0): its nearest gallery item is pid 1 from cam 0 -> removed, so the
    # next correct one (cam 1) is at rank 2 after removal.  Query 1 (pid 9) has no match: skipped.
    distmat = np.array([[0.0, 0.5, 0.6], [0.1, 0.2, 0.3]])
    g_pids = np.array([1, 4, 1])
    g_cams = np.array([0, 1, 1])
    r = evaluate_rank(distmat, np.array([1, 9]), g_pids, np.array([0, 0]), g_cams, max_rank=3)
    assert r.num_valid_queries == 1 and r.num_skipped_queries == 1
    np.testing.assert_allclose(r.cmc, [0, 1, 1])
    assert r.mean_ap == pytest.approx(0.5)


def test_perfect_ranking_scores_one():
    distmat = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    r = evaluate_rank(distmat, np.array([1, 2]), np.array([1, 2, 3]), np.array([0, 0]), np.array([1, 1, 1]))
    assert r.rank(1) == 1.0 and r.mean_ap == 1.0 and r.mean_inp == 1.0
    assert r.as_dict()["rank20"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    num_q, num_g, max_rank = 30, 80, 20
    q_pids = rng.integers(0, 12, num_q)
    g_pids = rng.integers(0, 12, num_g)
    q_cams = rng.integers(0, 3, num_q)
    g_cams = rng.integers(0, 3, num_g)
    distmat = rng.random((num_q, num_g))
    distmat[0, :5] = 0.25  # ties are broken by gallery order in both implementations
    r = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    cmc, m_ap, m_inp, valid = _reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    assert r.num_valid_queries == valid
    np.testing.assert_allclose(r.cmc, cmc)
    assert r.mean_ap == pytest.approx(m_ap)
    assert r.mean_inp == pytest.approx(m_inp)


def test_bad_shapes_and_no_match_raise():
    with pytest.raises(ValueError, match="query ids"):
        evaluate_rank(np.zeros((2, 3)), np.array([1]), np.zeros(3), np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="no query has a correct match"):
        evaluate_rank(np.zeros((1, 2)), np.array([5]), np.array([1, 2]), np.array([0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.full((1, 1), np.nan), np.array([1]), np.array([1]), np.array([0]), np.array([1]))
