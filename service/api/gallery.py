"""``/gallery``: enrol, list, read and delete gallery entries; erase a person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from service.api.deps import ReidDep
from service.api.inputs import parse_body
from service.api.openapi import openapi_body
from service.api.schemas import (
    MAX_GALLERY_ID,
    DeleteResponse,
    EnrolRequest,
    EnrolResponse,
    GalleryItem,
    GalleryPage,
)
from service.gallery.protocol import GalleryEntry

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
async def enrol(request: Request, reid: ReidDep) -> EnrolResponse:
    """Embed the images and add them to the gallery under ``person_id``; 201 with one id per image."""
    body = await parse_body(request, EnrolRequest, list_fields=("images",))
    enrolled = await reid.enrol(
        body.images, person_id=body.person_id, camera_id=body.camera_id, metadata=body.metadata
    )
    return EnrolResponse(
        ids=enrolled.ids, person_id=body.person_id, gallery_size=enrolled.gallery_size, model=reid.model_id
    )


@router.get("", response_model=GalleryPage, summary="List gallery entries")
async def list_entries(
    reid: ReidDep,
    person_id: Annotated[str | None, Query(max_length=128, description="Only this person's entries.")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_GALLERY_ID, description="Entries to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1…1000).")] = 100,
) -> GalleryPage:
    """A page of entries, ordered by id."""
    items, total = await reid.list_entries(person_id, offset, limit)
    return GalleryPage(items=[_item(e) for e in items], total=total, offset=offset, limit=limit)


@router.get("/{gallery_id}", response_model=GalleryItem, summary="Read one gallery entry")
async def get_entry(reid: ReidDep, gallery_id: GalleryId) -> GalleryItem:
    """One entry; 404 when the id is unknown."""
    return _item(await reid.get(gallery_id))


@router.delete("/{gallery_id}", response_model=DeleteResponse, summary="Delete one gallery entry")
async def delete_entry(reid: ReidDep, gallery_id: GalleryId) -> DeleteResponse:
    """Delete an entry (row, embeddings, stored image and index vectors) at once; 404 when unknown."""
    deleted = await reid.delete(gallery_id)
    return DeleteResponse(deleted_ids=deleted.ids, gallery_size=deleted.gallery_size)


@router.delete("", response_model=DeleteResponse, summary="Erase every trace of a person")
async def erase_person(
    reid: ReidDep,
    person_id: Annotated[str, Query(min_length=1, max_length=128, description="The person to erase.")],
) -> DeleteResponse:
    """Delete all of a person's entries, vectors and stored images; 404 when the person has none."""
    erased = await reid.erase(person_id)
    return DeleteResponse(deleted_ids=erased.ids, gallery_size=erased.gallery_size)
