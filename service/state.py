"""What the lifespan handler loads once and puts on ``app.state.service``: model, gallery, batcher, metrics.

Loading failures (bad manifest, checksum mismatch, ``device=cuda`` without CUDA, a head that disagrees with
its weights) keep the service live but not ready: ``/ready`` answers 503 with the reason, and the endpoints
that need the model answer 503 too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from service.config import Settings
from service.contract.manifest import ModelManifest, discover, load
from service.contract.preprocess import preprocess_bytes
from service.contract.scoring import SERVED_METRICS
from service.contract.scoring import get as get_metric
from service.core.operations import ReidService
from service.core.retention import RetentionTask
from service.gallery.dirlock import DataDirLockedError
from service.gallery.factory import create_gallery
from service.gallery.index import faiss_gpu_available
from service.gallery.protocol import GallerySpec, GalleryStore, GalleryUnavailableError
from service.inference.batching import MicroBatcher
from service.inference.executor import ModelExecutor
from service.inference.sessions import ModelRuntime
from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


def indexed_metrics(runtime: ModelRuntime) -> list[str]:
    """The served metrics the gallery keeps an index for with this model."""
    manifest = runtime.manifest

    def indexed(name: str) -> bool:
        metric = get_metric(name)
        if metric.needs_comparator:  # the descriptor shortlist index, re-ranked by the comparator
            return runtime.pairwise is not None
        if metric.needs_head:  # exact search needs the head's weights, and the manifest must allow it
            exact = manifest.verification is not None and manifest.verification.exact_search
            return name in manifest.scoring and runtime.head_weights is not None and exact
        return True

    return [name for name in SERVED_METRICS if indexed(name)]


def gallery_spec(runtime: ModelRuntime) -> GallerySpec:
    """What the model asks of the gallery: its indexed metrics, head weights and encoding length."""
    return GallerySpec(
        model_id=runtime.manifest.model_id,
        dim=runtime.manifest.embedding_dim,
        metrics=indexed_metrics(runtime),
        head=runtime.head_weights,
        encoding_dim=runtime.pairwise.encoding_dim if runtime.pairwise is not None else None,
    )


@dataclass
class ServiceState:
    """The loaded service.

    Attributes:
        settings: The settings the app was created with.
        metrics: The app's Prometheus metrics.
        manifests: Every model folder's manifest (or the error reading it), by folder name.
        runtime: The active model's sessions (None until loaded).
        gallery: The gallery (None until opened).
        batcher: The micro-batcher of the embedding model.
        executor: The one executor every model call runs on (batches, comparator, softmax head).
        operations: The service layer the routers call (None until ready).
        ready: True once model and gallery are loaded and warmed up.
        reason: Why the service is not ready.
        shutting_down: True from SIGTERM on (:meth:`begin_shutdown`); the service never turns ready again.
    """

    settings: Settings
    metrics: ServiceMetrics
    manifests: dict[str, ModelManifest | str] = field(default_factory=dict)
    runtime: ModelRuntime | None = None
    gallery: GalleryStore | None = None
    batcher: MicroBatcher | None = None
    executor: ModelExecutor | None = None
    operations: ReidService | None = None
    ready: bool = False
    reason: str = "starting"
    faiss_gpu: bool = False
    startup: dict[str, Any] = field(default_factory=dict)
    shutting_down: bool = False
    _reconnecting: asyncio.Task[None] | None = None
    retention: RetentionTask | None = None

    def _active_folder(self) -> str:
        folders = discover(self.settings.models_dir)
        names = [p.name for p in folders]
        if self.settings.model is not None:
            if self.settings.model not in names:
                raise ValueError(
                    f"REID_MODEL={self.settings.model!r} is not a model folder under "
                    f"{self.settings.models_dir} "
                    f"(found: {', '.join(names) or 'none'})"
                )
            return self.settings.model
        if not names:
            raise ValueError(f"no model folder with a manifest.json under {self.settings.models_dir}")
        return "demo-siamese" if "demo-siamese" in names else names[0]

    def _load_sync(self) -> None:
        t0 = time.perf_counter()
        if self.runtime is None:  # a retry after an unreachable shared gallery keeps the loaded model
            self._load_model()
        self._open_gallery()
        self.startup["seconds"] = round(self.startup.get("seconds", 0.0) + time.perf_counter() - t0, 3)

    def _load_model(self) -> None:
        for folder in discover(self.settings.models_dir):
            try:
                self.manifests[folder.name] = load(folder, verify_checksums=False)
            except ValueError as exc:
                self.manifests[folder.name] = str(exc)
        name = self._active_folder()
        runtime = ModelRuntime.load(
            self.settings.models_dir / name,
            device=self.settings.device,
            intra_op_threads=self.settings.intra_op_threads,
        )
        self.startup["head_check_max_abs_diff"] = runtime.warm_up() if self.settings.warmup else 0.0
        self.runtime = runtime

    def _open_gallery(self) -> None:
        runtime = self.runtime
        assert runtime is not None
        if self.settings.faiss_threads > 0:
            faiss.omp_set_num_threads(self.settings.faiss_threads)
        self.faiss_gpu = self.settings.device != "cpu" and faiss_gpu_available()
        gallery = create_gallery(self.settings, gallery_spec(runtime), use_gpu=self.faiss_gpu)
        gallery.open()
        self.gallery = gallery
        self._reembed_missing(runtime, gallery)
        self.metrics.gallery_size.set(gallery.size)
        self.startup["indexes_rebuilt"] = gallery.rebuilt

    def _reembed_missing(self, runtime: ModelRuntime, gallery: GalleryStore) -> None:
        missing = gallery.missing_embeddings()
        if not missing:
            return
        with_image = [i for i, has in missing if has]
        if len(with_image) < len(missing):
            logger.warning(
                "%d gallery entries have no embedding for %s and no stored image (REID_STORE_IMAGES off): "
                "they cannot be re-embedded and are not searchable with this model; re-enrol them",
                len(missing) - len(with_image),
                gallery.model_id,
            )
            self.startup["not_searchable"] = len(missing) - len(with_image)
        spec = runtime.spec
        for start in range(0, len(with_image), self.settings.max_batch):
            ids = with_image[start : start + self.settings.max_batch]
            batch = np.stack(
                [
                    preprocess_bytes(gallery.image(i) or b"", spec, max_pixels=self.settings.max_pixels)
                    for i in ids
                ]
            )
            gallery.set_embeddings(ids, *runtime.split(runtime.embed(batch)))
        if with_image:
            logger.info("re-embedded %d stored images with %s", len(with_image), gallery.model_id)

    async def start(self) -> None:
        """Load everything (off the event loop); on failure stay live but not ready with the reason.

        Raises:
            DataDirLockedError: Another process holds the data dir (this one must exit, not wait).
        """
        try:
            await asyncio.to_thread(self._load_sync)
        except DataDirLockedError:  # not a reason to wait: this process must not serve that gallery
            raise
        except GalleryUnavailableError as exc:  # a shared gallery not reachable yet: live, retrying
            self.reason = f"{type(exc).__name__}: {exc}"
            logger.error("service not ready: %s (retrying)", self.reason)
            self._reconnecting = asyncio.create_task(self._reconnect())
            return
        except Exception as exc:  # any load failure: the reason goes to /ready, the process stays up
            self.reason = f"{type(exc).__name__}: {exc}"
            logger.error("service not ready: %s", self.reason)
            return
        self._serve()

    async def _reconnect(self) -> None:
        """Open the shared gallery again until it answers, then turn ready (no restart needed)."""
        while not self.shutting_down:
            await asyncio.sleep(self.settings.retry_after_s)
            try:
                await asyncio.to_thread(self._load_sync)
            except GalleryUnavailableError as exc:
                self.reason = f"{type(exc).__name__}: {exc}"
                continue
            except Exception as exc:
                self.reason = f"{type(exc).__name__}: {exc}"
                logger.error("service not ready: %s", self.reason)
                return
            logger.info("the shared gallery answers again")
            self._serve()
            return

    def _serve(self) -> None:
        """Start the executor and batcher over the loaded model and gallery, and turn ready."""
        assert self.runtime is not None
        self.executor = ModelExecutor(workers=self.settings.inference_workers)
        self.batcher = MicroBatcher(
            self.runtime.embed,
            max_batch=self.settings.max_batch,
            max_wait_ms=self.settings.max_wait_ms,
            queue_size=self.settings.queue_size,
            metrics=self.metrics,
            executor=self.executor,
        )
        self.batcher.start()
        assert self.gallery is not None
        self.operations = ReidService(
            runtime=self.runtime,
            gallery=self.gallery,
            batcher=self.batcher,
            executor=self.executor,
            settings=self.settings,
            metrics=self.metrics,
        )
        if self.settings.retention_hours is not None:
            self.retention = RetentionTask(
                self.gallery,
                self.settings.retention_hours,
                self.settings.retention_check_s,
                self.metrics,
                faiss_threads=self.settings.faiss_threads,
            )
            self.retention.start()
        if self.shutting_down:  # SIGTERM arrived while loading: never report ready
            return
        self.ready = True
        self.reason = "ready"
        logger.info("service ready: model %s on %s", self.runtime.manifest.model_id, self.runtime.provider)

    def begin_shutdown(self) -> None:
        """SIGTERM arrived: stop taking new work (``/ready`` and new requests answer 503); requests already
        past the readiness check finish, and :meth:`stop` snapshots the gallery once they are done."""
        if self.ready:
            logger.info("shutting down: /ready and new requests answer 503, in-flight requests finish")
        self.shutting_down = True
        self.ready = False
        self.reason = "shutting down"

    async def stop(self) -> None:
        """Answer every pending model call with 503, then snapshot and close the gallery."""
        self.ready = False
        self.reason = "shutting down"
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.retention is not None:
            await self.retention.stop()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.executor is not None:
            self.executor.shutdown()
        if self.gallery is not None:
            await asyncio.to_thread(self.gallery.close)
