"""The one place the gallery store is chosen: ``REID_GALLERY=embedded | milvus``."""

from __future__ import annotations

from service.config import Settings
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import GallerySpec, GalleryStore


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
