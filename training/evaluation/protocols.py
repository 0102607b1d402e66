"""Single-shot evaluation protocols (CUHK01, CUHK03-classic, VIPeR): one gallery image per person, repeated
random draws / splits, results reported as mean ± std over the repetitions.

* :func:`single_shot_indices` / :func:`single_shot_gallery` pick one gallery image per person (seeded);
* :func:`single_shot_runs` evaluates a full query × gallery distance matrix on several such single-shot
  galleries (the columns are subset, nothing is recomputed);
* :func:`aggregate_runs` turns a list of metric dicts (one per repetition or per train/test split) into
  ``{name: {"mean", "std"}}``; :func:`format_runs` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from training.checks import at_least
from training.evaluation.metrics import RankIds, evaluate_rank

if TYPE_CHECKING:  # only for annotations: keeps this module free of the dataset loaders' imports
    from training.data.datasets.base import ImageRecord


def single_shot_indices(person_ids: np.ndarray, seed: int) -> np.ndarray:
    """Indices of one image per person, drawn uniformly at random; sorted ascending (original order kept).

    Args:
        person_ids: Person id of every gallery image.
        seed: Seed of the draw.
    """
    pids = np.asarray(person_ids).ravel()
    rng = np.random.default_rng(seed)
    # A random priority per image; the image with the smallest priority of its person wins.
    priority = rng.random(pids.size)
    order = np.lexsort((priority, pids))
    first = np.r_[True, pids[order][1:] != pids[order][:-1]] if pids.size else np.zeros(0, dtype=bool)
    return np.sort(order[first])


def single_shot_gallery(records: Sequence[ImageRecord], seed: int) -> list[ImageRecord]:
    """One randomly chosen gallery record per person (in the records' original order)."""
    idx = single_shot_indices(np.array([r.person_id for r in records], dtype=np.int64), seed)
    return [records[i] for i in idx]


def single_shot_runs(
    distmat: np.ndarray, ids: RankIds, *, repetitions: int = 10, seed: int = 0, max_rank: int = 50
) -> list[dict[str, float]]:
    """Evaluate ``repetitions`` single-shot galleries drawn from the full gallery.

    Repetition r uses :func:`single_shot_indices` with seed ``seed + r`` and
    :func:`~training.evaluation.metrics.evaluate_rank` on those columns of ``distmat``.

    Args:
        distmat: Q × G distances (smaller = more similar) against the full (multi-shot) gallery.
        ids: Person and camera ids of the Q queries and the G gallery images.
        repetitions: Number of gallery draws (>= 1).
        seed: Seed of the first draw.
        max_rank: CMC depth.

    Returns:
        One ``RankResult.as_dict()`` per repetition; pass it to :func:`aggregate_runs`.

    Raises:
        ValueError: ``repetitions`` < 1, or the shapes / ids that :func:`evaluate_rank` rejects.
    """
    at_least("repetitions", repetitions, 1)
    distmat = np.asarray(distmat)
    g_pids = np.asarray(ids.gallery_pids)
    if distmat.ndim != 2 or distmat.shape[1] != g_pids.size:
        raise ValueError(f"distmat must be Q × {g_pids.size} (gallery size), got shape {distmat.shape}")
    runs = []
    for r in range(repetitions):
        cols = single_shot_indices(g_pids, seed + r)
        result = evaluate_rank(distmat[:, cols], *ids.gallery_columns(cols), max_rank=max_rank)
        runs.append(result.as_dict())
    return runs


def aggregate_runs(runs: Sequence[dict[str, float]], *, ddof: int = 1) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of every metric over repetitions.

    Args:
        runs: One metric dict per repetition, all with the same keys.
        ddof: Delta degrees of freedom of the std (1 = sample std, as usually reported over 10 trials).
            A single run gets std 0.

    Returns:
        ``{name: {"mean": m, "std": s}}`` in the key order of the first run.

    Raises:
        ValueError: No runs, runs with different keys, or non-numeric values.
    """
    if not runs:
        raise ValueError("aggregate_runs needs at least one run")
    keys = list(runs[0])
    for i, run in enumerate(runs):
        if set(run) != set(keys):
            missing, extra = sorted(set(keys) - set(run)), sorted(set(run) - set(keys))
            raise ValueError(f"run {i} has different metrics from run 0: missing {missing}, extra {extra}")
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        values = np.array([float(run[key]) for run in runs], dtype=np.float64)
        std = float(values.std(ddof=ddof)) if len(values) > ddof else 0.0
        out[key] = {"mean": float(values.mean()), "std": std}
    return out


def format_runs(aggregate: dict[str, dict[str, float]], *, percent: Sequence[str] = ()) -> str:
    """One line ``name mean ± std`` per metric; names in ``percent`` are shown ×100 with one decimal."""
    lines = []
    for key, stats in aggregate.items():
        if key in percent:
            lines.append(f"{key:<20} {100 * stats['mean']:6.1f} ± {100 * stats['std']:.1f}")
        else:
            lines.append(f"{key:<20} {stats['mean']:.4f} ± {stats['std']:.4f}")
    return "\n".join(lines)
