"""``POST /search``: rank the gallery for one or more query images."""

from __future__ import annotations

import functools
import time

from fastapi import APIRouter, Request

from service.api.deps import ReadyDep
from service.api.inputs import embed_images, openapi_body, parse_body, resolve_metric, run_index_call
from service.api.schemas import QueryResult, SearchMatch, SearchRequest, SearchResponse, Timings
from service.contract.scoring import is_same
from service.gallery.pairwise import pairwise_search

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
    them by the comparator; ``search_ms`` includes the comparator.
    """
    t0 = time.perf_counter()
    body = await parse_body(request, SearchRequest, list_fields=("images", "person_ids"))
    metric, threshold, higher = resolve_metric(ready, body.metric, body.threshold)
    rows, decode_ms, inference_ms = await embed_images(ready, body.images, "images")
    queries, encodings = ready.runtime.split(rows)
    t1 = time.perf_counter()
    pairwise = ready.runtime.pairwise
    if metric == "pairwise" and pairwise is not None and encodings is not None:
        shortlist = ready.state.settings.shortlist or pairwise.spec.shortlist
        ranked = await run_index_call(
            ready,
            functools.partial(
                pairwise_search,
                ready.gallery,
                pairwise.compare,
                queries,
                encodings,
                top_k=body.top_k,
                shortlist=shortlist,
                exclude_camera_id=body.exclude_camera_id,
                person_ids=body.person_ids,
            )
        )
    else:
        ranked = await run_index_call(
            ready,
            functools.partial(
                ready.gallery.search, metric, queries, body.top_k, body.exclude_camera_id, body.person_ids
            ),
        )
    search_ms = (time.perf_counter() - t1) * 1000.0
    results = [
        QueryResult(
            matches=[
                SearchMatch(
                    id=m.id,
                    person_id=m.person_id,
                    camera_id=m.camera_id,
                    score=m.score,
                    same_person=None if threshold is None else is_same(m.score, threshold, higher),
                )
                for m in row
            ]
        )
        for row in ranked
    ]
    return SearchResponse(
        results=results,
        gallery_size=ready.gallery.size,
        metric=metric,
        threshold=threshold,
        model=ready.runtime.manifest.model_id,
        timings=Timings(
            decode_ms=decode_ms,
            inference_ms=inference_ms,
            search_ms=search_ms,
            total_ms=(time.perf_counter() - t0) * 1000.0,
        ),
    )
