"""The gallery store protocol, for every store: entries and their fields, paging and filters, deletes and
erasure across models, pairwise encodings and the comparator shortlist, a model switch, and read-after-write
between two processes' views of one shared store."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from service.contract.scoring import l2_normalize
from service.gallery import milvus_layout
from service.gallery.filters import SearchFilter
from service.gallery.pairwise import pairwise_search
from service.gallery.protocol import GalleryStore, NewEntry, VectorQuery
from tests.service.gallery.conftest import DIM, MakeGallery

METRICS = ["cosine", "correlation", "euclidean"]
#: person ids a filter expression must survive (quotes, backslashes, non-ASCII, an expression look-alike)
ODD_PERSONS = ['o"neil', "back\\slash", "zoë-李", "x' or id > 0 or '"]


def _vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_entries_round_trip_and_paging(make_gallery: MakeGallery, monkeypatch: pytest.MonkeyPatch) -> None:
    gallery = make_gallery(metrics=METRICS)
    assert isinstance(gallery, GalleryStore) and gallery.size == 0 and gallery.metrics == sorted(METRICS)
    persons = [ODD_PERSONS[i % len(ODD_PERSONS)] for i in range(12)]
    entries = [
        NewEntry(
            person_id=p,
            camera_id=None if i % 3 == 0 else f"cam {i % 2}",
            metadata={"i": i, "t": [1]},
            image=None,
        )
        for i, p in enumerate(persons)
    ]
    vectors = _vectors(12, 0)
    ids = gallery.add(entries, vectors)
    assert len(set(ids)) == 12 and ids == sorted(ids) and gallery.size == 12
    for i, entry_id in enumerate(ids):
        got = gallery.get(entry_id)
        assert got is not None
        assert (got.id, got.person_id, got.camera_id, got.metadata) == (
            entry_id,
            persons[i],
            entries[i].camera_id,
            {"i": i, "t": [1]},
        )
        assert got.models == ("test@1",) and not got.has_image and gallery.image(entry_id) is None
        datetime.fromisoformat(got.created)
        np.testing.assert_array_equal(gallery.embedding(entry_id), vectors[i])
    unknown = max(ids) + 1_000_000
    assert gallery.get(unknown) is None and gallery.embedding(unknown) is None
    # the person filter and camera filters survive odd strings
    for person in ODD_PERSONS:
        page, total = gallery.list_entries(person, 0, 100)
        assert total == 3 and [e.id for e in page] == [
            i for i, p in zip(ids, persons, strict=True) if p == person
        ]
        (row,) = gallery.search(VectorQuery("cosine", vectors[:1], 12, SearchFilter.of(person_ids=[person])))
        assert {m.person_id for m in row} == {person} and len(row) == 3
    where = SearchFilter.of(exclude_camera_ids=["cam 1"])
    (row,) = gallery.search(VectorQuery("cosine", vectors[:1], 12, where))
    assert len(row) == 8 and all(m.camera_id != "cam 1" for m in row)
    # pages in id order, with totals; a small query window makes the Milvus store page by primary key
    monkeypatch.setattr(milvus_layout, "QUERY_WINDOW", 4)
    monkeypatch.setattr("service.gallery.milvus.QUERY_WINDOW", 4, raising=False)
    for offset, limit in ((0, 4), (3, 4), (5, 3), (9, 4), (12, 3)):
        page, total = gallery.list_entries(None, offset, limit)
        assert total == 12 and [e.id for e in page] == ids[offset : offset + limit]
    assert gallery.delete([ids[0], unknown]) == [ids[0]] and gallery.get(ids[0]) is None
    assert gallery.list_entries(None, 0, 100)[1] == 11 and gallery.missing_embeddings() == []


def test_empty_gallery_and_large_k(make_gallery: MakeGallery) -> None:
    gallery = make_gallery(metrics=METRICS)
    assert gallery.search(VectorQuery("cosine", _vectors(2, 1), 5)) == [[], []]
    assert gallery.list_entries(None, 0, 10) == ([], 0)
    ids = gallery.add([NewEntry("p", None, {}, None)] * 3, _vectors(3, 2))
    (row,) = gallery.search(VectorQuery("euclidean", _vectors(1, 3), 1000))
    assert sorted(m.id for m in row) == ids
    with pytest.raises(ValueError, match="metric 'softmax' is not available"):
        gallery.search(VectorQuery("softmax", _vectors(1, 3), 1))


def test_pairwise_encodings_and_shortlist(make_gallery: MakeGallery) -> None:
    enc_dim = 24
    gallery = make_gallery(metrics=["pairwise"], encoding_dim=enc_dim)
    descriptors, encodings = _vectors(40, 4), _vectors(40, 5, enc_dim)
    entries = [NewEntry(f"p{i % 5}", f"c{i % 2}", {}, None) for i in range(40)]
    with pytest.raises(ValueError, match="encodings are required"):
        gallery.add(entries, descriptors)
    ids = gallery.add(entries, descriptors, encodings)
    unknown = max(ids) + 1_000_000
    found, stored = gallery.encodings([ids[7], unknown, ids[3]])
    assert found.tolist() == [ids[3], ids[7]]  # ordered by id; unknown ids are left out
    np.testing.assert_array_equal(stored, encodings[[3, 7]].astype(np.float16).astype(np.float32))

    def compare(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return -np.linalg.norm(a - b, axis=1)

    queries, query_enc = _vectors(3, 6), _vectors(3, 7, enc_dim)
    query = VectorQuery("pairwise", queries, 5, SearchFilter.of(exclude_camera_ids=["c0"]))
    ranked = pairwise_search(gallery, compare, query, query_enc, shortlist=10)
    kept = np.array([i % 2 == 1 for i in range(40)])
    id_arr = np.asarray(ids)
    for q in range(3):
        cosine = l2_normalize(queries[q : q + 1]) @ l2_normalize(descriptors).T
        cosine[0, ~kept] = -np.inf
        shortlist = np.argsort(-cosine[0], kind="stable")[:10]
        kept_enc = encodings[shortlist].astype(np.float16).astype(np.float32)
        scores = compare(np.repeat(query_enc[q : q + 1], 10, 0), kept_enc)
        order = shortlist[np.argsort(-scores, kind="stable")[:5]]
        assert [m.id for m in ranked[q]] == id_arr[order].tolist()
        np.testing.assert_allclose([m.score for m in ranked[q]], np.sort(scores)[::-1][:5], rtol=1e-5)


def test_model_switch_and_erasure_across_models(make_gallery: MakeGallery) -> None:
    old = make_gallery(metrics=METRICS, model_id="old@1", namespace="switch")
    ids = old.add([NewEntry(f"p{i % 2}", None, {}, None) for i in range(6)], _vectors(6, 8))
    old.close()  # the service restarts with another model on the same store
    new = make_gallery(metrics=METRICS, model_id="new@2", dim=8, namespace="switch")
    assert new.size == 0 and new.missing_embeddings() == [(i, False) for i in ids]
    new_vectors = _vectors(6, 9, 8)
    new.set_embeddings(ids, new_vectors)
    assert new.size == 6 and new.missing_embeddings() == []
    entry = new.get(ids[0])
    assert entry is not None and entry.models == ("new@2", "old@1")
    (row,) = new.search(VectorQuery("cosine", new_vectors[2:3], 1))
    assert row[0].id == ids[2]
    erased = new.erase_person("p0")
    assert sorted(erased) == ids[0::2] and new.size == 3
    new.close()
    old = make_gallery(metrics=METRICS, model_id="old@1", namespace="switch")  # and back to the old model
    assert old.size == 3 and all(old.embedding(i) is None and old.get(i) is None for i in erased)
    (row,) = old.search(VectorQuery("euclidean", _vectors(1, 10), 6))
    assert sorted(m.id for m in row) == ids[1::2]


def test_two_processes_share_one_store(make_gallery: MakeGallery) -> None:
    """Read-after-write between two clients of a shared store (two workers or replicas)."""
    a = make_gallery(metrics=METRICS, namespace="shared")
    if not a.shared:
        pytest.skip("the embedded store serves one process (reid serve refuses --workers with it)")
    b = make_gallery(metrics=METRICS, namespace="shared")
    vectors = _vectors(10, 11)
    for i in range(10):  # each acknowledged enrol is found by the very next search of the other client
        (new_id,) = a.add([NewEntry(f"p{i}", None, {}, None)], vectors[i : i + 1])
        (row,) = b.search(VectorQuery("cosine", vectors[i : i + 1], 1))
        assert row[0].id == new_id and b.size == i + 1
    erased = b.erase_person("p3")
    assert len(erased) == 1
    (row,) = a.search(VectorQuery("cosine", vectors[3:4], 10))
    assert erased[0] not in {m.id for m in row} and len(row) == 9


def test_id_blocks_are_never_shared(make_gallery: MakeGallery, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus: each process claims its own block of ids; a block drawn twice goes to the first claimant."""
    a = make_gallery(metrics=METRICS, namespace="blocks")
    if not a.shared:
        pytest.skip("the embedded store numbers entries in its own SQLite database")
    b = make_gallery(metrics=METRICS, namespace="blocks")
    draws = iter([5, 5, 9])  # b draws a's block first, sees a's claim beside its own, and draws again
    monkeypatch.setattr("service.gallery.milvus_client.secrets.randbelow", lambda n: next(draws))
    ids_a = a.add([NewEntry("a", None, {}, None)] * 3, _vectors(3, 12))
    ids_b = b.add([NewEntry("b", None, {}, None)] * 3, _vectors(3, 13))
    assert [i >> milvus_layout.BLOCK_BITS for i in ids_a + ids_b] == [6] * 3 + [10] * 3
    assert max(ids_b) < 2**53 and len(set(ids_a) | set(ids_b)) == 6


def test_filters_tracklets_and_retention(make_gallery: MakeGallery) -> None:
    """Camera / person / enrolment-time filters inside the search, a tracklet's mean ranking, and retention,
    against numpy on the same entries."""
    gallery = make_gallery(metrics=METRICS)
    vectors = _vectors(60, 14)
    cameras = [None if i % 5 == 0 else f"c{i % 3}" for i in range(60)]
    persons = [f"p{i % 4}" for i in range(60)]
    first = gallery.add([NewEntry(persons[i], cameras[i], {}, None) for i in range(30)], vectors[:30])
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    second = gallery.add([NewEntry(persons[i], cameras[i], {}, None) for i in range(30, 60)], vectors[30:])
    ids = np.asarray(first + second)
    queries = _vectors(3, 15)
    cosine = l2_normalize(queries).astype(np.float64) @ l2_normalize(vectors).T.astype(np.float64)
    where = SearchFilter.of(camera_ids=["c1", "c2"], exclude_camera_ids=["c2"], person_ids=["p1", "p2"])
    where = replace(where, created_after=cutoff)
    allowed = np.array(
        [
            c == "c1" and p in ("p1", "p2") and i >= 30
            for i, (c, p) in enumerate(zip(cameras, persons, strict=True))
        ]
    )
    for q, row in enumerate(gallery.search(VectorQuery("cosine", queries, 60, filters=where))):
        order = [i for i in np.argsort(-cosine[q], kind="stable") if allowed[i]]
        assert [m.id for m in row] == ids[order].tolist() and all(m.camera_id == "c1" for m in row)
    (row,) = gallery.search(VectorQuery("cosine", queries, 5, aggregate=True))
    mean = cosine.mean(axis=0)
    order = np.argsort(-mean, kind="stable")[:5]
    assert [m.id for m in row] == ids[order].tolist()
    np.testing.assert_allclose([m.score for m in row], mean[order], atol=1e-5)
    assert sorted(gallery.erase_created_before(cutoff, person_id="p0")) == [
        i for i, p in zip(first, persons[:30], strict=True) if p == "p0"
    ]
    assert sorted(gallery.erase_created_before(cutoff)) == [
        i for i, p in zip(first, persons[:30], strict=True) if p != "p0"
    ]
    assert gallery.size == 30 and gallery.list_entries(None, 0, 100)[1] == 30
