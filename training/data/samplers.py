"""Samplers that build re-ID batches: P identities × K images (triplet training) and same / different pairs.

The index logic is plain python + numpy (seeded ``numpy.random.Generator`` per (seed, epoch)) so it is
deterministic and testable without torch. Under DDP every rank builds the same epoch plan from the same seed
and keeps a disjoint shard of it; call ``set_epoch(e)`` on every rank at the start of each epoch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler
from training.checks import at_least, positive


def _check_ddp(rank: int, world_size: int) -> None:
    at_least("world_size", world_size, 1)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")


def _group_by_person(person_ids: Sequence[int]) -> dict[int, list[int]]:
    if len(person_ids) == 0:
        raise ValueError("person_ids is empty")
    groups: dict[int, list[int]] = defaultdict(list)
    for index, pid in enumerate(person_ids):
        groups[int(pid)].append(index)
    return dict(groups)


class PKSampler(Sampler[int]):
    """P identities × K images per batch (torchreid ``RandomIdentitySampler`` semantics, sharded for DDP).

    Each epoch, every identity's images are shuffled and cut into chunks of K (an identity with fewer than K
    images is sampled with replacement up to K; an incomplete last chunk is dropped). Batches are then drawn
    by picking P distinct identities that still have chunks and taking one chunk of each, until fewer than P
    identities are left. So each image is used about once per epoch and an identity with n ≥ K images appears
    in about n / K batches. The flat index stream is batch after batch: use it with
    ``DataLoader(batch_size=p * k, sampler=..., drop_last=True)`` or take :meth:`batches` as a batch sampler.

    DDP: the epoch's batch list (identical on every rank) is truncated to a multiple of ``world_size`` and
    rank r takes batches r, r + world_size, …, so ranks get disjoint batches, the same number of steps, and
    together all batches when ``world_size`` divides the count.

    Args:
        person_ids: Identity label of every dataset index.
        p: Identities per batch (>= 2 so that every anchor has negatives).
        k: Images per identity (>= 1; >= 2 gives positives).
        seed: Base seed; the epoch plan depends only on (seed, epoch).
        rank: This process's rank.
        world_size: Number of DDP processes.
    """

    def __init__(
        self, person_ids: Sequence[int], *, p: int, k: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        at_least("p (identities per batch)", p, 2)
        at_least("k (images per identity)", k, 1)
        _check_ddp(rank, world_size)
        self._groups = _group_by_person(person_ids)
        if len(self._groups) < p:
            raise ValueError(
                f"p={p} identities per batch but the dataset has only {len(self._groups)} identities"
            )
        self.p, self.k, self.seed, self.rank, self.world_size = p, k, seed, rank, world_size
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None
        if len(self.batches()) == 0:
            raise ValueError(
                f"{len(self._all_batches())} batches of {p}×{k} per epoch cannot be shared by "
                f"world_size={world_size} ranks"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan the next iteration yields (reseeds the shuffling)."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks: dict[int, list[list[int]]] = {}
        for pid in sorted(self._groups):
            images = np.asarray(self._groups[pid])
            if len(images) < self.k:
                images = rng.choice(images, size=self.k, replace=True)
            images = rng.permutation(images)
            n_chunks = len(images) // self.k
            chunks[pid] = [images[i * self.k : (i + 1) * self.k].tolist() for i in range(n_chunks)]
        available = sorted(chunks)
        batches: list[list[int]] = []
        while len(available) >= self.p:
            chosen = rng.choice(len(available), size=self.p, replace=False)
            batch: list[int] = []
            for position in chosen:
                batch.extend(chunks[available[position]].pop())
            batches.append(batch)
            available = [pid for pid in available if chunks[pid]]
        self._cache = (self.epoch, batches)
        return batches

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch, each ``p * k`` dataset indices."""
        all_batches = self._all_batches()
        usable = len(all_batches) - len(all_batches) % self.world_size
        return all_batches[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch

    def __len__(self) -> int:
        return len(self.batches()) * self.p * self.k


@dataclass(frozen=True)
class RatioSchedule:
    """Positive:negative pair ratio per epoch: ``start · growth^epoch``, stopped at ``cap``.

    ``ratio(e) = min(start · growth^e, cap)`` when growth > 1, ``max(start · growth^e, cap)`` when growth < 1,
    ``start`` when growth = 1. A ratio r means r positive pairs per negative pair (r = 1: balanced; r = 3:
    75 % positives). The ID + verification fusion paper: ``RatioSchedule(start=1.0, growth=1.01, cap=3.0)``.

    Args:
        start: Ratio at epoch 0 (> 0).
        growth: Factor per epoch (> 0).
        cap: Limit the ratio approaches, or None for none.
    """

    start: float = 1.0
    growth: float = 1.0
    cap: float | None = None

    def __post_init__(self) -> None:
        positive("start ratio", self.start)
        positive("growth", self.growth)
        if self.cap is not None:
            if self.cap <= 0:
                raise ValueError(f"cap must be > 0 or None, got {self.cap}")
            if (self.growth > 1 and self.cap < self.start) or (self.growth < 1 and self.cap > self.start):
                raise ValueError(
                    f"cap {self.cap} lies on the wrong side of start {self.start} for growth {self.growth}"
                )

    def ratio(self, epoch: int) -> float:
        """Positive:negative ratio at ``epoch`` (>= 0)."""
        at_least("epoch", epoch, 0)
        if self.growth == 1.0:
            return self.start
        # Work in log space so large epochs cannot overflow.
        log_value = math.log(self.start) + epoch * math.log(self.growth)
        if self.cap is None:
            return math.exp(min(log_value, 700.0))
        if self.growth > 1:
            return min(math.exp(min(log_value, 700.0)), self.cap)
        return max(math.exp(log_value), self.cap)

    def positive_fraction(self, epoch: int) -> float:
        """Share of positive pairs, ``r / (1 + r)``."""
        r = self.ratio(epoch)
        return r / (1.0 + r)


class PairSampler(Sampler[tuple[int, int, bool]]):
    """Yields ``(index_a, index_b, is_same)`` pairs with a positive:negative ratio that follows a schedule.

    Each epoch draws ``pairs_per_epoch`` pairs, ``round(pairs_per_epoch · r / (1 + r))`` of them positive:
    a positive picks an identity with >= 2 images uniformly, then two different images of it (from different
    cameras when ``camera_ids`` is given and the identity has images from several cameras); a negative picks
    two different identities uniformly and one image of each. The pairs are shuffled. Under DDP the epoch's
    pair list is truncated to a multiple of ``world_size`` and rank r takes pairs r, r + world_size, ….

    Args:
        person_ids: Identity label of every dataset index.
        pairs_per_epoch: Pairs per epoch over all ranks.
        ratio: Positive:negative ratio schedule.
        seed: Base seed; the epoch's pairs depend only on (seed, epoch).
        rank: This process's rank.
        world_size: Number of DDP processes.
        camera_ids: Camera of every dataset index, or None.
    """

    def __init__(
        self,
        person_ids: Sequence[int],
        *,
        pairs_per_epoch: int,
        ratio: RatioSchedule | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        camera_ids: Sequence[int] | None = None,
    ) -> None:
        _check_ddp(rank, world_size)
        if pairs_per_epoch < world_size:
            raise ValueError(f"pairs_per_epoch must be >= world_size ({world_size}), got {pairs_per_epoch}")
        self._groups = _group_by_person(person_ids)
        self._multi = sorted(pid for pid, images in self._groups.items() if len(images) >= 2)
        if not self._multi:
            raise ValueError("positive pairs need an identity with at least 2 images; none has")
        if len(self._groups) < 2:
            raise ValueError(f"negative pairs need at least 2 identities, got {len(self._groups)}")
        if camera_ids is not None and len(camera_ids) != len(person_ids):
            raise ValueError(f"camera_ids has {len(camera_ids)} entries for {len(person_ids)} person_ids")
        self._cameras = None if camera_ids is None else np.asarray(camera_ids)
        self._pids = sorted(self._groups)
        self.pairs_per_epoch = pairs_per_epoch
        self.ratio = ratio if ratio is not None else RatioSchedule()
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: reseeds the pairs and moves the positive:negative ratio along its schedule."""
        self.epoch = epoch

    def num_positives(self) -> int:
        """Positive pairs in the current epoch (over all ranks, before DDP truncation)."""
        return round(self.pairs_per_epoch * self.ratio.positive_fraction(self.epoch))

    def _positive(self, rng: np.random.Generator) -> tuple[int, int, bool]:
        images = self._groups[self._multi[int(rng.integers(len(self._multi)))]]
        index_a, index_b = (int(i) for i in rng.choice(images, size=2, replace=False))
        if self._cameras is not None:
            other_camera = [i for i in images if self._cameras[i] != self._cameras[index_a]]
            if other_camera:
                index_b = int(other_camera[int(rng.integers(len(other_camera)))])
        return index_a, index_b, True

    def _negative(self, rng: np.random.Generator) -> tuple[int, int, bool]:
        pid_a, pid_b = rng.choice(len(self._pids), size=2, replace=False)
        images_a, images_b = self._groups[self._pids[pid_a]], self._groups[self._pids[pid_b]]
        index_a = images_a[int(rng.integers(len(images_a)))]
        index_b = images_b[int(rng.integers(len(images_b)))]
        return index_a, index_b, False

    def pairs(self) -> list[tuple[int, int, bool]]:
        """This rank's pairs for the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n_pos = self.num_positives()
        pairs = [self._positive(rng) for _ in range(n_pos)]
        pairs += [self._negative(rng) for _ in range(self.pairs_per_epoch - n_pos)]
        order = rng.permutation(len(pairs))
        usable = len(pairs) - len(pairs) % self.world_size
        return [pairs[i] for i in order[self.rank : usable : self.world_size]]

    def __iter__(self) -> Iterator[tuple[int, int, bool]]:
        yield from self.pairs()

    def __len__(self) -> int:
        return self.pairs_per_epoch // self.world_size
