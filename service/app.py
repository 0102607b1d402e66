"""The FastAPI app factory and its lifespan.

``create_app(settings)`` builds the app; the lifespan loads the model(s) and the gallery once onto
``app.state.service`` and warms up before ``/ready`` says ready. Nothing is loaded at import time, and the
``service`` package never imports torch. Run it with ``reid serve`` or
``uvicorn --factory service.app:create_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service import __version__
from service.api import embeddings, gallery, health, search, verify
from service.api.deps import verify_api_key
from service.api.errors import install_error_handlers, problem_responses
from service.api.limits import BodySizeLimitMiddleware
from service.api.lingering import LingeringCloseMiddleware
from service.api.openapi import install_openapi
from service.config import Settings, get_settings
from service.metrics import RequestMetricsMiddleware, ServiceMetrics
from service.state import ServiceState
from service.ui.router import mount_console

logger = logging.getLogger(__name__)

DESCRIPTION = """Person re-identification: verify pairs, search a gallery, manage enrolments.

Images go in as multipart file parts or base64 strings in JSON (JPEG, PNG, WebP, BMP). Errors are RFC 9457
`application/problem+json`. When `REID_API_KEYS` is set, send a key in `X-API-Key` (all endpoints but
`/health`). The operator console is at `/ui` (off with `REID_UI=false`)."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load model and gallery once, warm up, serve, then snapshot and close."""
    service: ServiceState = app.state.service
    if not service.settings.api_keys:
        logger.warning(
            "REID_API_KEYS is not set: authentication is off and every endpoint is open to anyone who can "
            "reach this port; set REID_API_KEYS before exposing it beyond 127.0.0.1"
        )
    await service.start()
    try:
        yield
    finally:
        await service.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service app.

    Args:
        settings: Explicit settings (tests); default: :func:`service.config.get_settings` (environment).
    """
    settings = settings or get_settings()
    metrics = ServiceMetrics()
    app = FastAPI(
        title="ReID Service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = ServiceState(settings=settings, metrics=metrics)
    install_error_handlers(app)
    protected = [Depends(verify_api_key)]
    app.include_router(health.open_router)
    app.include_router(health.router, dependencies=protected, responses=problem_responses(401))
    errors = problem_responses(400, 401, 404, 409, 413, 415, 422, 503)  # every error is problem+json
    for module in (verify, search, embeddings, gallery):
        app.include_router(module.router, dependencies=protected, responses=errors)
    install_openapi(app, max_images=settings.max_images_per_request, max_boxes=settings.max_boxes_per_request)
    if settings.ui:
        mount_console(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_middleware(LingeringCloseMiddleware)  # outermost: drains after the answer and the metrics
    return app
