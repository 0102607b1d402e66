"""The one place a gallery store is chosen: ``REID_GALLERY`` names one of the registered store kinds.

A new store implements :class:`service.gallery.protocol.GalleryStore` in its own module, passes the gallery
suite (``tests/service/gallery``, parametrized over the stores) and is registered here as one
:class:`StoreKind`: how it is created from the settings, whether several processes may share it and whether it
lives in ``REID_DATA_DIR``; its name joins ``GalleryKind`` in :mod:`service.config`. ``reid serve`` and
``reid gallery copy`` ask the kind, not the name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from service.config import GalleryKind, Settings
from service.contract.registry import Registry
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import GallerySpec, GalleryStore


@dataclass(frozen=True)
class StoreKind:
    """One gallery store the service can run on.

    Attributes:
        name: The ``REID_GALLERY`` value.
        shared: One gallery for every process and replica (``reid serve --workers N`` is allowed).
        in_data_dir: It lives in ``REID_DATA_DIR``, held by one process (``reid serve`` locks the folder).
        create: The store for the settings, the active model's needs and the index settings (not yet opened).
    """

    name: str
    shared: bool
    in_data_dir: bool
    create: Callable[[Settings, GallerySpec, IndexConfig], GalleryStore]


STORES: Registry[StoreKind] = Registry("gallery store", allowed=get_args(GalleryKind))


def _embedded(settings: Settings, spec: GallerySpec, config: IndexConfig) -> GalleryStore:
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


def _milvus(settings: Settings, spec: GallerySpec, config: IndexConfig) -> GalleryStore:
    if settings.store_images:
        raise ValueError(
            "REID_STORE_IMAGES=true is not supported with REID_GALLERY=milvus: the shared gallery "
            "keeps no image bytes (no object store is configured). Turn REID_STORE_IMAGES off "
            "(re-enrol after a model change) or use REID_GALLERY=embedded"
        )
    from service.gallery.milvus import MilvusGallery  # pymilvus only when chosen
    from service.gallery.milvus_client import MilvusConfig

    return MilvusGallery(settings.section(MilvusConfig, "milvus_"), spec, config)


STORES.add(StoreKind("embedded", shared=False, in_data_dir=True, create=_embedded))
STORES.add(StoreKind("milvus", shared=True, in_data_dir=False, create=_milvus))


def create_gallery(settings: Settings, spec: GallerySpec, *, use_gpu: bool = False) -> GalleryStore:
    """The gallery store the settings choose (not yet opened).

    Args:
        settings: Service settings (``gallery`` picks the store; the store's own settings configure it).
        spec: The active model's needs.
        use_gpu: Put the embedded store's FAISS indexes on the GPU.
    """
    return STORES.get(settings.gallery).create(settings, spec, settings.section(IndexConfig, use_gpu=use_gpu))
