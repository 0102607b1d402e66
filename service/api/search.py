"""``POST /search``: rank the gallery for one or more query images."""

from __future__ import annotations

import dataclasses
import time

from fastapi import APIRouter, Request

from service.api.deps import ReidDep
from service.api.inputs import parse_body
from service.api.openapi import openapi_body
from service.api.schemas import QueryResult, SearchMatch, SearchRequest, SearchResponse, timings

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Rank the gallery for query images",
    openapi_extra=openapi_body(SearchRequest, ("images",)),
)
async def search(request: Request, reid: ReidDep) -> SearchResponse:
    """Embed the query images and rank the whole gallery for each (exactly, for flat indexes and softmax).

    ``metric=pairwise``: shortlist ``REID_SHORTLIST`` entries by descriptor (after the filters), then re-rank
    them by the comparator; ``search_ms`` includes the comparator.
    """
    t0 = time.perf_counter()
    body = await parse_body(request, SearchRequest, list_fields=("images", "person_ids"))
    ranking = await reid.search(
        body.images,
        top_k=body.top_k,
        metric=body.metric,
        threshold=body.threshold,
        exclude_camera_id=body.exclude_camera_id,
        person_ids=body.person_ids,
    )
    return SearchResponse(
        results=[
            QueryResult(matches=[SearchMatch(**dataclasses.asdict(hit)) for hit in row])
            for row in ranking.results
        ],
        gallery_size=ranking.gallery_size,
        metric=ranking.scoring.metric,
        threshold=ranking.scoring.threshold,
        model=reid.model_id,
        timings=timings(ranking.timings, t0),
    )
