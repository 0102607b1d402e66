"""Pairwise models through the real app: a tiny real encoder.onnx + comparator.onnx (onnx.helper, no torch),
real FAISS and SQLite. /search shortlists by descriptor and re-ranks with the comparator; /verify runs the
comparator; encodings are stored as float16 per entry and model, erased with the person, and re-derived from
stored images when the model changes."""

from __future__ import annotations

import base64
import io
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from service.contract.manifest import (
    InputSpec,
    ModelManifest,
    PairwiseSpec,
    Provenance,
    ScoringMode,
    Threshold,
    file_entry,
)
from service.contract.preprocess import preprocess_bytes
from service.gallery.gallery import Match
from service.gallery.pairwise import rerank

pytestmark = pytest.mark.anyio
DESC_DIM, POOLED = 16, 8
ENC_DIM = DESC_DIM + POOLED  # encoding = [descriptor | pooled conv features]
H, W = 32, 16
SAME = 1
MAX_PAIRS = 5  # comparator_max_batch: a 12-entry gallery takes three comparator calls
SPEC = InputSpec(height=H, width=W, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
COLOURS = {"p-red": (210, 40, 40), "p-green": (40, 190, 60), "p-blue": (40, 60, 210)}


def _image(colour: tuple[int, int, int], seed: int) -> bytes:
    """A 48×24 'pedestrian': clothing colour with noise, darker legs below a random height."""
    rng = np.random.default_rng(seed)
    arr = np.empty((48, 24, 3), dtype=np.float32)
    arr[:] = colour
    arr += rng.uniform(-25, 25, size=arr.shape)
    arr[int(rng.integers(26, 34)) :] *= 0.75
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _encoder(rng: np.random.Generator, normalize: bool = True) -> onnx.ModelProto:
    """Conv 1×1 → GAP → Gemm → L2-normalize = descriptor; encoding = [descriptor | pooled features]."""
    inits = {
        "conv_w": rng.standard_normal((POOLED, 3, 1, 1)).astype(np.float32),
        "conv_b": (0.1 * rng.standard_normal(POOLED)).astype(np.float32),
        "gemm_w": rng.standard_normal((POOLED, DESC_DIM)).astype(np.float32),
        "gemm_b": (0.1 * rng.standard_normal(DESC_DIM)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["images", "conv_w", "conv_b"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "gemm_w", "gemm_b"], ["raw"]),
        helper.make_node("ReduceL2", ["raw"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Div" if normalize else "Add", ["raw", "norm"], ["descriptor"]),
        helper.make_node("Concat", ["descriptor", "flat"], ["encoding"], axis=1),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "tiny_pairwise_encoder",
        [vi("images", TensorProto.FLOAT, ["N", 3, H, W])],
        [
            vi("encoding", TensorProto.FLOAT, ["N", ENC_DIM]),
            vi("descriptor", TensorProto.FLOAT, ["N", DESC_DIM]),
        ],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    return _finish(graph)


def _comparator(weight: np.ndarray, bias: float) -> onnx.ModelProto:
    """(a − b)² → Gemm (the 'same' logit is Σ w(a − b)² + bias) → Softmax → score = p(same)."""
    b_mat = np.zeros((ENC_DIM, 2), dtype=np.float32)
    b_mat[:, SAME] = weight
    c_vec = np.array([0.0, bias] if SAME == 1 else [bias, 0.0], dtype=np.float32)
    nodes = [
        helper.make_node("Sub", ["encoding_a", "encoding_b"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("Gemm", ["sq", "cmp_w", "cmp_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("Gather", ["probabilities", "same_col"], ["score"], axis=1),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "tiny_pairwise_comparator",
        [
            vi("encoding_a", TensorProto.FLOAT, ["N", ENC_DIM]),
            vi("encoding_b", TensorProto.FLOAT, ["N", ENC_DIM]),
        ],
        [vi("score", TensorProto.FLOAT, ["N"]), vi("probabilities", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(b_mat, "cmp_w"),
            numpy_helper.from_array(c_vec, "cmp_b"),
            numpy_helper.from_array(np.array(SAME, dtype=np.int64), "same_col"),
        ],
    )
    return _finish(graph)


def _save_model(
    folder: Path,
    name: str,
    encoder: onnx.ModelProto,
    comparator: onnx.ModelProto,
    scoring: dict[str, ScoringMode],
    encoding_dim: int = ENC_DIM,
) -> None:
    folder.mkdir(parents=True)
    onnx.save(encoder, folder / "encoder.onnx")
    onnx.save(comparator, folder / "comparator.onnx")
    ModelManifest(
        name=name,
        kind="pairwise",
        description="tiny pairwise test model (mean-colour descriptor, weighted squared differences)",
        input=SPEC,
        files={
            "encoder": file_entry(folder, "encoder.onnx"),
            "comparator": file_entry(folder, "comparator.onnx"),
        },
        embedding_dim=DESC_DIM,
        normalize_embeddings=True,
        default_metric="pairwise",
        scoring=scoring,
        pairwise=PairwiseSpec(encoding_dim=encoding_dim, comparator_max_batch=MAX_PAIRS, same_index=SAME),
        provenance=Provenance(recipe="test", dataset="synthetic-colours", synthetic=True),
    ).save(folder)


def _mode(same: np.ndarray, diff: np.ndarray) -> ScoringMode:
    assert same.min() > diff.max(), "the tiny model must separate the colour identities"
    threshold = float((same.min() + diff.max()) / 2)
    return ScoringMode(
        higher_is_better=True,
        thresholds={"eer": Threshold(threshold=threshold, tpr=1.0, fmr=0.0)},
        default_threshold="eer",
    )


@pytest.fixture(scope="module")
def pairwise_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-pairwise and tiny-pairwise-b (same graphs, another model id), plus two broken folders."""
    root = tmp_path_factory.mktemp("pairwise-models")
    rng = np.random.default_rng(2024)
    encoder = _encoder(rng)
    session = ort.InferenceSession(encoder.SerializeToString(), providers=["CPUExecutionProvider"])
    calib = [_image(c, 5000 + 10 * i + j) for i, c in enumerate(COLOURS.values()) for j in range(4)]
    enc, desc = session.run(["encoding", "descriptor"], {"images": _batch(calib)})
    labels = np.repeat(np.arange(len(COLOURS)), 4)
    ia, ib = np.triu_indices(len(enc), k=1)
    same = labels[ia] == labels[ib]
    u = rng.uniform(0.2, 1.8, ENC_DIM)
    u[DESC_DIM:] *= 3.0  # the pooled features weigh in, so the comparator's order differs from cosine
    wd2 = ((enc[ia] - enc[ib]) ** 2) @ u
    mid = float((wd2[same].max() + wd2[~same].min()) / 2)
    weight = (-4.0 * u / mid).astype(np.float32)  # logit = 4 − 4·wd²/mid: zero half-way between the classes
    p_same = 1.0 / (1.0 + np.exp(-(4.0 - 4.0 * wd2 / mid)))
    cos = np.sum(desc[ia] * desc[ib], axis=1)
    scoring = {"pairwise": _mode(p_same[same], p_same[~same]), "cosine": _mode(cos[same], cos[~same])}
    comparator = _comparator(weight, 4.0)
    _save_model(root / "tiny-pairwise", "tiny-pairwise", encoder, comparator, scoring)
    _save_model(root / "tiny-pairwise-b", "tiny-pairwise-b", encoder, comparator, scoring)
    _save_model(
        root / "bad-norm",
        "bad-norm",
        _encoder(np.random.default_rng(2024), normalize=False),
        comparator,
        scoring,
    )
    _save_model(root / "bad-dim", "bad-dim", encoder, comparator, scoring, encoding_dim=ENC_DIM + 1)
    return root


def _batch(images: list[bytes]) -> np.ndarray:
    return np.stack([preprocess_bytes(b, SPEC.to_spec()) for b in images])


@dataclass(frozen=True)
class People:
    enrol: dict[str, list[bytes]]
    query: dict[str, bytes]


@pytest.fixture(scope="module")
def people() -> People:
    enrol = {p: [_image(c, 100 * i + j) for j in range(4)] for i, (p, c) in enumerate(COLOURS.items())}
    query = {p: _image(c, 100 * i + 50) for i, (p, c) in enumerate(COLOURS.items())}
    return People(enrol=enrol, query=query)


def _b64(images: list[bytes]) -> list[str]:
    return [base64.b64encode(b).decode() for b in images]


async def _enrol(client, people: People) -> dict[str, list[int]]:
    """Each person: two images from cam-a, two from cam-b."""
    ids: dict[str, list[int]] = {}
    for person, images in people.enrol.items():
        for cam, part in (("cam-a", images[:2]), ("cam-b", images[2:])):
            r = await client.post(
                "/gallery", json={"images": _b64(part), "person_id": person, "camera_id": cam}
            )
            assert r.status_code == 201, r.text
            ids.setdefault(person, []).extend(r.json()["ids"])
    return ids


async def _search(client, query: bytes, **fields: object) -> list[dict]:
    r = await client.post("/search", json={"images": _b64([query]), **fields})
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["matches"]


def _settings(make_settings, pairwise_models: Path, **overrides: object):
    return make_settings(models_dir=pairwise_models, model="tiny-pairwise", **overrides)


async def test_search_and_verify_decide_correctly(make_settings, serve, pairwise_models, people) -> None:
    async with serve(_settings(make_settings, pairwise_models)) as (_, client):
        ready = (await client.get("/ready")).json()
        assert ready["ready"] and ready["kind"] == "pairwise" and "pairwise" in ready["metrics"]
        models = (await client.get("/models")).json()
        assert models["kind"] == "pairwise"
        assert {m["name"]: m["kind"] for m in models["models"]}["tiny-pairwise"] == "pairwise"
        ids = await _enrol(client, people)
        for person, query in people.query.items():
            r = await client.post("/search", json={"images": _b64([query]), "top_k": 12})
            assert r.json()["metric"] == "pairwise"  # the manifest's default
            matches = r.json()["results"][0]["matches"]
            assert [m["person_id"] for m in matches[:4]] == [person] * 4
            assert [m["same_person"] for m in matches] == [True] * 4 + [False] * 8
            scores = [m["score"] for m in matches]
            assert scores == sorted(scores, reverse=True) and 0.0 < scores[-1] < scores[0] < 1.0
        red, green = people.enrol["p-red"], people.enrol["p-green"]
        for body, same in (
            ({"image_a": _b64([people.query["p-red"]])[0], "image_b": _b64([red[1]])[0]}, True),
            ({"image_a": _b64([people.query["p-red"]])[0], "gallery_id_b": ids["p-green"][0]}, False),
            ({"gallery_id_a": ids["p-blue"][0], "gallery_id_b": ids["p-blue"][3]}, True),
            ({"gallery_id_a": ids["p-red"][0], "image_b": _b64([green[2]])[0]}, False),
        ):
            r = await client.post("/verify", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["metric"] == "pairwise" and r.json()["same_person"] is same, (
                body.keys(),
                r.json(),
            )
        # the descriptor can be used on its own: /embeddings returns it, and cosine works on it
        r = await client.post("/embeddings", json={"images": _b64(list(people.query.values()))})
        body = r.json()
        assert body["dim"] == DESC_DIM and body["normalized"] is True
        np.testing.assert_allclose(np.linalg.norm(body["embeddings"], axis=1), 1.0, atol=1e-5)
        r = await client.post(
            "/verify", json={"image_a": _b64([red[0]])[0], "image_b": _b64([red[1]])[0], "metric": "cosine"}
        )
        assert r.json()["same_person"] is True


async def test_full_shortlist_equals_exhaustive_comparator_scoring(
    make_settings, serve, pairwise_models, people
) -> None:
    folder = pairwise_models / "tiny-pairwise"
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    comparator = ort.InferenceSession(str(folder / "comparator.onnx"), providers=["CPUExecutionProvider"])
    async with serve(_settings(make_settings, pairwise_models, shortlist=12)) as (app, client):
        await _enrol(client, people)
        gallery = app.state.service.gallery
        all_ids = sorted(gallery.store.labels())
        found, stored = gallery.encodings(all_ids)
        assert found.tolist() == all_ids and stored.shape == (12, ENC_DIM)
        differs_from_cosine = False
        for query in people.query.values():
            matches = await _search(client, query, top_k=12)
            # reference: every gallery entry scored alone (batch of one) by a separate comparator session
            q_enc = encoder.run(["encoding"], {"images": _batch([query])})[0]
            ref = np.array(
                [
                    comparator.run(["score"], {"encoding_a": q_enc, "encoding_b": stored[i : i + 1]})[0][0]
                    for i in range(len(all_ids))
                ]
            )
            order = sorted(range(len(all_ids)), key=lambda i: (-ref[i], all_ids[i]))
            assert [m["id"] for m in matches] == [all_ids[i] for i in order]
            np.testing.assert_allclose([m["score"] for m in matches], ref[order], rtol=1e-5, atol=1e-6)
            cosine = await _search(client, query, top_k=12, metric="cosine")
            differs_from_cosine |= [m["id"] for m in cosine] != [m["id"] for m in matches]
        assert differs_from_cosine, "the test model's comparator should re-order the descriptor ranking"


async def test_short_shortlist_is_reranked_and_filters_apply_before_the_cut(
    make_settings, serve, pairwise_models, people
) -> None:
    async with serve(_settings(make_settings, pairwise_models, shortlist=3)) as (_, client):
        ids = await _enrol(client, people)
        for query in people.query.values():
            cosine = await _search(client, query, top_k=3, metric="cosine")
            full = await _search(client, query, top_k=3, metric="pairwise")
            assert {m["id"] for m in full} == {m["id"] for m in cosine}  # the shortlist is the cosine top 3
            assert [m["score"] for m in full] == sorted((m["score"] for m in full), reverse=True)
        # top_k above the shortlist: the shortlist grows to top_k
        assert len(await _search(client, people.query["p-red"], top_k=7)) == 7
        # filters first, then the shortlist: other persons only, all from the allowed set
        matches = await _search(client, people.query["p-red"], person_ids=["p-blue"], top_k=3)
        assert [m["person_id"] for m in matches] == ["p-blue"] * 3
        matches = await _search(client, people.query["p-red"], exclude_camera_id="cam-a", top_k=3)
        assert {m["id"] for m in matches[:2]} == set(ids["p-red"][2:]) and len(matches) == 3
        assert all(m["camera_id"] == "cam-b" for m in matches)


async def test_encodings_are_fp16_and_erased_with_the_person(
    make_settings, serve, pairwise_models, people
) -> None:
    settings = _settings(make_settings, pairwise_models)
    db = settings.data_dir / "gallery.sqlite3"
    async with serve(settings) as (_, client):
        ids = await _enrol(client, people)
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
        matches = await _search(client, people.query["p-red"], top_k=12)
        assert len(matches) == 8 and "p-red" not in {m["person_id"] for m in matches}
        r = await client.post(
            "/verify", json={"gallery_id_a": ids["p-red"][0], "gallery_id_b": ids["p-blue"][0]}
        )
        assert r.status_code == 404


@pytest.mark.parametrize("store_images", [True, False])
async def test_model_change_re_derives_encodings_or_reports(
    make_settings, serve, pairwise_models, people, store_images: bool
) -> None:
    async with serve(_settings(make_settings, pairwise_models, store_images=store_images)) as (_, client):
        await _enrol(client, people)
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
            assert [m["person_id"] for m in (await _search(client, query, top_k=4))] == [person] * 4


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
    async with serve(_settings(make_settings, pairwise_models)) as (app, client):
        pairwise = app.state.service.runtime.pairwise
        real = pairwise.compare

        def spy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            threads.append(threading.current_thread().name)
            return real(a, b)

        pairwise.compare = spy
        ids = await _enrol(client, people)
        await _search(client, people.query["p-red"], top_k=3)
        searched = len(threads)
        body = {"image_a": _b64([people.query["p-red"]])[0], "gallery_id_b": ids["p-red"][0]}
        r = await client.post("/verify", json=body)
        assert r.status_code == 200 and r.json()["metric"] == "pairwise", r.text
    assert 0 < searched < len(threads)
    assert all(name.startswith("reid-model") for name in threads), threads


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
        r = await client.post("/search", json={"images": _b64([people.query["p-red"]]), "metric": "pairwise"})
        assert r.status_code == 422 and "pairwise" in r.json()["detail"]


async def test_pairwise_tracklet_is_the_mean_comparator_score(
    make_settings, serve, pairwise_models, people
) -> None:
    settings = _settings(make_settings, pairwise_models, shortlist=12)  # an exhaustive shortlist
    async with serve(settings) as (_, client):
        await _enrol(client, people)
        track = _b64([people.query["p-red"], people.enrol["p-red"][0]])
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
