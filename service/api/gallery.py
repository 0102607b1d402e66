"""``/gallery``: enrol, list, read and delete gallery entries (and their stored images); erase a person."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from service.api.deps import ReidDep
from service.api.errors import ProblemError
from service.api.inputs import parse_body
from service.api.openapi import post_body
from service.api.responses import DeleteResponse, EnrolResponse, GalleryItem, GalleryPage
from service.api.schemas import MAX_GALLERY_ID, EnrolRequest, Rfc3339
from service.gallery.protocol import GalleryEntry

router = APIRouter(prefix="/gallery", tags=["gallery"])
GalleryId = Annotated[int, Path(ge=1, le=MAX_GALLERY_ID, description="Gallery id.")]


def _item(entry: GalleryEntry) -> GalleryItem:
    return GalleryItem(**dataclasses.asdict(entry))


@post_body(router, "", EnrolRequest, EnrolResponse, "Enrol images of a person", status=201)
async def enrol(request: Request, reid: ReidDep) -> EnrolResponse:
    """Embed the images (or the boxes of one frame) and add them to the gallery as entries of ``person_id``
    (a tracklet: all of one person); 201 with one id per image or box."""
    body = await parse_body(request, EnrolRequest)
    enrolled = await reid.enrol(
        body.images,
        person_id=body.person_id,
        camera_id=body.camera_id,
        metadata=body.metadata,
        boxes=body.boxes,
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


_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp")


@router.get(
    "/{gallery_id}/image",
    response_class=Response,
    summary="Read the image stored with a gallery entry",
    responses={
        200: {
            "description": "The image bytes as enrolled (media type from their leading bytes).",
            "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in _IMAGE_TYPES},
        }
    },
)
async def get_image(reid: ReidDep, gallery_id: GalleryId) -> Response:
    """The enrolled image of an entry (kept when ``REID_STORE_IMAGES`` is on); 404 when the id is unknown
    or the entry has no stored image."""
    image = await reid.image(gallery_id)
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    return Response(image.data, media_type=image.media_type, headers=headers)


@router.delete("/{gallery_id}", response_model=DeleteResponse, summary="Delete one gallery entry")
async def delete_entry(reid: ReidDep, gallery_id: GalleryId) -> DeleteResponse:
    """Delete an entry (row, embeddings, stored image and index vectors) at once; 404 when unknown."""
    deleted = await reid.delete(gallery_id)
    return DeleteResponse(deleted_ids=deleted.ids, gallery_size=deleted.gallery_size)


@router.delete(
    "", response_model=DeleteResponse, summary="Erase every trace of a person, or every entry before a time"
)
async def erase(
    reid: ReidDep,
    person_id: Annotated[
        str | None, Query(min_length=1, max_length=128, description="The person to erase.")
    ] = None,
    created_before: Annotated[
        Rfc3339 | None,
        Query(description="Erase every entry enrolled strictly before this time (RFC 3339, with offset)."),
    ] = None,
) -> DeleteResponse:
    """Delete entries with their vectors and stored images: all of a person's (404 when the person has
    none), all enrolled before ``created_before`` (retention on demand; 200 with an empty list when none is),
    or, with both, the person's entries enrolled before that time. 422 when neither is given."""
    if person_id is None and created_before is None:
        raise ProblemError(422, "give person_id, created_before or both")
    cutoff = None if created_before is None else created_before.timestamp()
    erased = await reid.erase(person_id, cutoff)
    return DeleteResponse(deleted_ids=erased.ids, gallery_size=erased.gallery_size)
