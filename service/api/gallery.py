"""``/gallery``: enrol, list, read and delete gallery entries; erase a person."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from service.api.deps import ReadyDep
from service.api.errors import ProblemError
from service.api.inputs import embed_images, openapi_body, parse_body, run_index_call
from service.api.schemas import (
    MAX_GALLERY_ID,
    DeleteResponse,
    EnrolRequest,
    EnrolResponse,
    GalleryItem,
    GalleryPage,
)
from service.gallery.protocol import GalleryEntry, NewEntry

router = APIRouter(prefix="/gallery", tags=["gallery"])
GalleryId = Annotated[int, Path(ge=1, le=MAX_GALLERY_ID, description="Gallery id.")]


def _item(entry: GalleryEntry) -> GalleryItem:
    return GalleryItem(
        id=entry.id,
        person_id=entry.person_id,
        camera_id=entry.camera_id,
        metadata=entry.metadata,
        created=entry.created,
        has_image=entry.has_image,
        models=list(entry.models),
    )


@router.post(
    "",
    status_code=201,
    response_model=EnrolResponse,
    summary="Enrol images of a person",
    openapi_extra=openapi_body(EnrolRequest, ("images",)),
)
async def enrol(request: Request, ready: ReadyDep) -> EnrolResponse:
    """Embed the images and add them to the gallery under ``person_id``; 201 with one id per image."""
    body = await parse_body(request, EnrolRequest, list_fields=("images",))
    rows, _, _ = await embed_images(ready, body.images, "images")
    embeddings, encodings = ready.runtime.split(rows)  # pairwise models also keep the comparator encoding
    store_images = ready.state.settings.store_images
    entries = [
        NewEntry(
            person_id=body.person_id,
            camera_id=body.camera_id,
            metadata=body.metadata,
            image=img if store_images else None,
        )
        for img in body.images
    ]
    ids = await run_index_call(ready, functools.partial(ready.gallery.add, entries, embeddings, encodings))
    ready.state.metrics.gallery_size.set(ready.gallery.size)
    return EnrolResponse(
        ids=ids, person_id=body.person_id, gallery_size=ready.gallery.size, model=ready.gallery.model_id
    )


@router.get("", response_model=GalleryPage, summary="List gallery entries")
async def list_entries(
    ready: ReadyDep,
    person_id: Annotated[str | None, Query(max_length=128, description="Only this person's entries.")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_GALLERY_ID, description="Entries to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1…1000).")] = 100,
) -> GalleryPage:
    """A page of entries, ordered by id."""
    items, total = await run_in_threadpool(ready.gallery.list_entries, person_id, offset, limit)
    return GalleryPage(items=[_item(e) for e in items], total=total, offset=offset, limit=limit)


@router.get("/{gallery_id}", response_model=GalleryItem, summary="Read one gallery entry")
async def get_entry(ready: ReadyDep, gallery_id: GalleryId) -> GalleryItem:
    """One entry; 404 when the id is unknown."""
    entry = await run_in_threadpool(ready.gallery.get, gallery_id)
    if entry is None:
        raise ProblemError(404, f"no gallery entry with id {gallery_id}")
    return _item(entry)


@router.delete("/{gallery_id}", response_model=DeleteResponse, summary="Delete one gallery entry")
async def delete_entry(ready: ReadyDep, gallery_id: GalleryId) -> DeleteResponse:
    """Delete an entry (row, embeddings, stored image and index vectors) at once; 404 when unknown."""
    deleted = await run_index_call(ready, functools.partial(ready.gallery.delete, [gallery_id]))
    if not deleted:
        raise ProblemError(404, f"no gallery entry with id {gallery_id}")
    ready.state.metrics.gallery_size.set(ready.gallery.size)
    return DeleteResponse(deleted_ids=deleted, gallery_size=ready.gallery.size)


@router.delete("", response_model=DeleteResponse, summary="Erase every trace of a person")
async def erase_person(
    ready: ReadyDep,
    person_id: Annotated[str, Query(min_length=1, max_length=128, description="The person to erase.")],
) -> DeleteResponse:
    """Delete all of a person's entries, vectors and stored images; 404 when the person has none."""
    deleted = await run_index_call(ready, functools.partial(ready.gallery.erase_person, person_id))
    if not deleted:
        raise ProblemError(404, f"no gallery entries for person_id {person_id!r}")
    ready.state.metrics.gallery_size.set(ready.gallery.size)
    return DeleteResponse(deleted_ids=deleted, gallery_size=ready.gallery.size)
