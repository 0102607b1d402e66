"""Gallery search against brute force, for every store (embedded SQLite + FAISS, Milvus): exact softmax
(through the real head graph), cosine, correlation and euclidean on 1,000 random gallery vectors; filters;
deletes; approximate indexes; the embedded store's snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.contract.score_math import HeadWeights, center_normalize, l2_normalize, sigmoid
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import GalleryStore, NewEntry, SearchFilter, VectorQuery
from service.inference.sessions import ModelRuntime
from tests.service.gallery.conftest import MakeGallery

N_GALLERY, N_QUERY, DIM = 1000, 5, 16


@pytest.fixture(scope="module")
def runtime(models_dir: Path) -> ModelRuntime:
    """The tiny siamese model (its head graph is the brute-force reference)."""
    folder = models_dir / "tiny-siamese"
    if not folder.is_dir():
        pytest.skip("needs the tiny-siamese test model")
    return ModelRuntime.load(folder, device="cpu")


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((N_GALLERY, DIM)).astype(np.float32)
    queries = rng.standard_normal((N_QUERY, DIM)).astype(np.float32)
    return gallery, queries


def _gallery(
    make_gallery: MakeGallery, head: HeadWeights | None, index_type: str = "flat", persons: int = 50
) -> tuple[GalleryStore, np.ndarray]:
    """A gallery of the 1,000 random vectors (person ``p{i % persons}``, camera ``c{i % 6}``), and the ids."""
    metrics = ["cosine", "correlation", "euclidean"] + (["softmax"] if head is not None else [])
    gallery = make_gallery(metrics=metrics, head=head, index_type=index_type)
    vectors, _ = _data()
    entries = [
        NewEntry(person_id=f"p{i % persons}", camera_id=f"c{i % 6}", metadata={}, image=None)
        for i in range(N_GALLERY)
    ]
    ids = gallery.add(entries, vectors)
    assert len(set(ids)) == N_GALLERY and ids == sorted(ids) and gallery.size == N_GALLERY
    return gallery, np.asarray(ids, dtype=np.int64)


def test_exact_softmax_search_equals_the_head_graph(make_gallery: MakeGallery, runtime: ModelRuntime) -> None:
    vectors, queries = _data()
    head = runtime.head_weights
    assert head is not None
    # scale random vectors so the head's logits lie in a non-saturated range (distinct probabilities)
    scale = float(np.sqrt(4.0 / -head.weight.mean() / DIM))
    gallery, first = _gallery(make_gallery, head)
    assert sorted(gallery.delete(first.tolist())) == first.tolist() and gallery.size == 0
    ids = gallery.add([NewEntry("p", None, {}, None)] * N_GALLERY, vectors * scale)
    id_arr = np.asarray(ids)
    results = gallery.search(VectorQuery("softmax", queries * scale, N_GALLERY))
    for q, row in zip(queries * scale, results, strict=True):
        onnx_p = runtime.same_probability(np.repeat(q[None], N_GALLERY, 0), vectors * scale).astype(
            np.float64
        )
        brute_logit = ((q[None].astype(np.float64) - vectors * scale) ** 2) @ head.weight + head.bias
        order = np.argsort(-brute_logit, kind="stable")
        got_ids = np.array([m.id for m in row])
        got = np.array([m.score for m in row])
        assert len(row) == N_GALLERY
        np.testing.assert_array_equal(got_ids, id_arr[order])
        np.testing.assert_allclose(got, sigmoid(brute_logit[order]), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got, onnx_p[order], atol=1e-5, rtol=0)
        assert got.max() > 0.5 and np.mean((got > 1e-3) & (got < 1 - 1e-3)) > 0.25  # not saturated


@pytest.mark.parametrize("metric", ["cosine", "correlation", "euclidean"])
def test_metrics_equal_numpy_brute_force(make_gallery: MakeGallery, metric: str) -> None:
    vectors, queries = _data()
    gallery, ids = _gallery(make_gallery, None)
    if metric == "cosine":
        scores = l2_normalize(queries).astype(np.float64) @ l2_normalize(vectors).T.astype(np.float64)
    elif metric == "correlation":
        scores = np.corrcoef(np.concatenate([queries, vectors]).astype(np.float64))[:N_QUERY, N_QUERY:]
        np.testing.assert_allclose(
            scores, center_normalize(queries) @ center_normalize(vectors).T, atol=1e-5
        )  # Pearson, independently computed
    else:
        scores = -np.linalg.norm(queries[:, None, :].astype(np.float64) - vectors[None], axis=2)
    results = gallery.search(VectorQuery(metric, queries, 100))
    for qi, row in enumerate(results):
        order = np.argsort(-scores[qi], kind="stable")[:100]
        assert [m.id for m in row] == ids[order].tolist()
        expected = -scores[qi][order] if metric == "euclidean" else scores[qi][order]
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose([m.score for m in row], expected, atol=1e-5 * scale, rtol=0)


def test_filters_and_deletes(make_gallery: MakeGallery) -> None:
    _, queries = _data()
    gallery, ids = _gallery(make_gallery, None)
    position = {int(i): p for p, i in enumerate(ids.tolist())}
    full = gallery.search(VectorQuery("cosine", queries, 1000))
    top_ids = [row[0].id for row in full]
    unknown = int(ids.max()) + 1_000_000
    assert sorted(gallery.delete([*top_ids, unknown])) == sorted(set(top_ids))
    assert gallery.size == N_GALLERY - len(set(top_ids))
    after = gallery.search(VectorQuery("cosine", queries, 1000))
    for row in after:
        assert len(row) == N_GALLERY - len(set(top_ids)) and not set(top_ids) & {m.id for m in row}
    where = SearchFilter.of(exclude_camera_ids=["c0"], person_ids=["p3", "p7"])
    rows = gallery.search(VectorQuery("cosine", queries, 10, where))
    for row, full_row in zip(rows, after, strict=True):
        assert len(row) == 10
        assert all(m.person_id in ("p3", "p7") and m.camera_id != "c0" for m in row)
        # the filtered ranking is the unfiltered ranking restricted to the allowed entries
        allowed = [m.id for m in full_row if m.person_id in ("p3", "p7") and m.camera_id != "c0"]
        assert [m.id for m in row] == allowed[:10]
    erased = gallery.erase_person("p3")
    assert len(erased) == 20 - sum(1 for i in set(top_ids) if position[i] % 50 == 3)
    assert all(position[i] % 50 == 3 for i in erased) and gallery.erase_person("p3") == []
    rows = gallery.search(VectorQuery("cosine", queries, 1000))
    assert all(m.person_id != "p3" for row in rows for m in row)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_indexes_never_return_deleted_ids(make_gallery: MakeGallery, index_type: str) -> None:
    vectors, queries = _data()
    gallery, ids = _gallery(make_gallery, None, index_type=index_type)
    if index_type == "ivf" and isinstance(gallery, Gallery):
        assert gallery.indexes["cosine"].trained_on == N_GALLERY  # retrained once the gallery grew
    exact = l2_normalize(queries) @ l2_normalize(vectors).T
    truth = ids[np.argsort(-exact, axis=1)[:, :10]]
    got = gallery.search(VectorQuery("cosine", queries, 10))
    recall = np.mean(
        [len(set(t.tolist()) & {m.id for m in row}) / 10 for t, row in zip(truth, got, strict=True)]
    )
    assert recall >= 0.8, recall
    dead = truth[:, :3].ravel().tolist()
    gallery.delete(dead)
    for row in gallery.search(VectorQuery("cosine", queries, 10)):
        assert len(row) == 10 and not set(dead) & {m.id for m in row}
    gallery.close()  # as at shutdown; the same store opened again (a restart)
    reopened = make_gallery(metrics=["cosine", "correlation", "euclidean"], index_type=index_type)
    assert reopened.rebuilt == [] and reopened.size == N_GALLERY - len(set(dead))
    for row in reopened.search(VectorQuery("cosine", queries, 10)):
        assert not set(dead) & {m.id for m in row}


def test_stale_snapshot_is_rebuilt(tmp_path: Path) -> None:
    """Embedded store only: its FAISS snapshots are checked against SQLite at start."""
    config = IndexConfig()
    gallery = Gallery(tmp_path, model_id="test@1", dim=DIM, metrics=["cosine"], head=None, config=config)
    gallery.open()
    vectors, _ = _data()
    ids = gallery.add([NewEntry("p", None, {}, None)] * N_GALLERY, vectors)
    gallery.snapshot()
    gallery.store.delete(ids[:3])  # a write the snapshot does not reflect (as after a crash)
    gallery.store.close()
    reopened = Gallery(tmp_path, model_id="test@1", dim=DIM, metrics=["cosine"], head=None, config=config)
    reopened.open()
    assert reopened.rebuilt and "stale" in reopened.rebuilt[0]
    assert reopened.size == N_GALLERY - 3
    assert reopened.store.snapshot("test@1.cosine.flat")["row_count"] == N_GALLERY - 3
