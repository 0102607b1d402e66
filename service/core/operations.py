"""The service object: embed, enrol, search, verify, list, read, delete and erase, free of HTTP.

:class:`ReidService` holds the loaded model, the gallery store (any :class:`GalleryStore`), the micro-batcher
and the model executor. Every blocking step runs off the event loop: decoding on the ``decode`` pool, gallery
calls (SQLite, FAISS, a remote store) on the ``index`` pool, model calls on the one model executor. Errors
are those of :mod:`service.core.errors` (plus the batcher's and the executor's 503s).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from service.config import Settings
from service.contract.scoring import ServedMetric, higher_is_better, pair_scores
from service.contract.scoring import get as get_metric
from service.core.boxes import item_preparer
from service.core.errors import (
    MetricUnavailableError,
    NoEmbeddingError,
    NotFoundError,
    UncalibratedError,
)
from service.core.queries import SearchQuery
from service.core.results import (
    Changed,
    Embedded,
    Hit,
    PersonHit,
    Ranking,
    Scoring,
    StoredImage,
    Timings,
    Verdict,
)
from service.core.workers import run_in_worker, run_index_call
from service.gallery.protocol import GalleryEntry, GalleryStore, Match, NewEntry, VectorQuery
from service.gallery.ranking import PersonMatch, entry_search, rank_persons
from service.inference.batching import MicroBatcher, QueueFullError
from service.inference.executor import ModelExecutor
from service.inference.sessions import ModelRuntime
from service.metrics import ServiceMetrics

T = TypeVar("T")


@dataclass(eq=False, kw_only=True)
class ReidService:
    """What the service does with a loaded model and gallery.

    Attributes:
        runtime: The active model's sessions.
        gallery: The gallery store.
        batcher: The micro-batcher of the embedding model.
        executor: The one executor of every model call.
        settings: The service settings.
        metrics: The service's Prometheus metrics.
    """

    runtime: ModelRuntime
    gallery: GalleryStore
    batcher: MicroBatcher
    executor: ModelExecutor
    settings: Settings
    metrics: ServiceMetrics

    @property
    def model_id(self) -> str:
        """``name@version`` of the active model."""
        return self.runtime.manifest.model_id

    @property
    def embedding_dim(self) -> int:
        """Length of the vectors :meth:`embed` returns."""
        return self.runtime.manifest.embedding_dim

    @property
    def embeddings_normalized(self) -> bool:
        """True when the vectors are L2-normalized (always for a pairwise model's descriptors)."""
        manifest = self.runtime.manifest
        return manifest.normalize_embeddings or self.runtime.pairwise is not None

    def scoring(self, metric: ServedMetric | None, threshold: float | None) -> Scoring:
        """The metric (default: the manifest's), its threshold (given, or calibrated) and its direction.

        Raises:
            MetricUnavailableError: The active model does not offer the metric.
        """
        manifest = self.runtime.manifest
        name = metric or manifest.default_metric
        available = self.gallery.metrics
        if name not in available:
            raise MetricUnavailableError(
                f"metric {name!r} is not available for model {manifest.model_id}; choose one of {available}"
            )
        if threshold is None and name in manifest.scoring:
            threshold = manifest.scoring[name].default_value()
        return Scoring(name, threshold, higher_is_better(name))

    async def _in_gallery(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a gallery call on the index pool (never the event loop)."""
        call = functools.partial(fn, *args, **kwargs)
        return await run_index_call(call, self.settings.faiss_threads)

    async def embed(
        self,
        images: list[bytes],
        field: str | list[str],
        boxes: list[list[float]] | None = None,
        crops_out: list[bytes] | None = None,
    ) -> Embedded:
        """Decode, preprocess and embed images, or the boxes of one frame (batched with concurrent requests;
        all items of one call go to the batcher together).

        Args:
            images: Encoded images (with ``boxes``: the one frame).
            field: The request field holding the images (errors say ``field[i]``), or one name per image.
            boxes: ``[x1, y1, x2, y2]`` person boxes in the upright frame: each is one item, in order.
            crops_out: With ``boxes``, each crop is appended here as PNG bytes.

        Raises:
            TooManyImagesError: More than ``REID_MAX_IMAGES_PER_REQUEST`` images.
            TooManyBoxesError: More than ``REID_MAX_BOXES_PER_REQUEST`` boxes.
            BadImageError: An image that does not decode or has too many pixels.
            BadBoxError: A box that cannot be cut from the frame (its index is named).
            QueueFullError: The inference queue has no room (checked before decoding, and again after).
        """
        batcher = self.batcher
        count, decode = item_preparer(images, field, boxes, self.runtime.spec, self.settings, crops_out)
        if batcher.depth + count > batcher.queue_size:  # overloaded: shed the request before decoding
            self.metrics.queue_rejections.inc(count)
            raise QueueFullError(
                f"the inference queue is full ({batcher.depth} of {batcher.queue_size} images waiting)"
            )
        t0 = time.perf_counter()
        if self.metrics.active_requests <= 1 and batcher.idle and count <= batcher.max_batch:
            alone = await batcher.run_alone(decode)  # the only request: decode + embed in one model job
            rows, t1 = alone.outputs, t0 + alone.prepare_s
        else:
            batcher.announce(count)  # concurrent batches wait for these while they decode
            try:
                arrays = await run_in_worker(decode)
            except BaseException:
                batcher.withdraw(count)
                raise
            t1 = time.perf_counter()
            rows = await batcher.submit(arrays, announced=True)
        vectors, encodings = self.runtime.split(rows)
        timings = Timings(decode_ms=(t1 - t0) * 1000.0, inference_ms=(time.perf_counter() - t1) * 1000.0)
        return Embedded(vectors, encodings, timings)

    async def enrol(
        self,
        images: list[bytes],
        *,
        person_id: str,
        camera_id: str | None,
        metadata: dict[str, Any],
        boxes: list[list[float]] | None = None,
    ) -> Changed:
        """Embed the images (or the boxes of one frame: a tracklet) and add them as entries of ``person_id``
        (image bytes, or the crops as PNG, kept with REID_STORE_IMAGES)."""
        keep = self.settings.store_images
        crops: list[bytes] = []
        embedded = await self.embed(images, "images", boxes, crops if keep and boxes is not None else None)
        count = len(embedded.vectors)
        kept: list[bytes | None] = list(images if boxes is None else crops) if keep else [None] * count
        entries = [NewEntry(person_id, camera_id, metadata, item) for item in kept]
        return await self._in_gallery(self._add, entries, embedded)

    def _add(self, entries: list[NewEntry], embedded: Embedded) -> Changed:
        ids = self.gallery.add(entries, embedded.vectors, embedded.encodings)
        return self._changed(ids)

    def _changed(self, ids: list[int]) -> Changed:
        size = self.gallery.size
        self.metrics.gallery_size.set(size)
        return Changed(ids, size)

    async def search(
        self, images: list[bytes], query: SearchQuery, boxes: list[list[float]] | None = None
    ) -> Ranking:
        """Rank the gallery for each query image or box (exactly, for flat indexes and softmax).

        ``pairwise``: shortlist ``REID_SHORTLIST`` entries by descriptor (after the filters), then re-rank
        them by the comparator on the model executor; ``search_ms`` includes the comparator.
        """
        scoring = self.scoring(query.metric, query.threshold)
        embedded = await self.embed(images, "images", boxes)
        t1 = time.perf_counter()
        pairwise = self.runtime.pairwise
        vectors = VectorQuery(scoring.metric, embedded.vectors, query.top_k, query.filters, query.aggregate)
        search = entry_search(
            self.gallery, vectors, embedded.encodings,
            compare=self.executor.blocking(pairwise.compare) if pairwise is not None else None,
            shortlist=self.settings.shortlist or (pairwise.spec.shortlist if pairwise is not None else 100),
        )  # fmt: skip

        def run() -> tuple[list[list[Match]], list[list[PersonMatch]] | None, int]:
            size = self.gallery.size
            if query.by_person:
                people = rank_persons(search, query.top_k, size)
                return [[] for _ in people], people, size
            return search(query.top_k), None, size

        rows, people, size = await self._in_gallery(run)
        search_ms = (time.perf_counter() - t1) * 1000.0
        decide = scoring.decide
        hits = [[Hit(m.id, m.person_id, m.camera_id, m.score, decide(m.score)) for m in row] for row in rows]
        persons = None
        if people is not None:
            persons = [
                [PersonHit(p.person_id, p.score, p.id, p.camera_id, p.entries, decide(p.score)) for p in row]
                for row in people
            ]
        timings = Timings(embedded.timings.decode_ms, embedded.timings.inference_ms, search_ms)
        return Ranking(hits, scoring, size, timings, persons)

    async def verify(
        self,
        a: bytes | int,
        b: bytes | int,
        *,
        metric: ServedMetric | None = None,
        threshold: float | None = None,
    ) -> Verdict:
        """Score a pair and decide 'same person' at the threshold.

        Args:
            a: Side a: image bytes, or the gallery id of a stored entry.
            b: Side b: image bytes, or a gallery id.
            metric: Scoring mode (default: the model's).
            threshold: Decision threshold (default: the calibrated one).

        Raises:
            NotFoundError: A gallery id that does not exist.
            NoEmbeddingError: A gallery entry without an embedding (or encoding) for the active model.
            UncalibratedError: No ``threshold`` given and the model has none calibrated for the metric.
        """
        scoring = self.scoring(metric, threshold)
        if scoring.threshold is None:  # a fresh import: /verify decides, so it needs a threshold
            raise UncalibratedError(
                f"model {self.model_id} has no calibrated threshold for metric {scoring.metric!r}: pass "
                "`threshold` in the request, or calibrate the model on labelled data "
                "(reid calibrate --model DIR --root DATA)"
            )
        sides = {"a": a, "b": b}
        images = {side: v for side, v in sides.items() if isinstance(v, bytes)}
        vectors: dict[str, np.ndarray] = {}
        encodings: dict[str, np.ndarray] = {}
        decode_ms = inference_ms = 0.0
        if images:  # both images go to the batcher together
            embedded = await self.embed(list(images.values()), [f"image_{side}" for side in images])
            vectors = dict(zip(images, embedded.vectors, strict=True))
            if embedded.encodings is not None:
                encodings = dict(zip(images, embedded.encodings, strict=True))
            decode_ms, inference_ms = embedded.timings.decode_ms, embedded.timings.inference_ms
        stored = {side: v for side, v in sides.items() if not isinstance(v, bytes)}
        if stored:
            comparator = get_metric(scoring.metric).needs_comparator
            stored_vectors, stored_encodings = await self._in_gallery(self._stored, stored, comparator)
            vectors |= stored_vectors
            encodings |= stored_encodings
        t1 = time.perf_counter()
        score = await self._pair_score(scoring.metric, vectors, encodings)
        inference_ms += (time.perf_counter() - t1) * 1000.0
        return Verdict(score, scoring.decide(score), scoring, Timings(decode_ms, inference_ms))

    def _stored(
        self, ids: dict[str, int], with_encodings: bool
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Stored embeddings (and comparator encodings) of the sides given by gallery id."""
        vectors: dict[str, np.ndarray] = {}
        for side, entry_id in ids.items():
            vec = self.gallery.embedding(entry_id)
            if vec is None:
                if self.gallery.get(entry_id) is None:
                    raise NotFoundError(f"gallery_id_{side}: no gallery entry with id {entry_id}")
                raise NoEmbeddingError(
                    f"gallery_id_{side}: gallery entry {entry_id} has no embedding for {self.model_id}"
                )
            vectors[side] = vec
        encodings: dict[str, np.ndarray] = {}
        for side, entry_id in ids.items() if with_encodings else ():
            found, rows = self.gallery.encodings([entry_id])
            if len(found) == 0:
                raise NoEmbeddingError(
                    f"gallery entry {entry_id} has no comparator encoding for {self.model_id}"
                )
            encodings[side] = rows[0]
        return vectors, encodings

    async def _pair_score(
        self, metric: ServedMetric, vectors: dict[str, np.ndarray], encodings: dict[str, np.ndarray]
    ) -> float:
        a, b = vectors["a"][None, :], vectors["b"][None, :]
        pairwise, mode = self.runtime.pairwise, get_metric(metric)
        if mode.needs_comparator and pairwise is not None:  # through the comparator graph
            enc_a, enc_b = encodings["a"][None, :], encodings["b"][None, :]
            scores = await self.executor.run(pairwise.compare, enc_a, enc_b)
        elif mode.needs_head:  # through the verification head graph itself
            scores = await self.executor.run(self.runtime.same_probability, a, b)
        else:
            scores = pair_scores(metric, a, b, self.runtime.head_weights)
        return float(scores[0])

    async def list_entries(
        self, person_id: str | None, offset: int, limit: int
    ) -> tuple[list[GalleryEntry], int]:
        """A page of entries ordered by id (optionally of one person) and the total matching count."""
        return await self._in_gallery(self.gallery.list_entries, person_id, offset, limit)

    async def get(self, entry_id: int) -> GalleryEntry:
        """One entry.

        Raises:
            NotFoundError: No entry with that id.
        """
        entry = await self._in_gallery(self.gallery.get, entry_id)
        if entry is None:
            raise NotFoundError(f"no gallery entry with id {entry_id}")
        return entry

    async def image(self, entry_id: int) -> StoredImage:
        """The image bytes stored with an entry (``REID_STORE_IMAGES``).

        Raises:
            NotFoundError: No entry with that id, or it was enrolled without its image.
        """
        gallery = self.gallery
        data, entry = await self._in_gallery(lambda: (gallery.image(entry_id), gallery.get(entry_id)))
        if entry is None:
            raise NotFoundError(f"no gallery entry with id {entry_id}")
        if data is None:
            raise NotFoundError(
                f"gallery entry {entry_id} has no stored image (enrolled while REID_STORE_IMAGES was off)"
            )
        return StoredImage(data)

    async def delete(self, entry_id: int) -> Changed:
        """Delete an entry (row, embeddings, stored image, index vectors) at once.

        Raises:
            NotFoundError: No entry with that id.
        """
        changed = await self._in_gallery(lambda: self._changed(self.gallery.delete([entry_id])))
        if not changed.ids:
            raise NotFoundError(f"no gallery entry with id {entry_id}")
        return changed

    async def erase(self, person_id: str | None, created_before: float | None = None) -> Changed:
        """Erase every trace of a person (entries, vectors, stored images, index snapshots on disk), every
        entry enrolled before ``created_before`` (UNIX seconds: retention on demand), or with both, the
        person's entries enrolled before that time.

        Raises:
            NotFoundError: ``person_id`` alone and the person has no entries.
            ValueError: Neither is given.
        """
        if created_before is not None:
            erased = functools.partial(self.gallery.erase_created_before, created_before, person_id)
        elif person_id is not None:
            erased = functools.partial(self.gallery.erase_person, person_id)
        else:
            raise ValueError("give person_id, created_before or both")
        changed = await self._in_gallery(lambda: self._changed(erased()))
        if created_before is not None:
            self.metrics.erased.labels(reason="created_before").inc(len(changed.ids))
        elif not changed.ids:
            raise NotFoundError(f"no gallery entries for person_id {person_id!r}")
        return changed
