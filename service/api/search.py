"""``POST /search``: rank the gallery for one or more query images."""

from __future__ import annotations

import functools
import time
from dataclasses import asdict

from fastapi import APIRouter, Request

from service.api.boxes import embed_items
from service.api.deps import ReadyDep
from service.api.inputs import openapi_body, parse_body, resolve_metric, run_index_call
from service.api.schemas import PersonResult, QueryResult, SearchMatch, SearchRequest, SearchResponse, Timings
from service.contract.scoring import is_same
from service.gallery.filters import SearchFilter
from service.gallery.gallery import Match
from service.gallery.ranking import PersonMatch, rank

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Rank the gallery for query images",
    openapi_extra=openapi_body(SearchRequest, ("images",)),
)
async def search(request: Request, ready: ReadyDep) -> SearchResponse:
    """Embed the query images and rank the whole gallery for each (exactly, for flat indexes and softmax).

    ``metric=pairwise``: shortlist ``REID_SHORTLIST`` entries by descriptor (after the filters), then re-rank
    them by the comparator; ``search_ms`` includes the comparator. Filters (cameras, persons, enrolment time)
    apply inside the index search; ``aggregate=mean`` searches all query images as one person (a tracklet);
    ``group_by=person`` answers one item per person.
    """
    t0 = time.perf_counter()
    body = await parse_body(
        request, SearchRequest, list_fields=("images", "person_ids", "camera_ids", "exclude_camera_ids")
    )
    metric, threshold, higher = resolve_metric(ready, body.metric, body.threshold)
    items = await embed_items(ready, body)
    decode_ms, inference_ms = items.decode_ms, items.inference_ms
    queries, encodings = ready.runtime.split(items.rows)
    t1 = time.perf_counter()
    pairwise = ready.runtime.pairwise
    excluded = list(body.exclude_camera_ids or [])
    if body.exclude_camera_id is not None:
        excluded.append(body.exclude_camera_id)
    where = SearchFilter.of(
        camera_ids=body.camera_ids,
        exclude_camera_ids=excluded,
        person_ids=body.person_ids,
        created_after=body.created_after,
        created_before=body.created_before,
    )
    ranked = await run_index_call(
        ready,
        functools.partial(
            rank,
            ready.gallery,
            metric,
            queries,
            encodings,
            top_k=body.top_k,
            filters=where,
            aggregate=body.aggregate == "mean",
            by_person=body.group_by == "person",
            compare=pairwise.compare if pairwise is not None else None,
            shortlist=ready.state.settings.shortlist or (pairwise.spec.shortlist if pairwise else 100),
        ),
    )
    search_ms = (time.perf_counter() - t1) * 1000.0

    def decide(score: float) -> bool | None:
        return None if threshold is None else is_same(score, threshold, higher)

    results = [
        QueryResult(
            matches=[
                SearchMatch(
                    id=m.id,
                    person_id=m.person_id,
                    camera_id=m.camera_id,
                    score=m.score,
                    same_person=decide(m.score),
                )
                for m in row
                if isinstance(m, Match)
            ],
            persons=None
            if body.group_by != "person"
            else [
                PersonResult(**asdict(p), same_person=decide(p.score))
                for p in row
                if isinstance(p, PersonMatch)
            ],
        )
        for row in ranked
    ]
    return SearchResponse(
        results=results,
        gallery_size=ready.gallery.size,
        metric=metric,  # type: ignore[arg-type]
        threshold=threshold,
        model=ready.runtime.manifest.model_id,
        timings=Timings(
            decode_ms=decode_ms,
            inference_ms=inference_ms,
            search_ms=search_ms,
            total_ms=(time.perf_counter() - t0) * 1000.0,
        ),
    )
