"""``reid serve``: run the REST service with uvicorn on the app factory. Torch-free.

Settings come from ``REID_*`` environment variables; the flags here override the most common ones.

Shutdown on SIGTERM (``docker stop``): ``/ready`` and new requests answer 503 at once; after
``REID_SHUTDOWN_DRAIN_S`` the listener closes, in-flight requests get up to ``REID_GRACEFUL_TIMEOUT_S`` to
finish, then the lifespan writes the gallery snapshot and the process exits 0.

One process per data dir: ``REID_DATA_DIR/reid.lock`` is locked at start (:mod:`service.gallery.dirlock`); a
second ``reid serve`` on the same dir exits 1 with one line naming the holder's pid. ``--workers N`` (several
processes on one port) needs the shared gallery, ``REID_GALLERY=milvus``; with it, SIGTERM goes to uvicorn's
supervisor, which stops each worker gracefully (``REID_SHUTDOWN_DRAIN_S`` applies to one worker only).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

HELP = "run the REST service"
DESCRIPTION = (
    "Serve /verify, /search, /embeddings and /gallery with uvicorn (OpenAPI docs at /docs). Every setting "
    "can also be given as a REID_* environment variable (REID_MODELS_DIR, REID_MODEL, REID_DATA_DIR, "
    "REID_DEVICE, REID_API_KEYS, REID_MAX_UPLOAD_MB, REID_INDEX_TYPE, REID_MAX_BATCH, REID_MAX_WAIT_MS, "
    "REID_SHUTDOWN_DRAIN_S, REID_GRACEFUL_TIMEOUT_S, REID_MAX_BOXES_PER_REQUEST, REID_RETENTION_HOURS …). "
    "One process per data dir: a second `reid serve` on the same REID_DATA_DIR exits 1 naming the holder's "
    "pid; --workers N needs REID_GALLERY=milvus. Without REID_API_KEYS the service is open "
    "(it says so at start-up)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``reid serve``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--models-dir", type=Path, default=None, help="model repository (REID_MODELS_DIR)")
    parser.add_argument("--model", default=None, help="active model folder name (REID_MODEL)")
    parser.add_argument("--data-dir", type=Path, default=None, help="gallery data folder (REID_DATA_DIR)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default=None, help="REID_DEVICE")
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=None,
        help="seconds in-flight requests may take after SIGTERM (REID_GRACEFUL_TIMEOUT_S, default 20)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=None,
        help="seconds to keep answering 503 on /ready before closing the listener (REID_SHUTDOWN_DRAIN_S)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on one port, each loading the model once and batching on its own; more than "
        "1 needs the shared gallery (REID_GALLERY=milvus): the embedded one lives in one process",
    )


def run(args: argparse.Namespace) -> int:
    """Start uvicorn; returns when the server stops."""
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    overrides = {
        "REID_MODELS_DIR": args.models_dir,
        "REID_MODEL": args.model,
        "REID_DATA_DIR": args.data_dir,
        "REID_DEVICE": args.device,
        "REID_GRACEFUL_TIMEOUT_S": args.graceful_timeout,
        "REID_SHUTDOWN_DRAIN_S": args.drain,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    # faiss's OpenMP threads (REID_FAISS_THREADS > 1) sleep between searches instead of spinning for the
    # cores the event loop, the decoders and onnxruntime share; read when OpenMP loads, so before faiss does
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from service.app import create_app
    from service.config import Settings
    from service.gallery import dirlock
    from service.gallery.factory import STORES

    # uvicorn shuts down gracefully on SIGTERM (lifespan: gallery snapshot) and then re-raises the signal into
    # the handler that was installed before it; make that one a clean exit so supervisors see status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    settings = Settings()  # validate the environment before binding: a bad REID_* value is one error line
    store = STORES.get(settings.gallery)
    if args.workers > 1 and not store.shared:
        shared = " | ".join(kind.name for kind in STORES.values() if kind.shared)
        print(
            f"reid serve: error: --workers {args.workers} needs a gallery shared by every process "
            f"(REID_GALLERY={shared}, see README 'Scale out'): the {store.name} gallery lives in one process",
            file=sys.stderr,
        )
        return 1
    if args.workers > 1:  # uvicorn's supervisor: each worker builds its own app from the environment
        _show_service_logs(args.log_level)
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=settings.graceful_timeout_s,  # type: ignore[arg-type]
        )
        return 0
    try:  # before loading anything: a second process on this data dir exits at once (held until exit)
        if store.in_data_dir:
            dirlock.acquire(settings.data_dir)
    except dirlock.DataDirLockedError as exc:
        print(f"reid serve: error: {exc}", file=sys.stderr)
        return 1
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        # annotated int | None, but only passed to asyncio.wait_for: fractional seconds work
        timeout_graceful_shutdown=settings.graceful_timeout_s,  # type: ignore[arg-type]
    )
    _show_service_logs(args.log_level)
    service = app.state.service
    server = _make_server(
        uvicorn.Server, config, on_shutdown=service.begin_shutdown, drain_s=settings.shutdown_drain_s
    )
    server.run()
    return 0


def _make_server(base: type, config: Any, *, on_shutdown: Callable[[], None], drain_s: float) -> Any:
    """A uvicorn server that marks the service as shutting down on the first SIGTERM/SIGINT and, with
    ``drain_s`` > 0, keeps the listener open that long (answering 503) before uvicorn's graceful shutdown."""

    class DrainingServer(base):
        drain_deadline: float | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            on_shutdown()
            if sig == signal.SIGTERM and drain_s > 0 and self.drain_deadline is None:
                self.drain_deadline = time.monotonic() + drain_s  # on_tick ends the serving loop later
                return
            super().handle_exit(sig, frame)  # a second signal (or no drain) stops at once

        async def on_tick(self, counter: int) -> bool:
            if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
                self.should_exit = True
            return bool(await super().on_tick(counter))

    return DrainingServer(config)


def _show_service_logs(level: str) -> None:
    """Print the ``service`` loggers' records (start-up facts, the no-API-key warning) like uvicorn's own."""
    from uvicorn.logging import DefaultFormatter

    log = logging.getLogger("service")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
        log.addHandler(handler)
        log.setLevel(level.upper())
        log.propagate = False


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
