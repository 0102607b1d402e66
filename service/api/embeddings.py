"""``POST /embeddings``: images → embedding vectors (for users who keep their own store)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from service.api.boxes import embed_items
from service.api.deps import ReadyDep
from service.api.inputs import openapi_body, parse_body
from service.api.schemas import EmbeddingsResponse, ImagesRequest, Timings

router = APIRouter(tags=["embeddings"])


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    summary="Compute embedding vectors",
    openapi_extra=openapi_body(ImagesRequest, ("images",)),
)
async def embeddings(request: Request, ready: ReadyDep) -> EmbeddingsResponse:
    """Return the model's embedding of every image (or of every box of one frame), in request order
    (batched with concurrent requests).

    For a pairwise model this is the L2-normalized descriptor its gallery shortlist searches.
    """
    t0 = time.perf_counter()
    body = await parse_body(request, ImagesRequest, list_fields=("images",))
    items = await embed_items(ready, body)
    decode_ms, inference_ms = items.decode_ms, items.inference_ms
    vectors, _ = ready.runtime.split(items.rows)  # pairwise: the descriptor, not the encoding
    manifest = ready.runtime.manifest
    return EmbeddingsResponse(
        embeddings=vectors.astype(float).tolist(),
        dim=manifest.embedding_dim,
        normalized=manifest.normalize_embeddings or manifest.kind == "pairwise",
        model=manifest.model_id,
        timings=Timings(
            decode_ms=decode_ms, inference_ms=inference_ms, total_ms=(time.perf_counter() - t0) * 1000.0
        ),
    )
