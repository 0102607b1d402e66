"""Dependencies shared by the routers, with ``Annotated`` aliases.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, which for these
few attribute reads would cost four thread hops per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.api.errors import ProblemError
from service.config import Settings
from service.core.operations import ReidService
from service.state import ServiceState


async def get_service(request: Request) -> ServiceState:
    """The loaded service state of this app."""
    service: ServiceState = request.app.state.service
    return service


async def get_app_settings(request: Request) -> Settings:
    """The settings this app was created with."""
    settings: Settings = request.app.state.settings
    return settings


ServiceDep = Annotated[ServiceState, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def verify_api_key(request: Request, settings: SettingsDep) -> None:
    """Require a valid key in ``X-API-Key`` or ``Authorization: Bearer`` when ``REID_API_KEYS`` is set.

    Every configured key is compared in constant time (``hmac.compare_digest``), all of them every time.
    """
    if not settings.api_keys:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given:
        raise ProblemError(
            401,
            "missing API key: send it in the X-API-Key header (or Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    supplied = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(supplied, key.encode("utf-8"))
    if not matched:
        raise ProblemError(401, "invalid API key", headers={"WWW-Authenticate": "ApiKey"})


async def require_ready(service: ServiceDep) -> ReidService:
    """The service layer over the loaded model and gallery; 503 with the reason while not ready."""
    if not service.ready or service.operations is None:
        raise ProblemError(
            503,
            f"the service is not ready: {service.reason}",
            title="Service not ready",
            headers={"Retry-After": str(service.settings.retry_after_s)},
        )
    return service.operations


ReidDep = Annotated[ReidService, Depends(require_ready)]
