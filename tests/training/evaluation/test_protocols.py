from pathlib import Path

import numpy as np
import pytest

from training.data.datasets.base import ImageRecord
from training.evaluation.metrics import RankIds
from training.evaluation.protocols import (
    aggregate_runs,
    format_runs,
    single_shot_gallery,
    single_shot_indices,
    single_shot_runs,
)


def test_aggregate_runs_hand_computed() -> None:
    runs = [{"rank1": 0.5, "mAP": 0.2}, {"rank1": 0.7, "mAP": 0.4}, {"rank1": 0.6, "mAP": 0.3}]
    agg = aggregate_runs(runs)
    assert list(agg) == ["rank1", "mAP"]
    assert agg["rank1"] == pytest.approx({"mean": 0.6, "std": 0.1})  # sample std of 0.5, 0.7, 0.6
    assert agg["mAP"] == pytest.approx({"mean": 0.3, "std": 0.1})
    assert aggregate_runs(runs, ddof=0)["rank1"]["std"] == pytest.approx(np.sqrt(0.02 / 3))


def test_aggregate_single_run_has_zero_std() -> None:
    assert aggregate_runs([{"rank1": 0.8}]) == {"rank1": {"mean": 0.8, "std": 0.0}}


def test_aggregate_rejects_mismatched_or_empty_runs() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        aggregate_runs([])
    with pytest.raises(ValueError, match=r"run 1 .* missing \['mAP'\], extra \['rank5'\]"):
        aggregate_runs([{"rank1": 1.0, "mAP": 1.0}, {"rank1": 1.0, "rank5": 1.0}])


def test_format_runs() -> None:
    aggregate = {"rank1": {"mean": 0.701, "std": 0.012}, "n": {"mean": 3.0, "std": 0.0}}
    text = format_runs(aggregate, percent=["rank1"])
    assert text.splitlines()[0].split() == ["rank1", "70.1", "±", "1.2"]
    assert "3.0000 ± 0.0000" in text


def test_single_shot_indices_one_per_person_and_seeded() -> None:
    pids = np.array([3, 1, 3, 2, 1, 3, 2, 7])
    idx = single_shot_indices(pids, seed=0)
    assert sorted(pids[idx].tolist()) == [1, 2, 3, 7]
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, single_shot_indices(pids, seed=0))
    draws = {tuple(single_shot_indices(pids, seed=s)) for s in range(30)}
    assert len(draws) > 1  # different seeds pick different images
    picked_for_3 = {i for d in draws for i in d if pids[i] == 3}
    assert picked_for_3 == {0, 2, 5}  # every image of person 3 gets picked by some seed


def test_single_shot_gallery_records() -> None:
    records = [ImageRecord(Path(f"{p}_{c}_{k}.png"), p, c) for p in range(4) for c in (0, 1) for k in (0, 1)]
    gallery = single_shot_gallery(records, seed=5)
    assert [r.person_id for r in gallery] == [0, 1, 2, 3]
    assert all(r in records for r in gallery)


def test_single_shot_runs_subset_columns() -> None:
    # Two persons, two gallery images each; query 0 matches gallery image 1 (index 1) but not 0.
    distmat = np.array([[0.9, 0.1, 0.5, 0.6], [0.5, 0.6, 0.1, 0.9]])
    q_pids, g_pids = np.array([0, 1]), np.array([0, 0, 1, 1])
    q_cams, g_cams = np.zeros(2, dtype=int), np.ones(4, dtype=int)
    runs = single_shot_runs(distmat, RankIds(q_pids, g_pids, q_cams, g_cams), repetitions=20, seed=0)
    assert len(runs) == 20
    rank1 = np.array([r["rank1"] for r in runs])
    # Each draw keeps one image per person: rank-1 is 0.5, 1.0 or 0.0 depending on which images are kept.
    assert set(np.round(rank1, 3)) <= {0.0, 0.5, 1.0}
    assert len(set(np.round(rank1, 3))) > 1
    assert aggregate_runs(runs)["rank1"]["mean"] == pytest.approx(rank1.mean())


def test_single_shot_runs_rejects_bad_arguments() -> None:
    ids = RankIds(np.array([0]), np.array([0, 1]), np.array([0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="repetitions"):
        single_shot_runs(np.zeros((1, 2)), ids, repetitions=0)
    with pytest.raises(ValueError, match="gallery size"):
        single_shot_runs(np.zeros((1, 3)), ids)
