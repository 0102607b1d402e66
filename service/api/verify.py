"""``POST /verify``: are two images (or gallery entries) the same person?"""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.api.deps import Ready, ReadyDep
from service.api.errors import ProblemError
from service.api.inputs import embed_images, openapi_body, parse_body, resolve_metric
from service.api.schemas import Timings, VerifyRequest, VerifyResponse
from service.contract.scoring import is_same, pair_scores

router = APIRouter(tags=["verify"])


def _stored(ready: Ready, gallery_id: int, field: str) -> np.ndarray:
    vec = ready.gallery.embedding(gallery_id)
    if vec is None:
        if ready.gallery.get(gallery_id) is None:
            raise ProblemError(404, f"{field}: no gallery entry with id {gallery_id}", title="Not Found")
        raise ProblemError(
            409,
            f"{field}: gallery entry {gallery_id} has no embedding for {ready.gallery.model_id}",
        )
    return vec


def _encoding(ready: Ready, gallery_id: int) -> np.ndarray:
    """The stored comparator encoding of an entry whose embedding :func:`_stored` already found."""
    found, encodings = ready.gallery.encodings([gallery_id])
    if len(found) == 0:
        raise ProblemError(
            409, f"gallery entry {gallery_id} has no comparator encoding for {ready.gallery.model_id}"
        )
    return encodings[0]


@router.post(
    "/verify",
    response_model=VerifyResponse,
    summary="Verify that two images show the same person",
    openapi_extra=openapi_body(VerifyRequest, ("image_a", "image_b")),
)
async def verify(request: Request, ready: ReadyDep) -> VerifyResponse:
    """Score a pair of images (or gallery ids) and decide 'same person' at the threshold."""
    t0 = time.perf_counter()
    body = await parse_body(request, VerifyRequest)
    metric, threshold, higher = resolve_metric(ready, body.metric, body.threshold)
    if threshold is None:  # an uncalibrated model (fresh import): no decision without a threshold
        raise ProblemError(
            422,
            f"model {ready.runtime.manifest.model_id} has no calibrated threshold for metric {metric!r}: "
            "pass `threshold` in the request, or calibrate the model on labelled data "
            "(reid calibrate --model DIR --root DATA)",
            title="Uncalibrated model",
        )
    images = [img for img in (body.image_a, body.image_b) if img is not None]
    fields = [name for name, img in (("image_a", body.image_a), ("image_b", body.image_b)) if img is not None]
    decode_ms = inference_ms = 0.0
    embedded: dict[str, np.ndarray] = {}
    encoded: dict[str, np.ndarray] = {}
    if images:  # both images go to the batcher together
        rows, decode_ms, inference_ms = await embed_images(ready, images, fields)
        emb, enc = ready.runtime.split(rows)
        embedded = dict(zip(fields, emb, strict=True))
        encoded = dict(zip(fields, enc, strict=True)) if enc is not None else {}
    a = (
        embedded["image_a"]
        if body.image_a is not None
        else _stored(ready, body.gallery_id_a or 0, "gallery_id_a")
    )
    b = (
        embedded["image_b"]
        if body.image_b is not None
        else _stored(ready, body.gallery_id_b or 0, "gallery_id_b")
    )
    t1 = time.perf_counter()
    if metric == "pairwise" and ready.runtime.pairwise is not None:  # through the comparator graph
        enc_a = encoded["image_a"] if body.image_a is not None else _encoding(ready, body.gallery_id_a or 0)
        enc_b = encoded["image_b"] if body.image_b is not None else _encoding(ready, body.gallery_id_b or 0)
        scores = await run_in_threadpool(ready.runtime.pairwise.compare, enc_a[None, :], enc_b[None, :])
        score = float(scores[0])
    elif metric == "softmax":  # through the verification head graph itself
        prob = await run_in_threadpool(ready.runtime.same_probability, a[None, :], b[None, :])
        score = float(prob[0])
    else:
        score = float(pair_scores(metric, a[None, :], b[None, :], ready.runtime.head_weights)[0])
    inference_ms += (time.perf_counter() - t1) * 1000.0
    return VerifyResponse(
        same_person=None if threshold is None else is_same(score, threshold, higher),
        score=score,
        metric=metric,  # type: ignore[arg-type]
        threshold=threshold,
        higher_is_better=higher,
        model=ready.runtime.manifest.model_id,
        timings=Timings(
            decode_ms=decode_ms, inference_ms=inference_ms, total_ms=(time.perf_counter() - t0) * 1000.0
        ),
    )
