"""The one place the gallery store is chosen: ``REID_GALLERY=embedded | milvus``."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.contract.scoring import HeadWeights
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import GalleryStore


@dataclass(frozen=True)
class GallerySpec:
    """What the active model asks of the gallery.

    Attributes:
        model_id: ``name@version`` of the active model.
        dim: Embedding length.
        metrics: Scoring metrics to index (``softmax`` needs ``head``; ``pairwise`` needs ``encoding_dim``).
        head: Verification-head weights for exact softmax search.
        encoding_dim: Length of the comparator encodings kept per entry (pairwise models only).
    """

    model_id: str
    dim: int
    metrics: list[str]
    head: HeadWeights | None = None
    encoding_dim: int | None = None


def create_gallery(settings: Settings, spec: GallerySpec, *, use_gpu: bool = False) -> GalleryStore:
    """The gallery store the settings choose (not yet opened).

    Args:
        settings: Service settings (``gallery`` picks the store; the store's own settings configure it).
        spec: The active model's needs.
        use_gpu: Put the embedded store's FAISS indexes on the GPU.
    """
    config = IndexConfig(
        index_type=settings.index_type,
        ivf_nlist=settings.ivf_nlist,
        ivf_nprobe=settings.ivf_nprobe,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_search=settings.hnsw_ef_search,
        use_gpu=use_gpu,
    )
    return Gallery(
        settings.data_dir,
        model_id=spec.model_id,
        dim=spec.dim,
        metrics=spec.metrics,
        head=spec.head,
        config=config,
        snapshot_every=settings.snapshot_every,
        encoding_dim=spec.encoding_dim,
    )
