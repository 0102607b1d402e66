"""Prometheus metrics, one registry per app (so several apps in one process do not collide)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The service's metrics: requests, latencies, batch sizes, queue depth, gallery size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "reid_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "reid_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "reid_batch_size", "Images per inference batch.", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.inference_latency = Histogram(
            "reid_inference_duration_seconds",
            "Model run time per batch.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("reid_queue_depth", "Images waiting for inference.", registry=self.registry)
        self.active_requests = 0  # HTTP requests being answered (RequestMetricsMiddleware), for the batcher
        self.queue_rejections = Counter(
            "reid_queue_rejections", "Images refused because the queue was full.", registry=self.registry
        )
        self.gallery_size = Gauge("reid_gallery_size", "Entries in the gallery.", registry=self.registry)
        self.erased = Counter(
            "reid_erased_entries",
            "Gallery entries erased by retention (REID_RETENTION_HOURS) or DELETE /gallery?created_before.",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("retention", "created_before"):  # exported at 0 before the first erase
            self.erased.labels(reason=reason)
        self.retention_last_sweep = Gauge(
            "reid_retention_last_sweep_timestamp_seconds",
            "UNIX time of the last retention sweep (0: none yet).",
            registry=self.registry,
        )


class RequestMetricsMiddleware:
    """Pure ASGI middleware that counts requests and observes their latency by route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.active_requests += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.active_requests -= 1
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(route=name, method=scope["method"], status=str(status["code"])).inc()
            self.metrics.request_latency.labels(route=name).observe(time.perf_counter() - start)
