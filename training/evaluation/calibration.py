"""Verification thresholds from held-out pairs: ROC, threshold at a target false-match rate, equal error rate.

Decision rule (the one the service applies): a pair is declared the *same person* iff
``score >= threshold`` when ``higher_is_better`` (similarities: cosine, correlation, softmax) and iff
``score <= threshold`` otherwise (distances: euclidean …). Rates are measured on the calibration pairs:
TPR (true-match rate) = fraction of same-person pairs accepted, FMR / FPR (false-match rate) = fraction
of different-person pairs accepted.

Internally every score is turned into a similarity (distances are negated), so one code path serves both
directions; thresholds are reported back in the caller's units. Thresholds are always actual scores of the
calibration set (or, when nothing can be accepted at the target, the smallest value just beyond the most
similar negative), so re-applying the rule to the same pairs reproduces the reported rates exactly.

:func:`make_pairs` builds the pairs: every same-person pair across different cameras plus a seeded sample of
different-person pairs; score them with :func:`service.contract.scoring.pair_scores`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from service.contract.manifest import ScoringMode, Threshold
from service.contract.scoring import higher_is_better
from training.checks import at_least

#: False-match rates at which :func:`tpr_at_fmr` reports the true-match rate by default.
DEFAULT_FMR_TARGETS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)


class RocCurve(NamedTuple):
    """Receiver operating characteristic: one point per distinct score, most strict first.

    ``thresholds[0]`` accepts nothing (+inf for similarities, -inf for distances); ``fpr`` and ``tpr`` are
    non-decreasing.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


class EqualErrorRate(NamedTuple):
    """The operating point where the false-match rate is closest to the false-non-match rate (1 − TPR)."""

    threshold: float
    tpr: float
    fmr: float
    eer: float


class PairIndices(NamedTuple):
    """Index pairs (i, j), i < j, into the person / camera id arrays given to :func:`make_pairs`."""

    positive: np.ndarray  # P × 2 int64, same person, different cameras
    negative: np.ndarray  # M × 2 int64, different persons


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of scores, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite scores")
    return arr


def _check_target(target_fmr: float) -> None:
    if not 0.0 < target_fmr < 1.0:
        raise ValueError(f"target false-match rate must be in (0, 1), got {target_fmr}")


def _oriented_roc(same: np.ndarray, diff: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of similarity scores (accept iff s >= t), with a leading accept-nothing point at +inf."""
    scores = np.concatenate([same, diff])
    is_same = np.concatenate([np.ones(len(same), dtype=bool), np.zeros(len(diff), dtype=bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_same = scores[order], is_same[order]
    # Last position of every run of equal scores: accepting with s >= t takes the whole run.
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tp = np.cumsum(is_same)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / len(same)]
    fpr = np.r_[0.0, fp / len(diff)]
    return fpr, tpr, np.r_[np.inf, scores[last]]


def roc_curve(same_scores: np.ndarray, diff_scores: np.ndarray, higher_is_better: bool) -> RocCurve:
    """ROC of a verification score over same-person and different-person pairs.

    Args:
        same_scores: Scores of same-person pairs.
        diff_scores: Scores of different-person pairs.
        higher_is_better: True for similarities (accept iff score >= threshold), False for distances
            (accept iff score <= threshold).

    Raises:
        ValueError: Empty or non-finite scores.
    """
    sign = 1.0 if higher_is_better else -1.0
    same = sign * _scores(same_scores, "same_scores")
    fpr, tpr, thr = _oriented_roc(same, sign * _scores(diff_scores, "diff_scores"))
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=sign * thr)


def threshold_at_fmr(
    same_scores: np.ndarray, diff_scores: np.ndarray, target_fmr: float, higher_is_better: bool
) -> Threshold:
    """The threshold with the highest TPR among those whose observed FMR is at most ``target_fmr``.

    With M different-person pairs the observed FMR moves in steps of 1/M: a target below 1/M is met only by
    accepting no negative at all, and the estimate is then unreliable (use more negatives).

    Args:
        same_scores: Scores of same-person pairs.
        diff_scores: Scores of different-person pairs.
        target_fmr: Allowed false-match rate in (0, 1).
        higher_is_better: Direction of the score (see the module docstring for the decision rule).

    Returns:
        The manifest's :class:`~service.contract.manifest.Threshold` (threshold, tpr, fmr, target_fmr), in the
        caller's score units.

    Raises:
        ValueError: Empty or non-finite scores, or a target outside (0, 1).
    """
    _check_target(target_fmr)
    sign = 1.0 if higher_is_better else -1.0
    same = sign * _scores(same_scores, "same_scores")
    diff = sign * _scores(diff_scores, "diff_scores")
    fpr, tpr, thr = _oriented_roc(same, diff)
    ok = np.flatnonzero(fpr <= target_fmr)  # fpr is non-decreasing, so this is a prefix
    best = ok[-1]
    if best == 0:
        # Nothing can be accepted at this target: stand just beyond the most similar negative.
        threshold = float(np.nextafter(diff.max(), np.inf))
        return Threshold(threshold=sign * threshold, tpr=0.0, fmr=0.0, target_fmr=target_fmr)
    return Threshold(
        threshold=float(sign * thr[best]), tpr=float(tpr[best]), fmr=float(fpr[best]), target_fmr=target_fmr
    )


def equal_error_rate(
    same_scores: np.ndarray, diff_scores: np.ndarray, higher_is_better: bool
) -> EqualErrorRate:
    """The ROC point where FMR and the false-non-match rate (1 − TPR) are closest; EER = their mean there.

    Raises:
        ValueError: Empty or non-finite scores.
    """
    roc = roc_curve(same_scores, diff_scores, higher_is_better)
    fnmr = 1.0 - roc.tpr
    gap = np.abs(roc.fpr - fnmr)
    i = int(np.flatnonzero(gap == gap.min())[-1])  # ties: the more permissive point
    return EqualErrorRate(
        threshold=float(roc.thresholds[i]),
        tpr=float(roc.tpr[i]),
        fmr=float(roc.fpr[i]),
        eer=float((roc.fpr[i] + fnmr[i]) / 2.0),
    )


def tpr_at_fmr(
    same_scores: np.ndarray,
    diff_scores: np.ndarray,
    higher_is_better: bool,
    targets: tuple[float, ...] = DEFAULT_FMR_TARGETS,
) -> dict[str, float]:
    """TPR at each target FMR, keyed ``"tpr@fmr_1e-02"`` etc. (see :func:`threshold_at_fmr`)."""
    return {
        f"tpr@fmr_{t:.0e}": threshold_at_fmr(same_scores, diff_scores, t, higher_is_better).tpr
        for t in targets
    }


def calibrate(
    same_scores: np.ndarray, diff_scores: np.ndarray, metric: str, *, target_fmr: float = 1e-3
) -> ScoringMode:
    """Calibrate a scoring mode for the manifest: a threshold at ``target_fmr`` (the default) and the EER one.

    Args:
        same_scores: Scores of same-person pairs (from :func:`make_pairs` + ``pair_scores``).
        diff_scores: Scores of different-person pairs.
        metric: Scoring name (``cosine``, ``euclidean``, ``softmax`` …); fixes ``higher_is_better``.
        target_fmr: False-match rate of the default threshold, in (0, 1).

    Returns:
        A :class:`~service.contract.manifest.ScoringMode` with thresholds ``f"fmr_{target_fmr:.0e}"`` (e.g.
        ``"fmr_1e-03"``, the default) and ``"eer"``.

    Raises:
        ValueError: Unknown metric, empty / non-finite scores, or a target outside (0, 1).
    """
    hib = higher_is_better(metric)
    at_target = threshold_at_fmr(same_scores, diff_scores, target_fmr, hib)
    eer = equal_error_rate(same_scores, diff_scores, hib)
    key = f"fmr_{target_fmr:.0e}"
    thresholds = {
        key: at_target,
        "eer": Threshold(threshold=eer.threshold, tpr=eer.tpr, fmr=eer.fmr, target_fmr=None),
    }
    return ScoringMode(higher_is_better=hib, thresholds=thresholds, default_threshold=key)


def make_pairs(
    person_ids: np.ndarray, camera_ids: np.ndarray, *, max_negatives: int, seed: int
) -> PairIndices:
    """Calibration pairs: all same-person pairs across different cameras, plus sampled different-person ones.

    Negatives are drawn uniformly without replacement from all different-person pairs (any cameras); when
    there are at most ``max_negatives`` of them, all are returned. Both arrays are sorted by (i, j).

    Args:
        person_ids: N person ids.
        camera_ids: N camera ids.
        max_negatives: Most different-person pairs to return (>= 0).
        seed: Seed of the negative sampling.

    Raises:
        ValueError: Mismatched lengths or a negative ``max_negatives``.
    """
    pids, cams = np.asarray(person_ids).ravel(), np.asarray(camera_ids).ravel()
    if pids.shape != cams.shape:
        raise ValueError(f"person_ids and camera_ids differ in length: {pids.size} vs {cams.size}")
    at_least("max_negatives", max_negatives, 0)
    n = pids.size
    positives = []
    for pid in np.unique(pids):
        idx = np.flatnonzero(pids == pid)
        a, b = np.triu_indices(len(idx), k=1)
        cross = cams[idx[a]] != cams[idx[b]]
        positives.append(np.stack([idx[a][cross], idx[b][cross]], axis=1))
    positive = np.concatenate(positives) if positives else np.empty((0, 2), dtype=np.int64)
    positive = positive[np.lexsort((positive[:, 1], positive[:, 0]))].astype(np.int64)

    _, counts = np.unique(pids, return_counts=True)
    num_negative = n * (n - 1) // 2 - int((counts * (counts - 1) // 2).sum())
    wanted = min(max_negatives, num_negative)
    rng = np.random.default_rng(seed)
    if n * (n - 1) // 2 <= max(4 * wanted, 2_000_000):
        # Small enough to enumerate: take all negatives, or a uniform subset of them.
        a, b = np.triu_indices(n, k=1)
        keep = pids[a] != pids[b]
        codes = a[keep].astype(np.int64) * n + b[keep]
        if len(codes) > wanted:
            codes = rng.choice(codes, size=wanted, replace=False)
    else:
        # Rejection sampling of (i, j) codes until enough distinct different-person pairs are drawn.
        codes = np.empty(0, dtype=np.int64)
        while len(codes) < wanted:
            i = rng.integers(0, n, size=2 * wanted)
            j = rng.integers(0, n, size=2 * wanted)
            lo, hi = np.minimum(i, j), np.maximum(i, j)
            ok = pids[lo] != pids[hi]
            codes = np.union1d(codes, lo[ok].astype(np.int64) * n + hi[ok])
        codes = rng.choice(codes, size=wanted, replace=False)
    codes = np.sort(codes)
    negative = np.stack([codes // n, codes % n], axis=1).astype(np.int64)
    return PairIndices(positive=positive, negative=negative)
