"""Service settings, read from ``REID_*`` environment variables (pydantic-settings).

Nothing is created at import time: :func:`get_settings` builds the settings on first use and caches them, and
:func:`service.app.create_app` accepts an explicit :class:`Settings` (tests pass one).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

C = TypeVar("C")

Device = Literal["auto", "cuda", "cpu"]
IndexType = Literal["flat", "ivf", "hnsw"]
GalleryKind = Literal["embedded", "milvus"]


class Settings(BaseSettings):
    """Every knob of the service; each one can be set as ``REID_<NAME>`` in the environment."""

    # An empty REID_X means "unset" (compose passes ${REID_X:-} through as an empty string).
    model_config = SettingsConfigDict(
        env_prefix="REID_", extra="ignore", protected_namespaces=(), env_ignore_empty=True
    )

    models_dir: Path = Field(default=Path("models"), description="Folder holding one sub-folder per model.")
    model: str | None = Field(
        default=None,
        description="Active model folder name; default: 'demo-siamese' if present, else the first one.",
    )
    data_dir: Path = Field(default=Path("data/service"), description="Gallery database and index snapshots.")
    gallery: GalleryKind = Field(
        default="embedded",
        description="Gallery store: embedded (SQLite + FAISS in this process, one worker) | milvus (a shared "
        "Milvus server: several workers and replicas).",
    )
    milvus_uri: str = Field(
        default="http://localhost:19530",
        description="REID_GALLERY=milvus: the Milvus server (http://host:port).",
    )
    milvus_token: str = Field(
        default="", description="REID_GALLERY=milvus: 'user:password' or an API key ('' without auth)."
    )
    milvus_db: str = Field(
        default="default",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="REID_GALLERY=milvus: database (created when missing).",
    )
    milvus_collection_prefix: str = Field(
        default="reid",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$",
        description="REID_GALLERY=milvus: prefix of the gallery's collection names (one gallery per prefix).",
    )
    milvus_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="REID_GALLERY=milvus: timeout of one Milvus call, in seconds."
    )
    device: Device = Field(default="auto", description="auto | cuda | cpu (onnxruntime provider and faiss).")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys; empty disables authentication."
    )
    max_upload_mb: float = Field(default=20.0, gt=0, le=1024, description="Largest request body, in MiB.")
    max_pixels: int = Field(default=25_000_000, ge=64, description="Largest image width × height.")
    max_images_per_request: int = Field(default=64, ge=1, le=1024, description="Images in one request.")
    max_boxes_per_request: int = Field(
        default=64, ge=1, le=1024, description="Person boxes in one frame + boxes request."
    )
    retention_hours: float | None = Field(
        default=None,
        gt=0,
        le=24 * 365 * 100,
        description="Erase gallery entries older than this many hours (a background task, checked every "
        "REID_RETENTION_CHECK_S); unset keeps entries until deleted.",
    )
    retention_check_s: float = Field(
        default=60.0, ge=0.1, le=86400, description="Seconds between two retention sweeps."
    )
    shortlist: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Pairwise models: gallery entries shortlisted by descriptor and re-ranked by the "
        "comparator per query (default: the manifest's pairwise.shortlist, 100).",
    )
    index_type: IndexType = Field(default="flat", description="FAISS index: flat (exact) | ivf | hnsw.")
    ivf_nlist: int = Field(default=256, ge=1, description="IVF cells (capped by the gallery size).")
    ivf_nprobe: int = Field(default=16, ge=1, description="IVF cells visited per query.")
    hnsw_m: int = Field(default=32, ge=4, le=128, description="HNSW neighbours per node.")
    hnsw_ef_search: int = Field(default=128, ge=8, description="HNSW search breadth.")
    max_batch: int = Field(default=32, ge=1, le=1024, description="Largest inference batch (1 disables).")
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000, description="Longest wait to fill a batch.")
    queue_size: int = Field(default=512, ge=1, description="Images waiting for inference before 503.")
    inference_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Model calls (embedding batches, comparator, softmax head) that run at once; every "
        "model call shares this one budget.",
    )
    retry_after_s: int = Field(
        default=1,
        ge=1,
        description="Retry-After sent with 503 (queue full, shared gallery unreachable); also how often an "
        "unreachable shared gallery is retried at start.",
    )
    store_images: bool = Field(
        default=False, description="Keep enrolled image bytes in the gallery database."
    )
    ui: bool = Field(
        default=True,
        description="Serve the operator console at /ui (static files; it calls the public API with the key "
        "the operator types).",
    )
    snapshot_every: int = Field(default=100, ge=1, description="Gallery writes between index snapshots.")
    intra_op_threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0: default).")
    faiss_threads: int = Field(
        default=1, ge=0, description="OpenMP threads for FAISS (0: all cores; 1 avoids contention)."
    )
    warmup: bool = Field(default=True, description="Run a warm-up inference before reporting ready.")
    shutdown_drain_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="On SIGTERM, keep listening this long with /ready and new work answering 503 (lets a "
        "load balancer notice) before closing the listener.",
    )
    graceful_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="After the listener closes, how long in-flight requests may take before they are "
        "cancelled (uvicorn timeout_graceful_shutdown); the gallery snapshot is written after.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @property
    def max_upload_bytes(self) -> int:
        """The body limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    def section(self, config: type[C], prefix: str = "", **given: Any) -> C:
        """A component's config dataclass from the settings named ``prefix`` + its field names (e.g.
        ``MilvusConfig`` from ``milvus_*``); ``given`` fills fields the settings do not hold."""
        names = [f.name for f in dataclasses.fields(config) if f.name not in given]  # type: ignore[arg-type]
        return config(**{name: getattr(self, prefix + name) for name in names}, **given)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
