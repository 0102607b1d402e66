"""``/health`` (open), ``/ready``, ``/models`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import ServiceDep
from service.api.errors import PROBLEM_JSON, Problem, problem_response
from service.api.responses import (
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    ReadyResponse,
    calibration_state,
)
from service.contract.manifest import ModelManifest

open_router = APIRouter(tags=["health"])
router = APIRouter(tags=["health"])


@open_router.get("/health", response_model=HealthResponse, summary="Liveness")
async def health() -> HealthResponse:
    """200 while the process serves requests (no API key needed)."""
    return HealthResponse(status="ok")


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness",
    responses={
        503: {
            "description": "Not ready; `reason` says why (problem details with the readiness fields).",
            "content": {PROBLEM_JSON: {"schema": {"allOf": [Problem.model_json_schema(),
                                                              ReadyResponse.model_json_schema()]}}},
        }
    },
)
async def ready(service: ServiceDep) -> JSONResponse:
    """200 when the model and gallery are loaded and warmed up, else 503 problem+json with the reason."""
    runtime, gallery = service.runtime, service.gallery
    body = ReadyResponse(
        ready=service.ready,
        reason=service.reason,
        model=runtime.manifest.model_id if runtime else None,
        kind=runtime.kind if runtime else None,
        provider=runtime.provider if runtime else None,
        faiss_gpu=service.faiss_gpu,
        gallery_size=gallery.size if gallery else None,
        metrics=gallery.metrics if gallery else [],
        **(_calibration(runtime.manifest) if runtime else {}),
        startup=service.startup,
    )
    if service.ready:
        return JSONResponse(body.model_dump())
    return problem_response(
        503,
        f"the service is not ready: {service.reason}",
        title="Service not ready",
        instance="/ready",
        headers={"Retry-After": str(service.settings.retry_after_s)},
        extra=body.model_dump(),
    )


@router.get("/models", response_model=ModelsResponse, summary="Model folders and the active provider")
async def models(service: ServiceDep) -> ModelsResponse:
    """Every model folder's manifest (or why it is invalid), the active model and its provider."""
    runtime = service.runtime
    active_folder = runtime.folder.name if runtime else None
    infos = [
        ModelInfo(
            name=name,
            kind=None if isinstance(m, str) else m.kind,
            active=name == active_folder,
            manifest=None if isinstance(m, str) else m.model_dump(mode="json"),
            error=m if isinstance(m, str) else None,
            **({} if isinstance(m, str) else _calibration(m)),
        )
        for name, m in sorted(service.manifests.items())
    ]
    return ModelsResponse(
        active=runtime.manifest.model_id if runtime else None,
        kind=runtime.kind if runtime else None,
        provider=runtime.provider if runtime else None,
        models=infos,
    )


def _calibration(manifest: ModelManifest) -> dict[str, Any]:
    return {
        "calibration": calibration_state(manifest.uncalibrated, len(manifest.scoring)),
        "uncalibrated_metrics": manifest.uncalibrated,
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    """Requests, latency histograms, batch sizes, queue depth and gallery size, in Prometheus text format."""
    if service.batcher is not None:
        service.metrics.queue_depth.set(service.batcher.depth)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
