"""Response bodies; every field is described (they show in the OpenAPI docs at ``/docs``).

The request bodies and their field types are in :mod:`service.api.schemas`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.api.schemas import Metric
from service.core.results import Ranking
from service.core.results import Timings as CoreTimings


class Timings(BaseModel):
    """Where the time went, in milliseconds."""

    decode_ms: float = Field(description="Decoding and preprocessing the images.")
    inference_ms: float = Field(description="Queueing and running the model (embedding and head).")
    search_ms: float = Field(default=0.0, description="Searching the gallery index.")
    total_ms: float = Field(description="The whole request.")


def timings(core: CoreTimings, t0: float) -> Timings:
    """The response timings of a request that started at ``perf_counter()`` ``t0``."""
    return Timings(**vars(core), total_ms=(time.perf_counter() - t0) * 1000.0)  # not asdict: no deep copy


class _Scored(BaseModel):
    """Fields of every scored answer."""

    metric: Metric = Field(description="The scoring mode used.")
    threshold: float | None = Field(description="The threshold applied.")
    model: str = Field(description="Model name@version.")
    timings: Timings = Field(description="Timings in milliseconds.")


class VerifyResponse(_Scored):
    """The verification decision."""

    same_person: bool | None = Field(description="Decision at the threshold (null when no threshold exists).")
    score: float = Field(description="Score of the pair under the metric.")
    higher_is_better: bool = Field(description="True when a larger score means 'same person'.")


class _Entry(BaseModel):
    """Who a gallery entry is."""

    id: int = Field(description="Gallery id (stable, never reused).")
    person_id: str = Field(description="Person identity.")
    camera_id: str | None = Field(description="Camera identity.")


class SearchMatch(_Entry):
    """One ranked gallery entry."""

    score: float = Field(description="Score against the query under the metric.")
    same_person: bool | None = Field(description="Decision at the threshold (null when no threshold exists).")


class PersonResult(BaseModel):
    """One person of a person-level ranking (``group_by=person``)."""

    person_id: str = Field(description="The person.")
    score: float = Field(description="Best score of the person's entries against the query.")
    id: int = Field(description="Gallery id of the entry that gave the best score.")
    camera_id: str | None = Field(description="Camera of that entry.")
    entries: int = Field(description="The person's entries ranked above every person not returned.")
    same_person: bool | None = Field(description="Decision at the threshold (null when no threshold exists).")


class QueryResult(BaseModel):
    """The ranking for one query image (or one tracklet)."""

    matches: list[SearchMatch] = Field(description="Best first (empty with group_by=person).")
    persons: list[PersonResult] | None = Field(
        default=None, description="With group_by=person: best first, top_k persons; else null."
    )


def query_results(ranking: Ranking) -> list[QueryResult]:
    """One :class:`QueryResult` per row of a ranking (entries, or persons with ``group_by=person``)."""
    person, match = PersonResult.model_validate, SearchMatch.model_validate  # read the dataclasses' fields
    persons: list[list[PersonResult] | None] = [None] * len(ranking.results)
    if ranking.persons is not None:
        persons = [[person(p, from_attributes=True) for p in row] for row in ranking.persons]
    return [
        QueryResult(matches=[match(h, from_attributes=True) for h in row], persons=people)
        for row, people in zip(ranking.results, persons, strict=True)
    ]


class SearchResponse(_Scored):
    """Rankings for every query image."""

    results: list[QueryResult] = Field(
        description="One ranking per query image (or box), in request order; one in all with aggregate=mean."
    )
    gallery_size: int = Field(description="Searchable gallery entries.")


class EmbeddingsResponse(BaseModel):
    """Embedding vectors of the images."""

    embeddings: list[list[float]] = Field(description="One vector per image, in request order.")
    dim: int = Field(description="Vector length.")
    normalized: bool = Field(
        description="True when the model L2-normalizes its embeddings (always, for a pairwise model's "
        "descriptors)."
    )
    model: str = Field(description="Model name@version.")
    timings: Timings = Field(description="Timings in milliseconds.")


class EnrolResponse(BaseModel):
    """The new gallery entries."""

    ids: list[int] = Field(description="Gallery ids, one per image, in request order.")
    person_id: str = Field(description="The person enrolled.")
    gallery_size: int = Field(description="Searchable gallery entries after enrolment.")
    model: str = Field(description="Model name@version that embedded the images.")


class GalleryItem(_Entry):
    """One gallery entry."""

    metadata: dict[str, Any] = Field(description="The JSON metadata given at enrolment.")
    created: str = Field(description="Enrolment time (ISO 8601, UTC).")
    has_image: bool = Field(description="True when the image bytes are stored (REID_STORE_IMAGES).")
    models: list[str] = Field(description="Model ids this entry has an embedding for.")


class GalleryPage(BaseModel):
    """A page of gallery entries."""

    items: list[GalleryItem] = Field(description="Entries ordered by id.")
    total: int = Field(description="Entries matching the filter.")
    offset: int = Field(description="Index of the first entry of this page.")
    limit: int = Field(description="Page size asked for.")


class DeleteResponse(BaseModel):
    """What a delete removed."""

    deleted_ids: list[int] = Field(description="Gallery ids that were deleted.")
    gallery_size: int = Field(description="Searchable gallery entries after the delete.")


class HealthResponse(BaseModel):
    """Liveness."""

    status: Literal["ok"] = Field(description="Always 'ok' while the process serves requests.")


Calibration = Literal["calibrated", "partial", "uncalibrated"]
_CALIBRATION_DOC = (
    "'calibrated' when every scoring mode has a default threshold; 'uncalibrated' when none has (a fresh "
    "`reid models import`: /search answers same_person null and /verify needs a request threshold until "
    "`reid calibrate`); 'partial' otherwise."
)
_UNCALIBRATED_DOC = "Scoring modes without a default threshold."


def calibration_state(uncalibrated: list[str], metrics: int) -> Calibration:
    """Summary for a model with ``metrics`` scoring modes, of which ``uncalibrated`` have no threshold."""
    if not uncalibrated:
        return "calibrated"
    return "uncalibrated" if len(uncalibrated) == metrics else "partial"


class ReadyResponse(BaseModel):
    """Readiness, with what is loaded."""

    ready: bool = Field(description="True when model and gallery are loaded and warmed up.")
    reason: str = Field(description="'ready', or why not.")
    model: str | None = Field(description="Active model name@version.")
    kind: str | None = Field(default=None, description="Active model kind: embedding | siamese | pairwise.")
    provider: str | None = Field(description="onnxruntime execution provider in use.")
    faiss_gpu: bool = Field(description="True when the FAISS indexes run on a GPU.")
    gallery_size: int | None = Field(description="Searchable gallery entries.")
    metrics: list[str] = Field(description="Scoring modes available for search.")
    calibration: Calibration | None = Field(default=None, description=_CALIBRATION_DOC)
    uncalibrated_metrics: list[str] = Field(default_factory=list, description=_UNCALIBRATED_DOC)
    startup: dict[str, Any] = Field(description="Start-up facts (duration, head check, rebuilt indexes).")


class ModelInfo(BaseModel):
    """One model folder."""

    name: str = Field(description="Folder name.")
    kind: str | None = Field(default=None, description="embedding | siamese | pairwise (null if invalid).")
    active: bool = Field(description="True for the model being served.")
    manifest: dict[str, Any] | None = Field(description="The manifest, when it is valid.")
    error: str | None = Field(description="Why the manifest is invalid, if it is.")
    calibration: Calibration | None = Field(default=None, description=_CALIBRATION_DOC)
    uncalibrated_metrics: list[str] = Field(default_factory=list, description=_UNCALIBRATED_DOC)


class ModelsResponse(BaseModel):
    """Model folders and the active provider."""

    active: str | None = Field(description="Active model name@version.")
    kind: str | None = Field(default=None, description="Active model kind: embedding | siamese | pairwise.")
    provider: str | None = Field(description="onnxruntime execution provider in use.")
    models: list[ModelInfo] = Field(description="Every model folder found.")
