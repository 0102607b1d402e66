"""Pairwise models through the real app, their stored state: encodings are stored as float16 per entry and
model, erased with the person, and re-derived from stored images when the model changes; a model that breaks
the contract keeps the service unready; the comparator runs on the model executor."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from tests.service.tiny_pairwise import ENC_DIM, b64, enrol, pairwise_settings, search

pytestmark = pytest.mark.anyio


async def test_encodings_are_fp16_and_erased_with_the_person(
    make_settings, serve, pairwise_models, people
) -> None:
    settings = pairwise_settings(make_settings, pairwise_models)
    db = settings.data_dir / "gallery.sqlite3"
    async with serve(settings) as (_, client):
        ids = await enrol(client, people)
        with sqlite3.connect(db) as con:
            rows = con.execute(
                "SELECT entry_id, model_id, encoding FROM encodings ORDER BY entry_id"
            ).fetchall()
        assert [r[0] for r in rows] == sorted(i for v in ids.values() for i in v)
        assert {r[1] for r in rows} == {"tiny-pairwise@1"} and {len(r[2]) for r in rows} == {ENC_DIM * 2}
        red_blobs = [r[2] for r in rows if r[0] in ids["p-red"]]
        r = await client.delete("/gallery", params={"person_id": "p-red"})
        assert r.status_code == 200 and sorted(r.json()["deleted_ids"]) == ids["p-red"]
        with sqlite3.connect(db) as con:
            left = [r[0] for r in con.execute("SELECT entry_id FROM encodings")]
        assert not set(left) & set(ids["p-red"]) and len(left) == 8
        on_disk = b"".join(p.read_bytes() for p in settings.data_dir.glob("gallery.sqlite3*"))
        assert not any(blob in on_disk for blob in red_blobs)  # overwritten, not just unlinked
        matches = await search(client, people.query["p-red"], top_k=12)
        assert len(matches) == 8 and "p-red" not in {m["person_id"] for m in matches}
        r = await client.post(
            "/verify", json={"gallery_id_a": ids["p-red"][0], "gallery_id_b": ids["p-blue"][0]}
        )
        assert r.status_code == 404


@pytest.mark.parametrize("store_images", [True, False])
async def test_model_change_re_derives_encodings_or_reports(
    make_settings, serve, pairwise_models, people, store_images: bool
) -> None:
    async with serve(
        pairwise_settings(make_settings, pairwise_models, store_images=store_images)
    ) as (_, client):
        await enrol(client, people)
    settings = make_settings(models_dir=pairwise_models, model="tiny-pairwise-b", store_images=store_images)
    async with serve(settings) as (app, client):
        ready = (await client.get("/ready")).json()
        if not store_images:
            assert ready["gallery_size"] == 0 and ready["startup"]["not_searchable"] == 12
            return
        assert ready["gallery_size"] == 12 and "not_searchable" not in ready["startup"]
        found, _ = app.state.service.gallery.encodings(sorted(app.state.service.gallery.store.labels()))
        assert len(found) == 12
        for person, query in people.query.items():
            assert [m["person_id"] for m in (await search(client, query, top_k=4))] == [person] * 4


@pytest.mark.parametrize(("model", "reason"), [("bad-norm", "L2-normalized"), ("bad-dim", "encoding_dim")])
async def test_contract_violations_keep_the_service_unready(
    make_settings, serve, pairwise_models, model: str, reason: str
) -> None:
    async with serve(make_settings(models_dir=pairwise_models, model=model)) as (_, client):
        r = await client.get("/ready")
        assert r.status_code == 503 and reason in r.json()["reason"]


async def test_the_comparator_runs_on_the_one_model_executor(
    make_settings, serve, pairwise_models, people
) -> None:
    """/search's re-ranking (from an index worker) and /verify both call the comparator on a model thread,
    never on the index pool, Starlette's pool or the event loop."""
    threads: list[str] = []
    async with serve(pairwise_settings(make_settings, pairwise_models)) as (app, client):
        pairwise = app.state.service.runtime.pairwise
        real = pairwise.compare

        def spy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            threads.append(threading.current_thread().name)
            return real(a, b)

        pairwise.compare = spy
        ids = await enrol(client, people)
        await search(client, people.query["p-red"], top_k=3)
        searched = len(threads)
        body = {"image_a": b64([people.query["p-red"]])[0], "gallery_id_b": ids["p-red"][0]}
        r = await client.post("/verify", json=body)
        assert r.status_code == 200 and r.json()["metric"] == "pairwise", r.text
    assert 0 < searched < len(threads)
    assert all(name.startswith("reid-model") for name in threads), threads
