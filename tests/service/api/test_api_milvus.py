"""The API on the shared Milvus gallery (REID_GALLERY=milvus), through the real app: the enrol → search →
verify → list → delete → erase flow; Milvus unreachable at start (live, not ready, then ready without a
restart); Milvus lost mid-run (503 problem+json with Retry-After on gallery endpoints while /embeddings and
image-only /verify keep working, and back); stored images refused at start-up."""

from __future__ import annotations

import asyncio
import base64
import uuid
from urllib.parse import urlparse

import httpx
import pytest

from tests.service.milvus_server import TcpRelay

pytestmark = pytest.mark.anyio


def _milvus(make_settings, uri: str, **overrides: object):
    prefix = "api_" + uuid.uuid4().hex[:10]
    return make_settings(
        gallery="milvus", milvus_uri=uri, milvus_collection_prefix=prefix, retry_after_s=1, **overrides
    )


def _files(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{i}.png", img, "image/png")) for i, img in enumerate(images)]


async def _wait_ready(client: httpx.AsyncClient, seconds: float = 60.0) -> None:
    for _ in range(int(seconds * 5)):
        if (await client.get("/ready")).status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not ready after {seconds} s: {(await client.get('/ready')).json()}")


async def test_flow_on_milvus(make_settings, serve, person_images, milvus_uri: str) -> None:
    async with serve(_milvus(make_settings, milvus_uri)) as (_, client):
        await _wait_ready(client)
        ids: dict[str, list[int]] = {}
        for person, images in person_images.enrol.items():
            r = await client.post(
                "/gallery", files=_files(images), data={"person_id": person, "camera_id": "c1"}
            )
            assert r.status_code == 201, r.text
            ids[person] = r.json()["ids"]
        assert r.json()["gallery_size"] == 12
        for person, query in person_images.query.items():
            r = await client.post("/search", files=_files([query]), data={"top_k": "12"})
            matches = r.json()["results"][0]["matches"]
            assert r.status_code == 200 and len(matches) == 12 and r.json()["gallery_size"] == 12
            assert {m["person_id"] for m in matches[:4]} == {person}
        first, second = list(ids)[:2]
        body = {
            "gallery_id_a": ids[first][0],
            "image_b": base64.b64encode(person_images.query[second]).decode(),
        }
        r = await client.post("/verify", json=body)
        assert r.status_code == 200 and r.json()["same_person"] is False, r.text
        page = (await client.get("/gallery", params={"person_id": first, "limit": 2, "offset": 1})).json()
        assert page["total"] == 4 and [e["id"] for e in page["items"]] == ids[first][1:3]
        assert page["items"][0]["camera_id"] == "c1" and page["items"][0]["models"] == [r.json()["model"]]
        assert (await client.delete(f"/gallery/{ids[first][0]}")).json()["gallery_size"] == 11
        assert (await client.get(f"/gallery/{ids[first][0]}")).status_code == 404
        erased = await client.delete("/gallery", params={"person_id": second})
        assert sorted(erased.json()["deleted_ids"]) == ids[second] and erased.json()["gallery_size"] == 7
        r = await client.post("/search", files=_files([person_images.query[second]]), data={"top_k": "12"})
        assert second not in {m["person_id"] for m in r.json()["results"][0]["matches"]}


async def test_milvus_unreachable_at_start_then_lost_mid_run(
    make_settings, serve, person_images, milvus_uri: str
) -> None:
    relay = TcpRelay(int(urlparse(milvus_uri).port or 0))
    relay.cut()
    person, images = next(iter(person_images.enrol.items()))
    async with serve(_milvus(make_settings, relay.uri, milvus_timeout_s=2.0)) as (_, client):
        assert (await client.get("/health")).status_code == 200  # live
        r = await client.get("/ready")
        assert r.status_code == 503 and "unreachable" in r.json()["reason"], r.text
        relay.restore()  # Milvus comes up: ready without a restart
        await _wait_ready(client)
        r = await client.post("/gallery", files=_files(images), data={"person_id": person})
        assert r.status_code == 201, r.text
        relay.cut()  # lost mid-run
        for method, path, kwargs in (
            ("POST", "/search", {"files": _files([person_images.query[person]])}),
            ("POST", "/gallery", {"files": _files(images[:1]), "data": {"person_id": person}}),
            ("GET", "/gallery", {}),
            ("DELETE", "/gallery", {"params": {"person_id": person}}),
        ):
            r = await client.request(method, path, **kwargs)
            assert r.status_code == 503, (path, r.text)
            assert (
                r.headers["content-type"].startswith("application/problem+json") and r.headers["retry-after"]
            )
        assert (await client.post("/embeddings", files=_files(images[:1]))).status_code == 200
        pair = [
            ("image_a", ("a.png", images[0], "image/png")),
            ("image_b", ("b.png", images[1], "image/png")),
        ]
        r = await client.post("/verify", files=pair)
        assert r.status_code == 200 and r.json()["same_person"] is True, r.text
        relay.restore()  # and back, without a restart
        for _ in range(150):
            r = await client.post("/search", files=_files([person_images.query[person]]))
            if r.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert r.status_code == 200 and r.json()["results"][0]["matches"][0]["person_id"] == person, r.text
    relay.cut()


async def test_stored_images_are_refused_with_milvus(make_settings, serve, milvus_uri: str) -> None:
    async with serve(_milvus(make_settings, milvus_uri, store_images=True)) as (_, client):
        r = await client.get("/ready")
        assert r.status_code == 503 and "REID_STORE_IMAGES" in r.json()["reason"], r.text
