"""``POST /search``: rank the gallery for one or more query images."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from service.api.deps import ReidDep
from service.api.inputs import parse_body
from service.api.openapi import openapi_body
from service.api.responses import SearchResponse, query_results, timings
from service.api.schemas import SearchRequest
from service.gallery.protocol import SearchFilter

router = APIRouter(tags=["search"])
LIST_FILTERS = ("camera_ids", "exclude_camera_ids")  # repeated multipart fields


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Rank the gallery for query images",
    openapi_extra=openapi_body(SearchRequest, ("images",)),
)
async def search(request: Request, reid: ReidDep) -> SearchResponse:
    """Embed the query images and rank the whole gallery for each (exactly, for flat indexes and softmax).

    ``metric=pairwise``: shortlist ``REID_SHORTLIST`` entries by descriptor (after the filters), then re-rank
    them by the comparator; ``search_ms`` includes the comparator. Filters (cameras, persons, enrolment time)
    apply inside the index search; ``aggregate=mean`` searches all query images (or boxes) as one person (a
    tracklet); ``group_by=person`` answers one item per person.
    """
    t0 = time.perf_counter()
    body = await parse_body(request, SearchRequest, list_fields=("images", "person_ids", *LIST_FILTERS))
    ranking = await reid.search(
        body.images,
        top_k=body.top_k,
        metric=body.metric,
        threshold=body.threshold,
        exclude_camera_id=body.exclude_camera_id,
        person_ids=body.person_ids,
        boxes=body.boxes,
        filters=SearchFilter.of(
            camera_ids=body.camera_ids,
            exclude_camera_ids=body.exclude_camera_ids,
            created_after=body.created_after,
            created_before=body.created_before,
        ),
        aggregate=body.aggregate == "mean",
        by_person=body.group_by == "person",
    )
    return SearchResponse(
        results=query_results(ranking),
        gallery_size=ranking.gallery_size,
        metric=ranking.scoring.metric,
        threshold=ranking.scoring.threshold,
        model=reid.model_id,
        timings=timings(ranking.timings, t0),
    )
