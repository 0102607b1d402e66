"""Tests for the P×K identity sampler, the pair sampler and the positive:negative ratio schedule."""

from __future__ import annotations

from collections import Counter

import pytest

from training.data.samplers import PairSampler, PKSampler, RatioSchedule

# 10 identities: ids 0–5 have 6 images, ids 6–9 have 2 images (fewer than K = 4)
PERSON_IDS = [pid for pid in range(6) for _ in range(6)] + [pid for pid in range(6, 10) for _ in range(2)]


def test_pk_batches_have_p_distinct_ids_times_k_images() -> None:
    sampler = PKSampler(PERSON_IDS, p=3, k=4, seed=0)
    batches = sampler.batches()
    assert batches and len(sampler) == len(batches) * 12 == len(list(sampler))
    for batch in batches:
        pids = [PERSON_IDS[i] for i in batch]
        counts = Counter(pids)
        assert len(counts) == 3 and set(counts.values()) == {4}
        # images of one identity come as a contiguous chunk of K
        assert all(len(set(pids[j : j + 4])) == 1 for j in range(0, 12, 4))


def test_pk_identities_with_few_images_sampled_with_replacement() -> None:
    sampler = PKSampler(PERSON_IDS, p=2, k=4, seed=3)
    seen_small = False
    for batch in sampler.batches():
        for j in range(0, len(batch), 4):
            chunk = batch[j : j + 4]
            pid = PERSON_IDS[chunk[0]]
            if pid >= 6:
                seen_small = True
                assert len(set(chunk)) <= 2  # only 2 distinct images exist
                assert set(chunk) <= {i for i, p in enumerate(PERSON_IDS) if p == pid}
            else:
                assert len(set(chunk)) == 4  # enough images: no repeats within a chunk
    assert seen_small


def test_pk_epoch_uses_each_chunk_once() -> None:
    # 6 ids × 6 images → 1 chunk of 4 each (2 left over), 4 small ids → 1 chunk each:
    # 10 chunks, P = 2 → 5 batches
    sampler = PKSampler(PERSON_IDS, p=2, k=4, seed=0)
    batches = sampler.batches()
    assert len(batches) == 5
    chunk_ids = Counter(PERSON_IDS[b[j]] for b in batches for j in range(0, 8, 4))
    assert chunk_ids == Counter(range(10))


def test_pk_determinism_and_set_epoch() -> None:
    a = PKSampler(PERSON_IDS, p=2, k=2, seed=7)
    b = PKSampler(PERSON_IDS, p=2, k=2, seed=7)
    assert list(a) == list(b)
    epoch0 = list(a)
    a.set_epoch(1)
    assert list(a) != epoch0
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(PKSampler(PERSON_IDS, p=2, k=2, seed=8)) != epoch0


@pytest.mark.parametrize("world_size", [2, 3])
def test_pk_ddp_shards_disjoint_and_covering(world_size: int) -> None:
    full = PKSampler(PERSON_IDS, p=2, k=2, seed=1).batches()
    shards = [
        PKSampler(PERSON_IDS, p=2, k=2, seed=1, rank=r, world_size=world_size).batches()
        for r in range(world_size)
    ]
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    flat = [tuple(b) for s in shards for b in s]
    assert len(flat) == len(set(flat)) == len(full) - len(full) % world_size
    assert set(flat) <= {tuple(b) for b in full}
    if len(full) % world_size == 0:
        assert set(flat) == {tuple(b) for b in full}


def test_pk_ddp_world_size_dividing_covers_everything() -> None:
    full = PKSampler(PERSON_IDS, p=2, k=4, seed=0).batches()  # 5 batches
    shards = [PKSampler(PERSON_IDS, p=2, k=4, seed=0, rank=r, world_size=5).batches() for r in range(5)]
    assert sorted(tuple(b) for s in shards for b in s) == sorted(tuple(b) for b in full)


def test_pk_argument_validation() -> None:
    with pytest.raises(ValueError, match=r"p .* must be >= 2, got 1"):
        PKSampler(PERSON_IDS, p=1, k=4)
    with pytest.raises(ValueError, match=r"k .* must be >= 1, got 0"):
        PKSampler(PERSON_IDS, p=2, k=0)
    with pytest.raises(ValueError, match="only 10 identities"):
        PKSampler(PERSON_IDS, p=11, k=1)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        PKSampler(PERSON_IDS, p=2, k=4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size=6"):
        PKSampler(PERSON_IDS, p=2, k=4, world_size=6)
    with pytest.raises(ValueError, match="empty"):
        PKSampler([], p=2, k=4)


def test_ratio_schedule_values_and_cap() -> None:
    schedule = RatioSchedule(start=1.0, growth=1.01, cap=3.0)
    assert schedule.ratio(0) == 1.0
    assert schedule.ratio(10) == pytest.approx(1.01**10)
    assert schedule.ratio(110) == pytest.approx(1.01**110)  # 2.99, still below the cap
    assert schedule.ratio(111) == 3.0 and schedule.ratio(10_000) == 3.0
    assert schedule.positive_fraction(0) == 0.5
    shrinking = RatioSchedule(start=2.0, growth=0.5, cap=0.5)
    assert [shrinking.ratio(e) for e in range(4)] == [2.0, 1.0, 0.5, 0.5]
    assert RatioSchedule(start=1.5).ratio(50) == 1.5
    with pytest.raises(ValueError, match="wrong side"):
        RatioSchedule(start=2.0, growth=1.1, cap=1.0)
    with pytest.raises(ValueError, match="start ratio must be > 0"):
        RatioSchedule(start=0.0)


def test_pair_sampler_ratio_and_validity() -> None:
    sampler = PairSampler(PERSON_IDS, pairs_per_epoch=400, ratio=RatioSchedule(start=3.0), seed=0)
    pairs = list(sampler)
    assert len(pairs) == len(sampler) == 400
    positives = [p for p in pairs if p[2]]
    assert len(positives) == 300  # 3:1
    for a, b, same in pairs:
        assert (PERSON_IDS[a] == PERSON_IDS[b]) == same
        if same:
            assert a != b


def test_pair_sampler_follows_schedule_over_epochs() -> None:
    sampler = PairSampler(PERSON_IDS, pairs_per_epoch=100, ratio=RatioSchedule(1.0, 2.0, 4.0), seed=0)
    observed = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        observed.append(sum(same for _, _, same in sampler))
    assert observed == [50, 67, 80, 80]  # ratios 1, 2, 4, 4 (cap)


def test_pair_sampler_prefers_other_camera() -> None:
    person_ids = [0, 0, 0, 1, 1]
    camera_ids = [1, 1, 2, 1, 1]
    sampler = PairSampler(
        person_ids, pairs_per_epoch=60, ratio=RatioSchedule(start=1e6), camera_ids=camera_ids
    )
    for a, b, same in sampler:
        if same and person_ids[a] == 0:
            assert camera_ids[a] != camera_ids[b]


def test_pair_sampler_determinism_and_ddp() -> None:
    kwargs = {"pairs_per_epoch": 30, "ratio": RatioSchedule(), "seed": 5}
    full = list(PairSampler(PERSON_IDS, **kwargs))
    assert full == list(PairSampler(PERSON_IDS, **kwargs))
    shards = [list(PairSampler(PERSON_IDS, rank=r, world_size=3, **kwargs)) for r in range(3)]
    assert [len(s) for s in shards] == [10, 10, 10]
    assert sorted(p for s in shards for p in s) == sorted(full)


def test_pair_sampler_validation() -> None:
    with pytest.raises(ValueError, match="at least 2 images"):
        PairSampler([0, 1, 2], pairs_per_epoch=10)
    with pytest.raises(ValueError, match="at least 2 identities"):
        PairSampler([0, 0, 0], pairs_per_epoch=10)
    with pytest.raises(ValueError, match="camera_ids has 2 entries"):
        PairSampler([0, 0, 1], pairs_per_epoch=10, camera_ids=[1, 2])
