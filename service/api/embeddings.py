"""``POST /embeddings``: images → embedding vectors (for users who keep their own store)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from service.api.deps import ReidDep
from service.api.inputs import parse_body
from service.api.openapi import post_body
from service.api.responses import EmbeddingsResponse, timings
from service.api.schemas import ImagesRequest

router = APIRouter(tags=["embeddings"])


@post_body(router, "/embeddings", ImagesRequest, EmbeddingsResponse, "Compute embedding vectors")
async def embeddings(request: Request, reid: ReidDep) -> EmbeddingsResponse:
    """Return the model's embedding of every image (or of every box of one frame), in request order
    (batched with concurrent requests).

    For a pairwise model this is the L2-normalized descriptor its gallery shortlist searches.
    """
    t0 = time.perf_counter()
    body = await parse_body(request, ImagesRequest)
    embedded = await reid.embed(body.images, "images", body.boxes)
    return EmbeddingsResponse(
        embeddings=embedded.vectors.astype(float).tolist(),
        dim=reid.embedding_dim,
        normalized=reid.embeddings_normalized,
        model=reid.model_id,
        timings=timings(embedded.timings, t0),
    )
