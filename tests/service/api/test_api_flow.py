"""The whole flow through the real app: enrol, search, verify, delete, erase, restart on the same data dir."""

from __future__ import annotations

import base64

import pytest

from service.contract.manifest import load

pytestmark = pytest.mark.anyio
METRICS = ("softmax", "pairwise", "cosine", "correlation", "euclidean")


async def _metrics(client) -> list[str]:
    """The scoring modes the served model offers (softmax: Siamese models; pairwise: comparator models)."""
    offered = (await client.get("/ready")).json()["metrics"]
    return [m for m in METRICS if m in offered]


def _files(images: list[bytes], field: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (f"img{i}.png", img, "image/png")) for i, img in enumerate(images)]


async def _enrol_all(client, person_images) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    for n, (person, images) in enumerate(person_images.enrol.items()):
        if n == 0:  # one person through JSON + base64, the others through multipart files
            body = {
                "images": [base64.b64encode(b).decode() for b in images],
                "person_id": person,
                "camera_id": "cam-1",
                "metadata": {"source": "test"},
            }
            r = await client.post("/gallery", json=body)
        else:
            r = await client.post(
                "/gallery",
                files=_files(images),
                data={"person_id": person, "camera_id": f"cam-{n + 1}", "metadata": '{"n": 1}'},
            )
        assert r.status_code == 201, r.text
        assert len(r.json()["ids"]) == 4
        ids[person] = r.json()["ids"]
    return ids


async def _top(client, query: bytes, metric: str, top_k: int = 12) -> list[dict]:
    r = await client.post("/search", files=_files([query]), data={"metric": metric, "top_k": str(top_k)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metric"] == metric
    return body["results"][0]["matches"]


async def test_enrol_search_verify_delete_erase_and_restart(make_settings, serve, person_images) -> None:
    settings = make_settings()
    async with serve(settings) as (_, client):
        assert (await client.get("/ready")).status_code == 200
        ready = (await client.get("/ready")).json()
        ready_scoring = load(settings.models_dir / ready["model"].split("@")[0]).scoring
        metrics = await _metrics(client)
        ids = await _enrol_all(client, person_images)
        for metric in metrics:
            for person, query in person_images.query.items():
                matches = await _top(client, query, metric)
                assert len(matches) == 12
                assert matches[0]["person_id"] == person, (metric, person, matches[:3])
                top = [(m["person_id"], round(m["score"], 3)) for m in matches[:6]]
                if ready["kind"] == "pairwise" and metric != "pairwise":
                    # A pairwise model's descriptor only shortlists for the comparator (demo-mls: rank-1 82 %
                    # alone, 87 % re-ranked): held to a correct first match and no false accept; only the
                    # modes its manifest calibrates (cosine) decide, the others give no decision.
                    if metric not in ready_scoring:
                        assert all(m["same_person"] is None for m in matches), (metric, top)
                        continue
                    assert matches[0]["same_person"] is True, (metric, person, top)
                    assert not any(m["same_person"] for m in matches if m["person_id"] != person), top
                    continue
                # the person's 4 images occupy the first 4 ranks, and the decision says so
                assert {m["person_id"] for m in matches[:4]} == {person}, (metric, person, top)
                assert matches[0]["same_person"] is True, (metric, person, top)
                assert matches[4]["same_person"] is False, (metric, person, top)
        persons = list(person_images.query)
        for metric in metrics:
            # A metric the model has no calibrated threshold for (a pairwise model's extra descriptor
            # distances) decides nothing: /verify asks for a threshold (422), and scores with one.
            extra = {} if metric in ready_scoring else {"threshold": "0.5"}
            if extra:
                refused = await client.post(
                    "/verify",
                    files=[
                        ("image_a", ("a.png", person_images.query[persons[0]], "image/png")),
                        ("image_b", ("b.png", person_images.enrol[persons[0]][1], "image/png")),
                    ],
                    data={"metric": metric},
                )
                assert refused.status_code == 422, refused.text
                assert refused.headers["content-type"] == "application/problem+json"
                assert "threshold" in refused.json()["detail"], refused.json()
            same = await client.post(
                "/verify",
                files=[
                    ("image_a", ("a.png", person_images.query[persons[0]], "image/png")),
                    ("image_b", ("b.png", person_images.enrol[persons[0]][1], "image/png")),
                ],
                data={"metric": metric, **extra},
            )
            assert same.status_code == 200, same.text
            assert same.json()["metric"] == metric
            diff = await client.post(
                "/verify",
                json={
                    "image_a": base64.b64encode(person_images.query[persons[0]]).decode(),
                    "gallery_id_b": ids[persons[1]][0],
                    "metric": metric,
                    **{k: float(v) for k, v in extra.items()},
                },
            )
            assert diff.status_code == 200, diff.text
            if metric in ready_scoring:
                assert same.json()["same_person"] is True and diff.json()["same_person"] is False
            else:  # scored with the request's threshold: the same pair scores on the 'same' side of the other
                higher = metric != "euclidean"
                assert (same.json()["score"] > diff.json()["score"]) is higher, (same.json(), diff.json())
        # default metric and threshold come from the manifest; a request threshold overrides it
        r = await client.post(
            "/verify", json={"gallery_id_a": ids[persons[2]][0], "gallery_id_b": ids[persons[2]][1]}
        )
        body = r.json()
        manifest = load(settings.models_dir / body["model"].split("@")[0])
        mode = manifest.scoring[manifest.default_metric]
        assert body["metric"] == manifest.default_metric
        assert body["threshold"] == pytest.approx(mode.default_value())
        score, threshold = body["score"], body["threshold"]
        assert body["same_person"] is (score >= threshold if mode.higher_is_better else score <= threshold)
        r = await client.post(
            "/verify",
            json={
                "gallery_id_a": ids[persons[2]][0],
                "gallery_id_b": ids[persons[2]][1],
                "threshold": 1.01,
                "metric": "cosine",
            },
        )
        assert r.json()["same_person"] is False and r.json()["threshold"] == 1.01

        deleted_image = ids[persons[0]][0]
        r = await client.delete(f"/gallery/{deleted_image}")
        assert r.status_code == 200 and r.json()["deleted_ids"] == [deleted_image]
        r = await client.delete("/gallery", params={"person_id": persons[1]})
        assert r.status_code == 200 and sorted(r.json()["deleted_ids"]) == sorted(ids[persons[1]])
        assert r.json()["gallery_size"] == 7
        gone = {deleted_image, *ids[persons[1]]}
        for metric in metrics:
            for query in person_images.query.values():
                matches = await _top(client, query, metric, top_k=100)
                assert len(matches) == 7
                assert not gone & {m["id"] for m in matches}
                assert persons[1] not in {m["person_id"] for m in matches}
        assert (await client.get(f"/gallery/{deleted_image}")).status_code == 404

    async with serve(settings) as (_, client):  # restart on the same data dir
        ready = (await client.get("/ready")).json()
        assert ready["ready"] and ready["gallery_size"] == 7
        assert ready["startup"]["indexes_rebuilt"] == []  # consistent snapshots were loaded
        for metric in metrics:
            for person, query in person_images.query.items():
                matches = await _top(client, query, metric, top_k=100)
                assert not gone & {m["id"] for m in matches}
                if person != persons[1]:
                    assert matches[0]["person_id"] == person
        page = (await client.get("/gallery", params={"person_id": persons[1]})).json()
        assert page["total"] == 0 and page["items"] == []
        page = (await client.get("/gallery", params={"limit": 3, "offset": 0})).json()
        assert page["total"] == 7 and len(page["items"]) == 3
        assert page["items"][0]["metadata"] == {"source": "test"}


async def test_missing_or_damaged_index_is_rebuilt_from_sqlite(make_settings, serve, person_images) -> None:
    settings = make_settings()
    async with serve(settings) as (_, client):
        metrics = await _metrics(client)
        await _enrol_all(client, person_images)
    index_files = sorted((settings.data_dir / "indexes").glob("*.faiss"))
    assert len(index_files) == len(metrics)
    index_files[0].unlink()
    index_files[1].write_bytes(index_files[1].read_bytes()[:100])  # truncated
    async with serve(settings) as (_, client):
        ready = (await client.get("/ready")).json()
        rebuilt = " ".join(ready["startup"]["indexes_rebuilt"])
        assert "missing" in rebuilt and "damaged" in rebuilt
        for metric in metrics:
            for person, query in person_images.query.items():
                assert (await _top(client, query, metric))[0]["person_id"] == person


async def test_filters_exclude_camera_and_person_list(make_settings, serve, person_images) -> None:
    async with serve(make_settings()) as (_, client):
        await _enrol_all(client, person_images)
        persons = list(person_images.query)
        q = person_images.query[persons[0]]
        r = await client.post(
            "/search",
            json={"images": [base64.b64encode(q).decode()], "exclude_camera_id": "cam-1", "top_k": 20},
        )
        matches = r.json()["results"][0]["matches"]
        assert len(matches) == 8 and persons[0] not in {m["person_id"] for m in matches}
        r = await client.post("/search", files=_files([q]), data={"person_ids": [persons[2]], "top_k": "3"})
        assert {m["person_id"] for m in r.json()["results"][0]["matches"]} == {persons[2]}


async def test_models_and_embeddings(make_settings, serve, person_images) -> None:
    async with serve(make_settings()) as (_, client):
        models = (await client.get("/models")).json()
        assert models["provider"] == "CPUExecutionProvider"
        assert any(m["active"] and m["manifest"] for m in models["models"])
        imgs = list(person_images.query.values())
        r = await client.post("/embeddings", files=_files(imgs))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["embeddings"]) == 3 and len(body["embeddings"][0]) == body["dim"]
        docs = (await client.get("/openapi.json")).json()
        search_body = docs["paths"]["/search"]["post"]["requestBody"]["content"]
        assert {"application/json", "multipart/form-data"} <= set(search_body)
        assert all(
            "description" in p for p in search_body["application/json"]["schema"]["properties"].values()
        )


@pytest.mark.parametrize("store_images", [True, False])
async def test_switching_models_re_embeds_stored_images_or_says_it_cannot(
    make_settings, serve, person_images, models_dir, store_images: bool
) -> None:
    if not (models_dir / "tiny-embedding").is_dir():
        pytest.skip("needs the tiny-embedding test model")
    async with serve(make_settings(model="tiny-siamese", store_images=store_images)) as (_, client):
        await _enrol_all(client, person_images)
        item = (await client.get("/gallery", params={"limit": 1})).json()["items"][0]
        assert item["has_image"] is store_images and item["models"] == ["tiny-siamese@1"]
    async with serve(make_settings(model="tiny-embedding", store_images=store_images)) as (_, client):
        ready = (await client.get("/ready")).json()
        if store_images:
            assert ready["gallery_size"] == 12 and "not_searchable" not in ready["startup"]
            for person, query in person_images.query.items():
                assert (await _top(client, query, "cosine"))[0]["person_id"] == person
            item = (await client.get("/gallery", params={"limit": 1})).json()["items"][0]
            assert item["models"] == ["tiny-embedding@1", "tiny-siamese@1"]
        else:
            assert ready["gallery_size"] == 0 and ready["startup"]["not_searchable"] == 12
        assert (await client.get("/docs")).status_code == 200
