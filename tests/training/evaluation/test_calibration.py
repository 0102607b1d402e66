from collections.abc import Callable

import numpy as np
import pytest

from service.contract.manifest import ScoringMode
from training.evaluation.calibration import (
    calibrate,
    equal_error_rate,
    make_pairs,
    roc_curve,
    threshold_at_fmr,
    tpr_at_fmr,
)

# Sorted by similarity: 0.9 S, 0.8 S, 0.75 D, 0.7 S, 0.5 D, 0.4 S, 0.3 D, 0.2 D, 0.1 D.
SAME = np.array([0.9, 0.8, 0.7, 0.4])
DIFF = np.array([0.75, 0.5, 0.3, 0.2, 0.1])


def _rates(same: np.ndarray, diff: np.ndarray, threshold: float, hib: bool) -> tuple[float, float]:
    """The decision rule, applied directly: (TPR, FMR)."""
    if hib:
        return float(np.mean(same >= threshold)), float(np.mean(diff >= threshold))
    return float(np.mean(same <= threshold)), float(np.mean(diff <= threshold))


def test_roc_hand_computed() -> None:
    roc = roc_curve(SAME, DIFF, higher_is_better=True)
    np.testing.assert_allclose(roc.thresholds, [np.inf, 0.9, 0.8, 0.75, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(roc.tpr, [0, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 0, 0.2, 0.2, 0.4, 0.4, 0.6, 0.8, 1.0])


def test_roc_every_point_follows_the_decision_rule() -> None:
    rng = np.random.default_rng(0)
    same, diff = np.round(rng.normal(1, 1, 50), 1), np.round(rng.normal(0, 1, 80), 1)  # rounding makes ties
    for hib, sign in ((True, 1.0), (False, -1.0)):
        roc = roc_curve(sign * same, sign * diff, higher_is_better=hib)
        for t, tpr, fpr in zip(roc.thresholds[1:], roc.tpr[1:], roc.fpr[1:], strict=True):
            assert _rates(sign * same, sign * diff, t, hib) == pytest.approx((tpr, fpr))


@pytest.mark.parametrize(
    ("target", "threshold", "tpr", "fmr"), [(0.1, 0.8, 0.5, 0.0), (0.2, 0.7, 0.75, 0.2), (0.5, 0.4, 1.0, 0.4)]
)
def test_threshold_at_fmr_hand_computed(target: float, threshold: float, tpr: float, fmr: float) -> None:
    sim = threshold_at_fmr(SAME, DIFF, target, higher_is_better=True)
    assert (sim.threshold, sim.tpr, sim.fmr, sim.target_fmr) == pytest.approx((threshold, tpr, fmr, target))
    # The same data as distances (1 - similarity): the same operating point, threshold 1 - t.
    dist = threshold_at_fmr(1 - SAME, 1 - DIFF, target, higher_is_better=False)
    assert (dist.threshold, dist.tpr, dist.fmr) == pytest.approx((1 - threshold, tpr, fmr))


def test_target_below_one_negative_accepts_nothing_with_a_finite_threshold() -> None:
    same, diff = np.array([0.5, 0.5]), np.array([0.5, 0.2])  # a positive tied with the top negative
    t = threshold_at_fmr(same, diff, 0.1, higher_is_better=True)
    assert np.isfinite(t.threshold) and t.threshold > 0.5
    assert (t.tpr, t.fmr) == (0.0, 0.0)
    assert _rates(same, diff, t.threshold, True) == (0.0, 0.0)
    d = threshold_at_fmr(-same, -diff, 0.1, higher_is_better=False)
    assert d.threshold < -0.5 and _rates(-same, -diff, d.threshold, False) == (0.0, 0.0)


def test_equal_error_rate_hand_computed() -> None:
    eer = equal_error_rate(SAME, DIFF, higher_is_better=True)
    assert (eer.threshold, eer.tpr, eer.fmr, eer.eer) == pytest.approx((0.7, 0.75, 0.2, 0.225))
    assert equal_error_rate(1 - SAME, 1 - DIFF, higher_is_better=False).eer == pytest.approx(0.225)


def test_perfect_separation() -> None:
    eer = equal_error_rate(np.array([2.0, 3.0]), np.array([0.0, 1.0]), higher_is_better=True)
    assert (eer.threshold, eer.eer) == (2.0, 0.0)
    assert tpr_at_fmr(np.array([2.0, 3.0]), np.array([0.0, 1.0]), True) == {
        "tpr@fmr_1e-02": 1.0, "tpr@fmr_1e-03": 1.0, "tpr@fmr_1e-04": 1.0,
    }


def test_calibrated_fmr_holds_on_held_out_pairs() -> None:
    """200k negatives ~ N(0, 1), positives ~ N(3, 1): calibrate at 1e-3 on half, check on the other half."""
    rng = np.random.default_rng(1234)
    diff, same = rng.normal(0.0, 1.0, 200_000), rng.normal(3.0, 1.0, 20_000)
    t = threshold_at_fmr(same[:10_000], diff[:100_000], 1e-3, higher_is_better=True)
    assert t.fmr <= 1e-3
    assert t.threshold == pytest.approx(3.09, abs=0.1)  # the N(0, 1) upper 1e-3 quantile is 3.090
    held_out_tpr, held_out_fmr = _rates(same[10_000:], diff[100_000:], t.threshold, True)
    assert 0.5e-3 <= held_out_fmr <= 2e-3
    assert held_out_tpr == pytest.approx(0.464, abs=0.03)  # P(N(3, 1) >= 3.09)


def test_calibrate_returns_a_manifest_scoring_mode() -> None:
    mode = calibrate(SAME, DIFF, "cosine", target_fmr=0.2)
    assert isinstance(mode, ScoringMode)
    assert mode.higher_is_better is True
    assert mode.default_threshold == "fmr_2e-01"
    assert set(mode.thresholds) == {"fmr_2e-01", "eer"}
    assert mode.default_value() == pytest.approx(0.7)
    assert mode.thresholds["eer"].target_fmr is None
    assert ScoringMode.model_validate_json(mode.model_dump_json()) == mode


def test_calibrate_default_key_and_distance_direction() -> None:
    mode = calibrate(1 - SAME, 1 - DIFF, "euclidean")
    assert mode.higher_is_better is False
    assert mode.default_threshold == "fmr_1e-03"
    assert mode.thresholds["fmr_1e-03"].threshold == pytest.approx(0.2)  # accepts 0.1, 0.2; fmr 0
    assert calibrate(SAME, DIFF, "softmax").higher_is_better is True


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: calibrate(SAME, DIFF, "hamming"), "unknown metric .hamming.; valid metrics: cosine"),
        (lambda: threshold_at_fmr(SAME, DIFF, 0.0, True), r"in \(0, 1\)"),
        (lambda: threshold_at_fmr(np.array([]), DIFF, 0.1, True), "same_scores must be a non-empty"),
        (lambda: roc_curve(SAME, np.array([np.nan]), True), "diff_scores contains NaN"),
        (lambda: make_pairs(np.zeros(3), np.zeros(2), max_negatives=1, seed=0), "differ in length"),
        (lambda: make_pairs(np.zeros(3), np.zeros(3), max_negatives=-1, seed=0), "max_negatives"),
    ],
)
def test_bad_arguments(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_make_pairs_small_hand_computed() -> None:
    pids = np.array([0, 0, 0, 1, 1, 2])
    cams = np.array([0, 1, 1, 0, 0, 1])
    pairs = make_pairs(pids, cams, max_negatives=100, seed=0)
    np.testing.assert_array_equal(pairs.positive, [[0, 1], [0, 2]])  # (1, 2) and (3, 4) share a camera
    assert len(pairs.negative) == 15 - 4  # all pairs minus the four same-person ones
    assert np.all(pids[pairs.negative[:, 0]] != pids[pairs.negative[:, 1]])
    sampled = make_pairs(pids, cams, max_negatives=5, seed=0)
    assert len(sampled.negative) == 5
    assert {tuple(p) for p in sampled.negative} <= {tuple(p) for p in pairs.negative}
    np.testing.assert_array_equal(sampled.negative, make_pairs(pids, cams, max_negatives=5, seed=0).negative)


def test_make_pairs_rejection_sampling_on_a_large_set() -> None:
    rng = np.random.default_rng(0)
    pids, cams = rng.integers(0, 100, 2100), rng.integers(0, 6, 2100)  # 2.2M pairs: sampled, not enumerated
    pairs = make_pairs(pids, cams, max_negatives=3000, seed=1)
    neg = pairs.negative
    assert neg.shape == (3000, 2)
    assert np.all(neg[:, 0] < neg[:, 1])
    assert len(np.unique(neg[:, 0] * 2100 + neg[:, 1])) == 3000
    assert np.all(pids[neg[:, 0]] != pids[neg[:, 1]])
    pos = pairs.positive
    assert np.all(pids[pos[:, 0]] == pids[pos[:, 1]]) and np.all(cams[pos[:, 0]] != cams[pos[:, 1]])
    same = pids[:, None] == pids[None, :]
    cross = cams[:, None] != cams[None, :]
    assert len(pos) == int(np.triu(same & cross, k=1).sum())
