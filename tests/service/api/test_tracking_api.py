"""/search options for tracking pipelines through the real app: tracklets, person rows, filters."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta

import numpy as np
import pytest

pytestmark = pytest.mark.anyio


def _b64(images: list[bytes]) -> list[str]:
    return [base64.b64encode(b).decode() for b in images]


async def test_tracklet_person_rows_and_filters(make_settings, serve, person_images) -> None:
    persons = list(person_images.enrol)
    async with serve(make_settings()) as (_, client):
        ids: dict[str, list[int]] = {}
        for n, person in enumerate(persons):
            images = person_images.enrol[person]
            for cam in range(2):  # two cameras per person, enrolled at distinct times
                body = {
                    "images": _b64(images[2 * cam : 2 * cam + 2]),
                    "person_id": person,
                    "camera_id": f"c{cam}",
                }
                r = await client.post("/gallery", json=body)
                assert r.status_code == 201, r.text
                ids.setdefault(person, []).extend(r.json()["ids"])
            if n == 0:
                await asyncio.sleep(0.01)
                middle = datetime.now().astimezone()
                await asyncio.sleep(0.01)
        track = _b64([person_images.query[persons[1]], *person_images.enrol[persons[1]][:1]])

        r = await client.post(
            "/search", json={"images": track, "aggregate": "mean", "metric": "cosine", "top_k": 12}
        )
        assert r.status_code == 200, r.text
        (row,) = r.json()["results"]
        singles = await client.post("/search", json={"images": track, "metric": "cosine", "top_k": 12})
        per_image = {m["id"]: [] for m in row["matches"]}
        for res in singles.json()["results"]:
            for m in res["matches"]:
                per_image[m["id"]].append(m["score"])
        for m in row["matches"]:  # the tracklet score is the mean cosine over its images
            assert m["score"] == pytest.approx(np.mean(per_image[m["id"]]), abs=1e-5)
        assert row["matches"][0]["person_id"] == persons[1]

        r = await client.post(
            "/search", json={"images": track, "aggregate": "mean", "group_by": "person", "top_k": 2}
        )
        (row,) = r.json()["results"]
        assert row["matches"] == [] and len(row["persons"]) == 2
        best = row["persons"][0]
        assert best["person_id"] == persons[1] and best["entries"] == 4 and best["same_person"] is True
        assert best["id"] in ids[persons[1]]

        files = [("images", ("q.png", person_images.query[persons[0]], "image/png"))]
        r = await client.post(
            "/search",
            files=files,
            data={
                "camera_ids": ["c1"],
                "created_before": middle.isoformat(),
                "top_k": "10",
                "metric": "cosine",
            },
        )
        assert r.status_code == 200, r.text
        got = {m["id"] for m in r.json()["results"][0]["matches"]}
        assert got == set(ids[persons[0]][2:])  # camera c1, enrolled before the others
        r = await client.post(
            "/search",
            json={
                "images": _b64([person_images.query[persons[0]]]),
                "exclude_camera_ids": ["c0"],
                "created_after": (middle + timedelta(hours=1)).isoformat(),
            },
        )
        assert r.json().get("results", [{}])[0].get("matches") == [], r.text
        for bad in ({"created_after": "2026-01-01T00:00:00"}, {"aggregate": "max"}, {"group_by": "camera"}):
            r = await client.post("/search", json={"images": track, **bad})
            assert r.status_code == 422, bad
