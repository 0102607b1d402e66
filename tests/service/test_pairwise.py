"""Pairwise models through the real app: a tiny real encoder.onnx + comparator.onnx (``tiny_pairwise.py``),
real FAISS and SQLite. /search shortlists by descriptor and re-ranks with the comparator; /verify runs the
comparator. How encodings are stored, erased and re-derived is tested in ``test_pairwise_lifecycle.py``."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from service.gallery.gallery import Match
from service.gallery.pairwise import rerank
from tests.service.tiny_pairwise import DESC_DIM, ENC_DIM, b64, batch, enrol, pairwise_settings, search

pytestmark = pytest.mark.anyio


async def test_search_and_verify_decide_correctly(make_settings, serve, pairwise_models, people) -> None:
    async with serve(pairwise_settings(make_settings, pairwise_models)) as (_, client):
        ready = (await client.get("/ready")).json()
        assert ready["ready"] and ready["kind"] == "pairwise" and "pairwise" in ready["metrics"]
        models = (await client.get("/models")).json()
        assert models["kind"] == "pairwise"
        assert {m["name"]: m["kind"] for m in models["models"]}["tiny-pairwise"] == "pairwise"
        ids = await enrol(client, people)
        for person, query in people.query.items():
            r = await client.post("/search", json={"images": b64([query]), "top_k": 12})
            assert r.json()["metric"] == "pairwise"  # the manifest's default
            matches = r.json()["results"][0]["matches"]
            assert [m["person_id"] for m in matches[:4]] == [person] * 4
            assert [m["same_person"] for m in matches] == [True] * 4 + [False] * 8
            scores = [m["score"] for m in matches]
            assert scores == sorted(scores, reverse=True) and 0.0 < scores[-1] < scores[0] < 1.0
        red, green = people.enrol["p-red"], people.enrol["p-green"]
        for body, same in (
            ({"image_a": b64([people.query["p-red"]])[0], "image_b": b64([red[1]])[0]}, True),
            ({"image_a": b64([people.query["p-red"]])[0], "gallery_id_b": ids["p-green"][0]}, False),
            ({"gallery_id_a": ids["p-blue"][0], "gallery_id_b": ids["p-blue"][3]}, True),
            ({"gallery_id_a": ids["p-red"][0], "image_b": b64([green[2]])[0]}, False),
        ):
            r = await client.post("/verify", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["metric"] == "pairwise" and r.json()["same_person"] is same, (
                body.keys(),
                r.json(),
            )
        # the descriptor can be used on its own: /embeddings returns it, and cosine works on it
        r = await client.post("/embeddings", json={"images": b64(list(people.query.values()))})
        body = r.json()
        assert body["dim"] == DESC_DIM and body["normalized"] is True
        np.testing.assert_allclose(np.linalg.norm(body["embeddings"], axis=1), 1.0, atol=1e-5)
        r = await client.post(
            "/verify", json={"image_a": b64([red[0]])[0], "image_b": b64([red[1]])[0], "metric": "cosine"}
        )
        assert r.json()["same_person"] is True


async def test_full_shortlist_equals_exhaustive_comparator_scoring(
    make_settings, serve, pairwise_models, people
) -> None:
    folder = pairwise_models / "tiny-pairwise"
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    comparator = ort.InferenceSession(str(folder / "comparator.onnx"), providers=["CPUExecutionProvider"])
    async with serve(pairwise_settings(make_settings, pairwise_models, shortlist=12)) as (app, client):
        await enrol(client, people)
        gallery = app.state.service.gallery
        all_ids = sorted(gallery.store.labels())
        found, stored = gallery.encodings(all_ids)
        assert found.tolist() == all_ids and stored.shape == (12, ENC_DIM)
        differs_from_cosine = False
        for query in people.query.values():
            matches = await search(client, query, top_k=12)
            # reference: every gallery entry scored alone (batch of one) by a separate comparator session
            q_enc = encoder.run(["encoding"], {"images": batch([query])})[0]
            ref = np.array(
                [
                    comparator.run(["score"], {"encoding_a": q_enc, "encoding_b": stored[i : i + 1]})[0][0]
                    for i in range(len(all_ids))
                ]
            )
            order = sorted(range(len(all_ids)), key=lambda i: (-ref[i], all_ids[i]))
            assert [m["id"] for m in matches] == [all_ids[i] for i in order]
            np.testing.assert_allclose([m["score"] for m in matches], ref[order], rtol=1e-5, atol=1e-6)
            cosine = await search(client, query, top_k=12, metric="cosine")
            differs_from_cosine |= [m["id"] for m in cosine] != [m["id"] for m in matches]
        assert differs_from_cosine, "the test model's comparator should re-order the descriptor ranking"


async def test_short_shortlist_is_reranked_and_filters_apply_before_the_cut(
    make_settings, serve, pairwise_models, people
) -> None:
    async with serve(pairwise_settings(make_settings, pairwise_models, shortlist=3)) as (_, client):
        ids = await enrol(client, people)
        for query in people.query.values():
            cosine = await search(client, query, top_k=3, metric="cosine")
            full = await search(client, query, top_k=3, metric="pairwise")
            assert {m["id"] for m in full} == {m["id"] for m in cosine}  # the shortlist is the cosine top 3
            assert [m["score"] for m in full] == sorted((m["score"] for m in full), reverse=True)
        # top_k above the shortlist: the shortlist grows to top_k
        assert len(await search(client, people.query["p-red"], top_k=7)) == 7
        # filters first, then the shortlist: other persons only, all from the allowed set
        matches = await search(client, people.query["p-red"], person_ids=["p-blue"], top_k=3)
        assert [m["person_id"] for m in matches] == ["p-blue"] * 3
        matches = await search(client, people.query["p-red"], exclude_camera_id="cam-a", top_k=3)
        assert {m["id"] for m in matches[:2]} == set(ids["p-red"][2:]) and len(matches) == 3
        assert all(m["camera_id"] == "cam-b" for m in matches)


def test_rerank_drops_entries_deleted_after_the_shortlist() -> None:
    shortlist = [Match(id=i, person_id=f"p{i}", camera_id=None, score=0.0) for i in (1, 3, 2)]
    gallery_ids = np.array([1, 3], dtype=np.int64)  # id 2 was deleted meanwhile
    encodings = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)

    def compare(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(a * b, axis=1)

    row = rerank(shortlist, np.array([0.2, 0.9], np.float32), gallery_ids, encodings, compare, top_k=5)
    assert [(m.id, round(m.score, 6)) for m in row] == [(3, 0.9), (1, 0.2)]
    assert rerank(shortlist, np.zeros(2, np.float32), gallery_ids[:0], encodings[:0], compare, top_k=5) == []


async def test_pairwise_metric_is_refused_for_other_model_kinds(make_settings, serve, people) -> None:
    async with serve(make_settings()) as (_, client):
        ready = (await client.get("/ready")).json()
        if ready["kind"] == "pairwise":
            pytest.skip("the default test model is pairwise")
        assert "pairwise" not in ready["metrics"]
        r = await client.post("/search", json={"images": b64([people.query["p-red"]]), "metric": "pairwise"})
        assert r.status_code == 422 and "pairwise" in r.json()["detail"]


async def test_pairwise_tracklet_is_the_mean_comparator_score(
    make_settings, serve, pairwise_models, people
) -> None:
    settings = pairwise_settings(make_settings, pairwise_models, shortlist=12)  # an exhaustive shortlist
    async with serve(settings) as (_, client):
        await enrol(client, people)
        track = b64([people.query["p-red"], people.enrol["p-red"][0]])
        r = await client.post("/search", json={"images": track, "aggregate": "mean", "top_k": 12})
        assert r.status_code == 200, r.text
        assert r.json()["metric"] == "pairwise"
        (row,) = r.json()["results"]
        singles = (await client.post("/search", json={"images": track, "top_k": 12})).json()["results"]
        per_image = [{m["id"]: m["score"] for m in res["matches"]} for res in singles]
        assert len(row["matches"]) == 12
        for m in row["matches"]:
            assert m["score"] == pytest.approx(np.mean([s[m["id"]] for s in per_image]), rel=1e-5, abs=1e-6)
        assert [m["person_id"] for m in row["matches"][:4]] == ["p-red"] * 4
        r = await client.post("/search", json={"images": track, "aggregate": "mean", "group_by": "person"})
        persons = r.json()["results"][0]["persons"]
        assert persons[0]["person_id"] == "p-red" and persons[0]["entries"] == 4
        assert persons[0]["score"] == row["matches"][0]["score"]
