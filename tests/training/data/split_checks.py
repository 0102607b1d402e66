"""Checks shared by the dataset loader tests: per-subset counts, person ids, well-formed splits."""

from __future__ import annotations

from collections.abc import Iterable

from training.data.datasets import ImageRecord, ReidSplit


def counts(split: ReidSplit) -> dict[str, tuple[int, int]]:
    """subset -> (# ids, # images)."""
    return {s: (c["ids"], c["images"]) for s, c in split.counts().items()}


def ids(records: Iterable[ImageRecord]) -> set[int]:
    return {r.person_id for r in records}


def assert_well_formed(split: ReidSplit) -> None:
    """Train ids are 0..N-1; every path exists."""
    assert sorted(ids(split.train)) == list(range(split.num_train_ids))
    for record in split.train + split.query + split.gallery:
        assert record.path.is_file(), record.path
