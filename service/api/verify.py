"""``POST /verify``: are two images (or gallery entries) the same person?"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from service.api.deps import ReidDep
from service.api.inputs import parse_body
from service.api.openapi import post_body
from service.api.responses import VerifyResponse, timings
from service.api.schemas import VerifyRequest

router = APIRouter(tags=["verify"])


@post_body(router, "/verify", VerifyRequest, VerifyResponse, "Verify that two images show the same person")
async def verify(request: Request, reid: ReidDep) -> VerifyResponse:
    """Score a pair of images (or gallery ids) and decide 'same person' at the threshold."""
    t0 = time.perf_counter()
    body = await parse_body(request, VerifyRequest)
    a, b = body.sides()
    verdict = await reid.verify(a, b, metric=body.metric, threshold=body.threshold)
    return VerifyResponse(
        same_person=verdict.same_person,
        score=verdict.score,
        metric=verdict.scoring.metric,
        threshold=verdict.scoring.threshold,
        higher_is_better=verdict.scoring.higher_is_better,
        model=reid.model_id,
        timings=timings(verdict.timings, t0),
    )
