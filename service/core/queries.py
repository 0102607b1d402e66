"""What the service layer's searches take (the routers build them from requests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.contract.scoring import ServedMetric
from service.gallery.filters import SearchFilter


@dataclass(frozen=True)
class SearchQuery:
    """How to rank the gallery for a set of query images or boxes.

    Attributes:
        top_k: Results per row (entries, or persons with ``by_person``).
        metric: Scoring mode (None: the model's default).
        threshold: Decision threshold (None: the calibrated one).
        filters: Which entries may be returned (applied inside the index search, before the top-k cut).
        aggregate: All queries are one person (a tracklet): one row (see :mod:`service.gallery.ranking`).
        by_person: Rows of persons (``Ranking.persons``) instead of entries.
    """

    top_k: int = 10
    metric: ServedMetric | None = None
    threshold: float | None = None
    filters: SearchFilter = field(default_factory=SearchFilter)
    aggregate: bool = False
    by_person: bool = False
