"""What the service layer's operations return (the routers shape them into responses)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.contract.scoring import ServedMetric, is_same


@dataclass(frozen=True)
class Timings:
    """Where a request's time went, in milliseconds (the whole request is the router's to time)."""

    decode_ms: float = 0.0
    inference_ms: float = 0.0
    search_ms: float = 0.0


@dataclass(frozen=True)
class Embedded:
    """Images through the model: ``vectors`` (N, D) are embeddings (pairwise models: descriptors),
    ``encodings`` (N, E) the comparator encodings of a pairwise model, else None."""

    vectors: np.ndarray
    encodings: np.ndarray | None
    timings: Timings


@dataclass(frozen=True)
class Scoring:
    """The metric a request scores with, its threshold (asked for, or the calibrated one) and direction."""

    metric: ServedMetric
    threshold: float | None
    higher_is_better: bool

    def decide(self, score: float) -> bool | None:
        """'Same person' at the threshold; None when there is no threshold."""
        return None if self.threshold is None else is_same(score, self.threshold, self.higher_is_better)


@dataclass(frozen=True)
class Hit:
    """One ranked gallery entry with its decision."""

    id: int
    person_id: str
    camera_id: str | None
    score: float
    same_person: bool | None


@dataclass(frozen=True)
class PersonHit:
    """One person of a person-level ranking: the best score, the entry that gave it, how many of the person's
    entries rank above every person not returned, and the decision."""

    person_id: str
    score: float
    id: int
    camera_id: str | None
    entries: int
    same_person: bool | None


@dataclass(frozen=True)
class Ranking:
    """The result of a search: one list of hits per query image (or one for a tracklet), best first; with
    ``by_person`` the hit lists are empty and ``persons`` holds one list of persons per row."""

    results: list[list[Hit]]
    scoring: Scoring
    gallery_size: int
    timings: Timings
    persons: list[list[PersonHit]] | None = None


@dataclass(frozen=True)
class Verdict:
    """The result of a verification."""

    score: float
    same_person: bool | None
    scoring: Scoring
    timings: Timings


@dataclass(frozen=True)
class Changed:
    """The ids an enrolment created or a delete removed, and the searchable gallery size after it."""

    ids: list[int]
    gallery_size: int


#: Leading bytes of the image formats enrolment accepts, and their media types.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"BM", "image/bmp"),
)


@dataclass(frozen=True)
class StoredImage:
    """The image bytes kept with a gallery entry (``REID_STORE_IMAGES``)."""

    data: bytes

    @property
    def media_type(self) -> str:
        """The media type read from the leading bytes (``application/octet-stream`` if unknown)."""
        if self.data[:4] == b"RIFF" and self.data[8:12] == b"WEBP":
            return "image/webp"
        for signature, media in _SIGNATURES:
            if self.data.startswith(signature):
                return media
        return "application/octet-stream"
