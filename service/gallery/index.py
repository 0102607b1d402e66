"""FAISS indexes derived from the gallery store, one per scoring metric.

Every index maps stable int64 gallery ids (``IndexIDMap2``). ``flat`` is exact and deletes by ``remove_ids``;
``ivf`` and ``hnsw`` mark deleted ids as tombstones that searches skip at once (HNSW cannot remove, and IVF
under an id map cannot remove safely), and are compacted by a rebuild. Snapshots go to a temp file that is
fsynced and then ``os.replace``d, so a crash never leaves a half-written index under the real name.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    """How the approximate indexes are built."""

    index_type: str = "flat"
    ivf_nlist: int = 256
    ivf_nprobe: int = 16
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    use_gpu: bool = False

    def __post_init__(self) -> None:
        if self.index_type not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"index_type must be flat, ivf or hnsw; got {self.index_type!r}")


_GPU_RESOURCES: list[Any] = []


def faiss_gpu_available() -> bool:
    """True when this faiss build has GPU support and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _gpu_resources() -> Any:
    if not _GPU_RESOURCES:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    return _GPU_RESOURCES[0]


class VectorIndex:
    """One FAISS index over gallery vectors, keyed by gallery id.

    Args:
        dim: Vector length.
        inner_product: True for inner-product scores (higher is better), False for squared L2.
        config: Index type and parameters; ``exact=True`` forces ``flat`` whatever the config says.
        exact: Always build an exact flat index (used for softmax search).
    """

    def __init__(self, dim: int, inner_product: bool, config: IndexConfig, exact: bool = False) -> None:
        self.dim = dim
        self.inner_product = inner_product
        self.config = config
        self.index_type = "flat" if exact else config.index_type
        self.tombstones: set[int] = set()
        self.on_gpu = False
        self.trained_on = 0  # vectors the ivf quantizer was trained on (0: exact flat fallback)
        self.index: Any = self._empty()

    def _faiss_metric(self) -> int:
        return faiss.METRIC_INNER_PRODUCT if self.inner_product else faiss.METRIC_L2

    def _empty(self, n_train: int = 0) -> Any:
        base: Any
        quantizer: Any
        if self.index_type == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, self._faiss_metric())
            base.hnsw.efSearch = self.config.hnsw_ef_search
        elif self.index_type == "ivf" and n_train >= 2 * 39:  # faiss wants ≥ 39 training points per cell
            nlist = max(1, min(self.config.ivf_nlist, n_train // 39))
            quantizer = faiss.IndexFlatIP(self.dim) if self.inner_product else faiss.IndexFlatL2(self.dim)
            base = faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric())
            base.nprobe = min(self.config.ivf_nprobe, nlist)
            base.own_fields = True
            quantizer.this.disown()
        else:  # flat, or ivf with too few vectors to train (exact until the next rebuild)
            base = faiss.IndexFlatIP(self.dim) if self.inner_product else faiss.IndexFlatL2(self.dim)
        index = faiss.IndexIDMap2(base)
        index.own_fields = True
        base.this.disown()
        return index

    @property
    def size(self) -> int:
        """Live vectors (tombstones excluded)."""
        return int(self.index.ntotal) - len(self.tombstones)

    def ids(self) -> np.ndarray:
        """Gallery ids held by the index (tombstones included)."""
        id_map: Any = faiss.downcast_index(self.index)
        return faiss.vector_to_array(id_map.id_map).astype(np.int64)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the index with one over ``vectors`` (trained on them for ivf)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        index = self._empty(n_train=len(vectors))
        sub: Any = faiss.downcast_index(index.index)
        if not sub.is_trained:
            sub.train(vectors)
        self.trained_on = len(vectors) if isinstance(sub, faiss.IndexIVF) else 0
        if len(vectors):
            index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        self.index = index
        self.tombstones = set()
        self.on_gpu = False
        self._to_device()

    def _to_device(self) -> None:
        """Move flat / ivf indexes to the GPU when configured (HNSW has no GPU version here)."""
        if not self.config.use_gpu or self.index_type == "hnsw":
            return
        try:
            self.index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, self.index)
            self.on_gpu = True
        except (RuntimeError, AttributeError) as exc:
            logger.warning("faiss index stays on CPU: %s", exc)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under their gallery ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: list[int]) -> None:
        """Delete ids; they are never returned by a search from now on."""
        if not ids:
            return
        if self.index_type == "flat" and not self.on_gpu:  # GPU flat indexes cannot remove: tombstones
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        else:
            present = set(self.ids().tolist())
            self.tombstones.update(int(i) for i in ids if int(i) in present)

    @property
    def needs_rebuild(self) -> bool:
        """True when tombstones exceed 10 % of the vectors, or an ivf gallery has doubled since training."""
        if len(self.tombstones) > max(16, self.index.ntotal // 10):
            return True
        if self.index_type == "ivf":
            return bool(self.index.ntotal >= max(2 * 39, 2 * self.trained_on))
        return False

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best (raw scores, ids) per query; raw is inner product or squared L2; id −1 = no result.

        Args:
            queries: (N, dim) query vectors.
            k: Results per query.
            allowed: When given, only these ids are ranked: an ``IDSelectorBatch`` in the search parameters,
                so FAISS skips the others while it searches (exact on a flat index). GPU indexes have no
                selectors: there the search widens until k allowed ids are found.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if allowed is not None:
            if self.tombstones:
                allowed = np.setdiff1d(allowed, np.fromiter(self.tombstones, dtype=np.int64))
            if self.on_gpu:
                return self._search_widening(queries, k, allowed)
            k_eff = min(k, len(allowed), int(self.index.ntotal))
            if k_eff <= 0:
                return np.empty((len(queries), 0)), np.empty((len(queries), 0), dtype=np.int64)
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            result: tuple[np.ndarray, np.ndarray] = self.index.search(
                queries, k_eff, params=self._params(selector)
            )
            return result
        k_eff = min(k + len(self.tombstones), int(self.index.ntotal))
        if k_eff <= 0:
            return np.empty((len(queries), 0)), np.empty((len(queries), 0), dtype=np.int64)
        raw, ids = self.index.search(queries, k_eff)
        if self.tombstones:
            dead = np.isin(ids, np.fromiter(self.tombstones, dtype=np.int64))
            ids = np.where(dead, -1, ids)
        return raw, ids

    def _params(self, selector: Any) -> Any:
        """Search parameters carrying ``selector`` and the index type's own search settings."""
        lib: Any = faiss  # the SWIG constructors take fields as keywords; faiss's stubs do not say so
        sub: Any = faiss.downcast_index(self.index.index)
        if isinstance(sub, faiss.IndexIVF):
            return lib.SearchParametersIVF(sel=selector, nprobe=int(sub.nprobe))
        if isinstance(sub, faiss.IndexHNSW):
            return lib.SearchParametersHNSW(sel=selector, efSearch=int(sub.hnsw.efSearch))
        return lib.SearchParameters(sel=selector)

    def _search_widening(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        total = int(self.index.ntotal)
        want = min(k, len(allowed))
        k_try = min(total, max(4 * k, 64))
        while True:
            raw, ids = self.index.search(queries, k_try)
            ids = np.where(np.isin(ids, allowed), ids, -1)
            if k_try >= total or bool(np.all(np.sum(ids >= 0, axis=1) >= want)):
                return raw, ids
            k_try = min(total, 4 * k_try)

    def serialize(self) -> bytes:
        """The index as bytes (a copy: later changes to the index do not reach it)."""
        index = faiss.index_gpu_to_cpu(self.index) if self.on_gpu else self.index
        data: bytes = faiss.serialize_index(index).tobytes()
        return data

    def save(self, path: Path) -> str:
        """Write a snapshot atomically (temp file, fsync, os.replace); returns the file's sha256."""
        return write_snapshot(path, self.serialize())

    def load(self, path: Path, checksum: str) -> bool:
        """Load a snapshot if its sha256 matches ``checksum``; False when missing, damaged or mismatched."""
        try:
            data = path.read_bytes()
        except OSError:
            return False
        if hashlib.sha256(data).hexdigest() != checksum:
            return False
        try:
            index: Any = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError:
            return False
        if index.d != self.dim:
            return False
        wrapper: Any = faiss.downcast_index(index)
        sub: Any = faiss.downcast_index(wrapper.index)
        self.trained_on = int(index.ntotal) if isinstance(sub, faiss.IndexIVF) else 0
        self.index = index
        self.tombstones = set()
        self.on_gpu = False
        self._to_device()
        return True


def write_snapshot(path: Path, data: bytes) -> str:
    """Write serialized index bytes atomically (temp file, fsync, ``os.replace``, fsync of the folder);
    returns their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return hashlib.sha256(data).hexdigest()
