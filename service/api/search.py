"""``POST /search``: rank the gallery for one or more query images."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from service.api.deps import ReidDep
from service.api.inputs import parse_body
from service.api.openapi import post_body
from service.api.responses import SearchResponse, query_results, timings
from service.api.schemas import SearchRequest

router = APIRouter(tags=["search"])


@post_body(router, "/search", SearchRequest, SearchResponse, "Rank the gallery for query images")
async def search(request: Request, reid: ReidDep) -> SearchResponse:
    """Embed the query images and rank the whole gallery for each (exactly, for flat indexes and softmax).

    ``metric=pairwise``: shortlist ``REID_SHORTLIST`` entries by descriptor (after the filters), then re-rank
    them by the comparator; ``search_ms`` includes the comparator. Filters (cameras, persons, enrolment time)
    apply inside the index search; ``aggregate=mean`` searches all query images (or boxes) as one person (a
    tracklet); ``group_by=person`` answers one item per person.
    """
    t0 = time.perf_counter()
    body = await parse_body(request, SearchRequest)
    ranking = await reid.search(body.images, body.query(), body.boxes)
    return SearchResponse(
        results=query_results(ranking),
        gallery_size=ranking.gallery_size,
        metric=ranking.scoring.metric,
        threshold=ranking.scoring.threshold,
        model=reid.model_id,
        timings=timings(ranking.timings, t0),
    )
