"""Move a gallery between stores (``reid gallery copy``): ids, person, camera, metadata, creation time, the
active model's embeddings and comparator encodings are kept; verified by counts and a sample of searches."""

from __future__ import annotations

from typing import Any

from service.gallery.protocol import GalleryStore, NewEntry, VectorQuery


def copy_gallery(
    source: GalleryStore, dest: GalleryStore, *, page: int = 500, sample: int = 20
) -> dict[str, Any]:
    """Copy every entry of ``source`` that has an embedding for the active model into an empty ``dest``.

    Stored images are not copied (the Milvus store keeps none). Entries without an embedding for the active
    model are counted and left out.

    Returns:
        Counts (copied, left out, sizes) and the sample check: for ``sample`` copied entries, the top-5 of a
        search by their own embedding, in every metric, is the same in both stores.

    Raises:
        ValueError: ``dest`` is not empty, or the stores serve different models.
    """
    if source.model_id != dest.model_id:
        raise ValueError(f"source serves {source.model_id}, destination {dest.model_id}")
    if dest.list_entries(None, 0, 1)[1]:
        raise ValueError("the destination gallery is not empty: copy into an empty one")
    copied: list[int] = []
    left_out = images = offset = 0
    while True:
        entries, _ = source.list_entries(None, offset, page)
        if not entries:
            break
        offset += len(entries)
        found, vectors = source.embeddings([e.id for e in entries])
        row_of = {int(i): r for r, i in enumerate(found.tolist())}
        kept = [e for e in entries if e.id in row_of]
        left_out += len(entries) - len(kept)
        images += sum(e.has_image for e in kept)
        if not kept:
            continue
        encodings = None
        if source.encoding_dim is not None:
            enc_ids, encodings = source.encodings([e.id for e in kept])
            if enc_ids.tolist() != [e.id for e in kept]:
                raise ValueError(
                    f"entries {sorted({e.id for e in kept} - set(enc_ids.tolist()))[:5]} have no encoding"
                )
        dest.add(
            [NewEntry(e.person_id, e.camera_id, e.metadata, None, e.id, e.created) for e in kept],
            vectors[[row_of[e.id] for e in kept]],
            encodings,
        )
        copied += [e.id for e in kept]
    checked = equal = 0
    for entry_id in copied[:: max(1, len(copied) // max(sample, 1))][:sample]:
        _, query = source.embeddings([entry_id])
        for metric in sorted(set(source.metrics) & set(dest.metrics) - {"pairwise"}):
            a = [m.id for m in source.search(VectorQuery(metric, query, 5))[0]]
            b = [m.id for m in dest.search(VectorQuery(metric, query, 5))[0]]
            checked, equal = checked + 1, equal + (a == b)
    return {
        "model": source.model_id,
        "copied": len(copied),
        "left_out_without_embedding": left_out,
        "images_not_copied": images,
        "source_size": source.size,
        "dest_size": dest.size,
        "searches_checked": checked,
        "searches_equal": equal,
        "ok": source.size == dest.size == len(copied) and checked == equal,
    }
