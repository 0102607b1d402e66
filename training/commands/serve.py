"""``reid serve``: run the REST service with uvicorn on the app factory. Torch-free.

Settings come from ``REID_*`` environment variables; the flags here override the most common ones.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

HELP = "run the REST service"
DESCRIPTION = (
    "Serve /verify, /search, /embeddings and /gallery with uvicorn (OpenAPI docs at /docs). Every setting "
    "can also be given as a REID_* environment variable (REID_MODELS_DIR, REID_MODEL, REID_DATA_DIR, "
    "REID_DEVICE, REID_API_KEYS, REID_MAX_UPLOAD_MB, REID_INDEX_TYPE, REID_MAX_BATCH, REID_MAX_WAIT_MS …)."
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
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )


def run(args: argparse.Namespace) -> int:
    """Start uvicorn; returns when the server stops."""
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    overrides = {
        "REID_MODELS_DIR": args.models_dir,
        "REID_MODEL": args.model,
        "REID_DATA_DIR": args.data_dir,
        "REID_DEVICE": args.device,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    import uvicorn

    from service.config import Settings

    # uvicorn shuts down gracefully on SIGTERM (lifespan: gallery snapshot) and then re-raises the signal into
    # the handler that was installed before it; make that one a clean exit so supervisors see status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    Settings()  # validate the environment before binding: a bad REID_* value is one clear error line
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
