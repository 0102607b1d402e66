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
    config = settings.section(IndexConfig, use_gpu=use_gpu)
    if settings.gallery == "milvus":
        if settings.store_images:
            raise ValueError(
                "REID_STORE_IMAGES=true is not supported with REID_GALLERY=milvus: the shared gallery "
                "keeps no image bytes (no object store is configured). Turn REID_STORE_IMAGES off "
                "(re-enrol after a model change) or use REID_GALLERY=embedded"
            )
        from service.gallery.milvus import MilvusGallery  # pymilvus only when chosen
        from service.gallery.milvus_client import MilvusConfig

        connection = settings.section(MilvusConfig, "milvus_")
        return MilvusGallery(connection, spec, config)
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
