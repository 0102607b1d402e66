"""Nothing that blocks runs on the event loop, and every model call goes through the one model executor.

Each test makes one step of a request block (on a ``threading.Event``) and checks that a concurrent trivial
request (``/health``) completes meanwhile: were the step on the loop, the loop would be stuck in it,
``/health`` could not answer, and the step would time out waiting for a release only the loop could send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.api import inputs
from service.app import create_app

pytestmark = pytest.mark.anyio
STUCK_S = 10.0  # how long a blocked step waits for its release before it gives up (the test then fails)


class Gate:
    """Wrap a function so that a call signals ``entered`` and waits for ``release`` (on whatever thread)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None
        self.threads: list[str] = []

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def gated(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            self.entered.set()
            self.released_in_time = self.release.wait(STUCK_S)
            return fn(*args, **kwargs)

        return gated


async def _health_while_blocked(client: httpx.AsyncClient, gate: Gate, request: Any) -> httpx.Response:
    """Start ``request``, wait until it blocks in the gate, answer ``/health``, then release it."""
    task = asyncio.ensure_future(request)
    entered = await asyncio.to_thread(gate.entered.wait, STUCK_S)
    assert entered, "the request never reached the gated step"
    health = await asyncio.wait_for(client.get("/health"), STUCK_S)
    assert health.status_code == 200
    gate.release.set()
    response = await asyncio.wait_for(task, STUCK_S)
    assert gate.released_in_time, "the gated step blocked the event loop (released only by its timeout)"
    assert all(name != threading.main_thread().name for name in gate.threads)
    return response


def _files(images: list[bytes], field: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (f"img{i}.png", img, "image/png")) for i, img in enumerate(images)]


async def test_verify_by_gallery_id_reads_sqlite_off_the_loop(make_settings, serve, person_images) -> None:
    async with serve(make_settings()) as (app, client):
        person, images = next(iter(person_images.enrol.items()))
        r = await client.post("/gallery", files=_files(images[:2]), data={"person_id": person})
        ids = r.json()["ids"]
        store = app.state.service.gallery.store
        gate = Gate()
        store.embedding = gate.wrap(store.embedding)
        body = {"gallery_id_a": ids[0], "gallery_id_b": ids[1], "metric": "cosine"}
        r = await _health_while_blocked(client, gate, client.post("/verify", json=body))
        assert r.status_code == 200 and r.json()["same_person"] is True, r.text


async def test_large_json_bodies_are_parsed_off_the_loop(
    make_settings, serve, person_images, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(make_settings()) as (_, client):
        gate = Gate()
        monkeypatch.setattr(inputs, "_json_model", gate.wrap(inputs._json_model))
        image = base64.b64encode(next(iter(person_images.enrol.values()))[0]).decode()
        copies = inputs.INLINE_PARSE_BYTES // len(image) + 1  # just over the inline limit
        body = {"images": [image] * copies}
        r = await _health_while_blocked(client, gate, client.post("/embeddings", json=body))
        assert r.status_code == 200 and len(r.json()["embeddings"]) == copies, r.text
        assert gate.threads[0].startswith("reid-decode")


async def test_small_json_bodies_are_parsed_inline(
    make_settings, serve, person_images, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the limit a worker hop costs more than the parse: the loop parses it."""
    threads: list[str] = []
    real = inputs._json_model

    def spy(body: bytes, model: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(body, model)

    monkeypatch.setattr(inputs, "_json_model", spy)
    async with serve(make_settings()) as (_, client):
        image = next(iter(person_images.enrol.values()))[0]
        body = json.dumps({"images": [base64.b64encode(image).decode()]}).encode()
        assert len(body) <= inputs.INLINE_PARSE_BYTES
        r = await client.post("/embeddings", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    assert threads == [threading.main_thread().name]


async def test_search_runs_faiss_off_the_loop(make_settings, serve, person_images) -> None:
    async with serve(make_settings()) as (app, client):
        person, images = next(iter(person_images.enrol.items()))
        await client.post("/gallery", files=_files(images), data={"person_id": person})
        gallery = app.state.service.gallery
        gate = Gate()
        gallery.search = gate.wrap(gallery.search)
        request = client.post("/search", files=_files(images[:1]), data={"metric": "cosine"})
        r = await _health_while_blocked(client, gate, request)
        assert r.status_code == 200 and r.json()["results"][0]["matches"][0]["person_id"] == person


async def test_embedding_and_head_run_on_the_one_model_executor(make_settings, serve, person_images) -> None:
    async with serve(make_settings()) as (app, client):
        runtime = app.state.service.runtime
        threads: dict[str, list[str]] = {"embed": [], "head": []}

        def spy(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                threads[name].append(threading.current_thread().name)
                return fn(*args)

            return call

        app.state.service.batcher.run_batch = spy("embed", runtime.embed)
        runtime.same_probability = spy("head", runtime.same_probability)
        images = next(iter(person_images.enrol.values()))
        files = _files([images[0]], "image_a") + _files([images[1]], "image_b")
        r = await client.post("/verify", files=files, data={"metric": "softmax"})
        assert r.status_code == 200, r.text
    assert threads["embed"] and threads["head"]
    assert all(t.startswith("reid-model") for t in threads["embed"] + threads["head"]), threads


async def test_shutdown_answers_a_request_waiting_on_the_model_with_503(make_settings, person_images) -> None:
    app = create_app(make_settings())
    transport = httpx.ASGITransport(app=app)
    gate = Gate()
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        async with app.router.lifespan_context(app):
            batcher = app.state.service.batcher
            batcher.run_batch = gate.wrap(batcher.run_batch)
            image = next(iter(person_images.enrol.values()))[0]
            task = asyncio.ensure_future(client.post("/embeddings", files=_files([image])))
            assert await asyncio.to_thread(gate.entered.wait, STUCK_S)
        # the lifespan has stopped the service while the batch was still on the model
        r = await asyncio.wait_for(task, STUCK_S)
        gate.release.set()
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "shutting down" in r.json()["detail"] and r.headers["retry-after"]
