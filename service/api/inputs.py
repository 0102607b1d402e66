"""Request bodies from JSON or multipart forms, and images → embeddings through the micro-batcher."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import faiss
import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from service.api.deps import Ready
from service.api.errors import ProblemError, image_error
from service.contract.manifest import HIGHER_IS_BETTER
from service.contract.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessSpec,
    preprocess_bytes,
)
from service.inference.batching import BatcherStoppedError, QueueFullError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
_MEDIA = "send multipart/form-data (image files) or application/json (base64 images)"


def openapi_body(model: type[BaseModel], file_fields: tuple[str, ...]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that may be JSON (base64 images) or multipart (files)."""
    json_schema = model.model_json_schema()
    form = json.loads(json.dumps(json_schema))
    for name in file_fields:
        prop = form["properties"].get(name)
        if prop is None:
            continue
        binary = {"type": "string", "format": "binary"}
        if prop.get("type") == "array":
            prop["items"] = binary
        elif "anyOf" in prop:
            prop["anyOf"] = [binary, {"type": "null"}]
        else:
            prop.update(binary)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": json_schema}, "multipart/form-data": {"schema": form}},
        }
    }


async def parse_body(
    request: Request, model: type[M], list_fields: tuple[str, ...] = (), max_files: int = 1024
) -> M:
    """Validate a JSON or multipart body into ``model``.

    Raises:
        ProblemError: 415 for other media types, 400 for malformed JSON or multipart.
        RequestValidationError: Fields that fail validation (answered as 422).
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    data: Any
    if media == "application/json" or media.endswith("+json"):
        body = await request.body()
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProblemError(400, f"the body is not valid JSON: {exc}", title="Malformed JSON") from None
        except RecursionError:
            raise ProblemError(400, "the JSON body is nested too deeply", title="Malformed JSON") from None
        if not isinstance(data, dict):
            raise ProblemError(422, f"the JSON body must be an object, got {type(data).__name__}")
    elif media == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files, max_fields=256)
        except MultiPartException as exc:
            raise ProblemError(
                400, f"malformed multipart body: {exc.message}", title="Malformed multipart"
            ) from None
        if not form:  # RFC 2046 needs at least one part; a lost or unterminated part also ends up here
            await form.close()
            raise ProblemError(
                400,
                "malformed multipart body: no complete part found (check the boundary parameter and the "
                "closing --boundary-- line)",
                title="Malformed multipart",
            )
        try:
            data = {}
            for key in dict.fromkeys(form.keys()):
                values = [await v.read() if isinstance(v, UploadFile) else v for v in form.getlist(key)]
                target = "images" if key == "image" and "images" in list_fields else key
                if target in list_fields:
                    data.setdefault(target, []).extend(values)
                else:
                    data[target] = values[-1]
        finally:
            await form.close()
    else:
        shown = media or "none"
        raise ProblemError(
            415, f"unsupported content type {shown!r}: {_MEDIA}", title="Unsupported Media Type"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None


_POOLS: dict[str, ThreadPoolExecutor] = {}


def run_in_worker(call: Callable[[], T], pool: str = "decode") -> Awaitable[T]:
    """Run CPU-bound request work on a named pool (``decode``, ``index``) of one thread per core.

    Not Starlette's ``run_in_threadpool``: its 40 threads let 32 concurrent requests decode at once, so on
    a small CPU every image finishes late (time-sliced, fighting over the GIL) and reaches the batcher in
    bursts; a pool the size of the CPU decodes first come, first served, and an asyncio executor hop costs
    less than anyio's (capacity limiter, cancel scope). Searches get their own pool so that they never wait
    behind queued decodes.
    """
    executor = _POOLS.get(pool)
    if executor is None:
        executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix=f"reid-{pool}")
        _POOLS[pool] = executor
    return asyncio.get_running_loop().run_in_executor(executor, call)


def _preprocess_all(
    images: list[bytes], spec: PreprocessSpec, max_pixels: int, names: list[str]
) -> list[np.ndarray]:
    arrays = []
    for data, name in zip(images, names, strict=True):
        try:
            arrays.append(preprocess_bytes(data, spec, max_pixels=max_pixels))
        except (ImageDecodeError, ImageTooLargeError) as exc:
            raise image_error(exc, name) from None
    return arrays


async def embed_images(
    ready: Ready, images: list[bytes], field: str | list[str]
) -> tuple[np.ndarray, float, float]:
    """Decode, preprocess and embed images; returns (embeddings (N, D), decode ms, inference ms).

    Args:
        ready: The loaded service.
        images: Encoded images.
        field: The request field holding the images (errors say ``field[i]``), or one name per image.

    Raises:
        ProblemError: 400/413 for a bad image (the field is named), 413 for too many images, 503 when the
            inference queue is full (with ``Retry-After``).
    """
    settings = ready.state.settings
    if len(images) > settings.max_images_per_request:
        raise ProblemError(
            413,
            f"{len(images)} images in one request, above the limit of {settings.max_images_per_request} "
            "(REID_MAX_IMAGES_PER_REQUEST)",
            title="Too many images",
        )
    batcher = ready.batcher
    if batcher.depth + len(images) > batcher.queue_size:  # overloaded: shed the request before decoding
        if batcher.metrics is not None:
            batcher.metrics.queue_rejections.inc(len(images))
        raise ProblemError(
            503,
            f"the inference queue is full ({batcher.depth} of {batcher.queue_size} images waiting); "
            f"retry after {settings.retry_after_s} s",
            title="Service Unavailable",
            headers={"Retry-After": str(settings.retry_after_s)},
        )
    t0 = time.perf_counter()
    names = field if isinstance(field, list) else [f"{field}[{i}]" for i in range(len(images))]
    ready.batcher.announce(len(images))  # concurrent batches wait for these while they decode
    try:
        spec = ready.runtime.spec
        decode = functools.partial(_preprocess_all, images, spec, settings.max_pixels, names)
        arrays = await run_in_worker(decode)
    except BaseException:
        ready.batcher.withdraw(len(images))
        raise
    t1 = time.perf_counter()
    try:
        embeddings = await ready.batcher.submit(arrays, announced=True)
    except (QueueFullError, BatcherStoppedError) as exc:
        raise ProblemError(
            503,
            f"{exc}; retry after {settings.retry_after_s} s",
            title="Service Unavailable",
            headers={"Retry-After": str(settings.retry_after_s)},
        ) from None
    return embeddings, (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0


async def run_index_call(ready: Ready, call: Callable[[], T]) -> T:
    """Run a faiss call (search, add, remove) in a worker thread with the service's faiss thread count.

    OpenMP's thread count is a per-thread setting: ``faiss.omp_set_num_threads`` at start-up only reaches the
    thread that made the call, and a thread-pool worker would search with one OpenMP thread per core (on
    shared cores, 16 ms instead of 0.5 ms for one 10 k × 512 query). So the worker sets it before each call.
    """
    threads = ready.state.settings.faiss_threads

    def with_threads() -> T:
        if threads > 0:
            faiss.omp_set_num_threads(threads)
        return call()

    return await run_in_worker(with_threads, pool="index")


def resolve_metric(
    ready: Ready, metric: str | None, threshold: float | None
) -> tuple[str, float | None, bool]:
    """The metric (default: the manifest's), its threshold (request or calibrated) and its direction.

    Raises:
        ProblemError: 422 when the metric is not available for the active model.
    """
    manifest = ready.runtime.manifest
    name = metric or manifest.default_metric
    available = ready.gallery.metrics
    if name not in available:
        raise ProblemError(
            422, f"metric {name!r} is not available for model {manifest.model_id}; choose one of {available}"
        )
    if threshold is None and name in manifest.scoring:
        threshold = manifest.scoring[name].default_value()
    return name, threshold, HIGHER_IS_BETTER[name]
