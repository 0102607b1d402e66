"""Concurrent /embeddings requests are batched (seen through /metrics), and a full queue answers 503."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.anyio


def _histogram(text: str, name: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return {
                (s.labels.get("le") or s.name.rsplit("_", 1)[-1]): s.value
                for s in family.samples
                if not s.labels.get("route")
            }
    raise AssertionError(f"metric {name} not found")


async def test_32_concurrent_requests_are_batched(make_settings, serve, person_images) -> None:
    image = next(iter(person_images.query.values()))
    async with serve(make_settings(max_batch=32, max_wait_ms=50.0)) as (_, client):
        files = [("images", ("q.png", image, "image/png"))]
        replies = await asyncio.gather(*(client.post("/embeddings", files=files) for _ in range(32)))
        assert [r.status_code for r in replies] == [200] * 32
        vectors = np.array([r.json()["embeddings"][0] for r in replies])
        np.testing.assert_allclose(
            vectors, vectors[:1].repeat(32, 0), rtol=1e-5, atol=1e-5
        )  # batch-invariant
        text = (await client.get("/metrics")).text
        batches = _histogram(text, "reid_batch_size")
        assert batches["sum"] == 32  # every image went through the batcher once
        assert batches["count"] < 32 and batches["1.0"] < batches["count"]  # some batch held > 1 image
        assert "reid_request_duration_seconds_bucket" in text and 'route="/embeddings"' in text
        assert "reid_gallery_size" in text and "reid_queue_depth" in text


async def test_batching_off_runs_one_image_per_batch(make_settings, serve, person_images) -> None:
    image = next(iter(person_images.query.values()))
    async with serve(make_settings(max_batch=1)) as (_, client):
        files = [("images", ("q.png", image, "image/png"))]
        replies = await asyncio.gather(*(client.post("/embeddings", files=files) for _ in range(8)))
        assert all(r.status_code == 200 for r in replies)
        batches = _histogram((await client.get("/metrics")).text, "reid_batch_size")
        assert batches["count"] == 8 and batches["1.0"] == 8


async def test_full_queue_answers_503_with_retry_after(make_settings, serve, person_images) -> None:
    images = next(iter(person_images.enrol.values()))
    async with serve(make_settings(queue_size=2, retry_after_s=3)) as (_, client):
        files = [("images", (f"{i}.png", img, "image/png")) for i, img in enumerate(images)]  # 4 > 2
        r = await client.post("/embeddings", files=files)
        assert r.status_code == 503 and r.headers["retry-after"] == "3"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "queue is full" in r.json()["detail"]
        ok = await client.post("/embeddings", files=files[:2])
        assert ok.status_code == 200
