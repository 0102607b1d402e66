"""Retention and DELETE /gallery?created_before: no row, vector or byte of an erased entry is left."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import datetime
from pathlib import Path

import faiss
import numpy as np
import pytest

pytestmark = pytest.mark.anyio


def _leftovers(data_dir: Path, needles: list[bytes]) -> list[str]:
    """Files under the data dir holding any of the needles (database, WAL, index snapshots)."""
    return [
        f"{p.name}:{i}"
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
        for i, needle in enumerate(needles)
        if needle in p.read_bytes()
    ]


def _index_ids(data_dir: Path) -> set[int]:
    ids: set[int] = set()
    for path in (data_dir / "indexes").glob("*.faiss"):
        index = faiss.read_index(str(path))  # keep it alive while its downcast view is read
        ids |= set(faiss.vector_to_array(faiss.downcast_index(index).id_map).tolist())
    return ids


async def _enrol(client, images: list[bytes], person: str) -> list[int]:
    body = {"images": [base64.b64encode(b).decode() for b in images], "person_id": person}
    r = await client.post("/gallery", json={**body, "metadata": {"tag": f"secret-of-{person}"}})
    assert r.status_code == 201, r.text
    return r.json()["ids"]


def _needles(app, ids: list[int], images: list[bytes], person: str) -> list[bytes]:
    gallery = app.state.service.gallery
    vectors = [gallery.embedding(i).astype(np.float32).tobytes() for i in ids]
    return [f"secret-of-{person}".encode(), *(img[40:80] for img in images), *vectors]


def _rows(data_dir: Path, ids: list[int]) -> int:
    db = sqlite3.connect(data_dir / "gallery.sqlite3")
    try:
        marks = ",".join("?" * len(ids))
        return sum(
            db.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} IN ({marks})", ids).fetchone()[0]
            for table, col in (("entries", "id"), ("embeddings", "entry_id"))
        )
    finally:
        db.close()


async def test_delete_created_before_erases_everything_older(make_settings, serve, person_images) -> None:
    settings = make_settings(store_images=True)
    old_person, new_person = list(person_images.enrol)[:2]
    async with serve(settings) as (app, client):
        old = await _enrol(client, person_images.enrol[old_person], old_person)
        needles = _needles(app, old, person_images.enrol[old_person], old_person)
        await asyncio.sleep(0.01)
        cutoff = datetime.now().astimezone()  # local offset: RFC 3339 with any UTC offset
        await asyncio.sleep(0.01)
        new = await _enrol(client, person_images.enrol[new_person], new_person)
        both = {"person_id": new_person, "created_before": cutoff.isoformat()}
        r = await client.delete("/gallery", params=both)  # the person's entries before the time: none
        assert r.status_code == 200 and r.json()["deleted_ids"] == []
        r = await client.delete("/gallery", params={"created_before": cutoff.isoformat()})
        assert r.status_code == 200, r.text
        assert r.json()["deleted_ids"] == old
        assert r.json()["gallery_size"] == len(new)
        r = await client.delete("/gallery", params={"created_before": cutoff.isoformat()})
        assert r.status_code == 200 and r.json()["deleted_ids"] == []
        for bad in (
            {},
            {"created_before": "yesterday"},
            {"created_before": "1700000000"},
        ):
            r = await client.delete("/gallery", params=bad)
            assert r.status_code == 422, (bad, r.text)
        r = await client.delete("/gallery", params={"created_before": "2020-01-01T00:00:00"})  # no offset
        assert r.status_code == 422
        assert (await client.get(f"/gallery/{old[0]}")).status_code == 404
        metrics = (await client.get("/metrics")).text
        assert f'reid_erased_entries_total{{reason="created_before"}} {float(len(old))}' in metrics
    assert _rows(settings.data_dir, old) == 0 and _rows(settings.data_dir, new) == 2 * len(new)
    assert not _index_ids(settings.data_dir) & set(old)
    assert _index_ids(settings.data_dir) >= set(new)
    assert _leftovers(settings.data_dir, needles) == []


async def test_retention_task_erases_expired_entries(make_settings, serve, person_images) -> None:
    settings = make_settings(store_images=True, retention_hours=1.5 / 3600, retention_check_s=0.1)
    person = next(iter(person_images.enrol))
    images = person_images.enrol[person]
    async with serve(settings) as (app, client):
        ids = await _enrol(client, images, person)
        needles = _needles(app, ids, images, person)
        expected = f'reid_erased_entries_total{{reason="retention"}} {float(len(ids))}'
        for _ in range(400):  # 1.5 s retention, swept every 100 ms: gone (and counted) within 2 s or so
            if expected in (await client.get("/metrics")).text:
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/gallery")).json()["total"] == 0
        r = await client.post(
            "/search", json={"images": [base64.b64encode(images[0]).decode()], "metric": "cosine"}
        )
        assert r.json()["results"][0]["matches"] == []
        metrics = (await client.get("/metrics")).text
        assert expected in metrics
        assert "reid_retention_last_sweep_timestamp_seconds 0.0" not in metrics
    assert _rows(settings.data_dir, ids) == 0
    assert not _index_ids(settings.data_dir) & set(ids)
    assert _leftovers(settings.data_dir, needles) == []
