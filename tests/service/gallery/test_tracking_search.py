"""Tracklets, person-level answers and filters against numpy brute force on random galleries (real FAISS)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.contract.score_math import HeadWeights, center_normalize, l2_normalize, sigmoid
from service.gallery.filters import SearchFilter, created_seconds
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import Match, VectorQuery
from service.gallery.ranking import entry_search, rank_persons
from service.gallery.store import NewEntry

N, DIM, ENC, BATCHES = 600, 16, 8, 4
METRICS = ("cosine", "correlation", "euclidean", "softmax", "pairwise")
HIGHER = {"cosine": True, "correlation": True, "euclidean": False, "softmax": True, "pairwise": True}


def compare(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A stand-in comparator (the ranking layer only needs scores of encoding pairs)."""
    return np.tanh(np.sum(np.asarray(a, np.float64) * b, axis=1) / ENC)


class World:
    """A random gallery enrolled in batches (distinct creation times) and its brute-force reference."""

    def __init__(self, root: Path, index_type: str = "flat") -> None:
        rng = np.random.default_rng(17)
        self.head = HeadWeights(-rng.uniform(0.5, 1.5, DIM).astype(np.float32), 3.0)
        self.emb = rng.standard_normal((N, DIM)).astype(np.float32)
        self.enc = rng.standard_normal((N, ENC)).astype(np.float32)
        self.person = np.array([f"p{i}" for i in rng.integers(0, 40, N)])
        self.camera = np.array([None if i % 7 == 0 else f"c{i % 5}" for i in range(N)], dtype=object)
        self.gallery = Gallery(
            root,
            model_id="t@1",
            dim=DIM,
            metrics=list(METRICS),
            head=self.head,
            config=IndexConfig(index_type=index_type, ivf_nlist=4, ivf_nprobe=4),
            snapshot_every=10_000,
            encoding_dim=ENC,
        )
        self.gallery.open()
        self.created = np.zeros(N)
        for part in np.array_split(np.arange(N), BATCHES):
            entries = [NewEntry(self.person[i], self.camera[i], {}, None) for i in part]
            ids = self.gallery.add(entries, self.emb[part], self.enc[part])
            for entry_id, _, _, created in self.gallery.store.attributes(ids):
                self.created[entry_id - 1] = created_seconds(created)
            time.sleep(0.002)
        self.ids = np.arange(1, N + 1)

    def scores(self, metric: str, queries: np.ndarray, encodings: np.ndarray, aggregate: bool) -> np.ndarray:
        """(rows, N) scores of every entry, computed directly (pairs, then the mean for a tracklet)."""
        q64, g64 = queries.astype(np.float64), self.emb.astype(np.float64)
        if metric == "cosine":
            s = l2_normalize(queries).astype(np.float64) @ l2_normalize(self.emb).T.astype(np.float64)
        elif metric == "correlation":
            s = center_normalize(queries).astype(np.float64) @ center_normalize(self.emb).T.astype(np.float64)
        elif metric == "euclidean":
            sq = np.sum((q64[:, None, :] - g64[None]) ** 2, axis=2)
            return np.sqrt(sq.mean(axis=0, keepdims=True)) if aggregate else np.sqrt(sq)
        elif metric == "softmax":
            logit = ((q64[:, None, :] - g64[None]) ** 2) @ self.head.weight.astype(
                np.float64
            ) + self.head.bias
            return sigmoid(logit.mean(axis=0, keepdims=True)) if aggregate else sigmoid(logit)
        else:
            stored = self.enc.astype(np.float16).astype(np.float32)  # the gallery keeps encodings as float16
            s = np.stack([compare(np.broadcast_to(e, stored.shape), stored) for e in encodings])
        return s.mean(axis=0, keepdims=True) if aggregate else s

    def search(
        self, metric: str, queries: np.ndarray, encodings: np.ndarray, where: SearchFilter, aggregate: bool
    ) -> Callable[[int], list[list[Match]]]:
        """The service's entry search over this gallery (exhaustive pairwise shortlist)."""
        query = VectorQuery(metric, queries, N, where, aggregate)
        return entry_search(self.gallery, query, encodings, compare=compare, shortlist=N)

    def allowed(self, where: SearchFilter) -> np.ndarray:
        keep = np.ones(N, dtype=bool)
        if where.camera_ids is not None:
            keep &= np.isin(self.camera, list(where.camera_ids))
        if where.exclude_camera_ids:
            keep &= ~np.isin(self.camera, list(where.exclude_camera_ids))
        if where.person_ids is not None:
            keep &= np.isin(self.person, list(where.person_ids))
        if where.created_after is not None:
            keep &= self.created >= where.created_after
        if where.created_before is not None:
            keep &= self.created < where.created_before
        return keep


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("tracking"))


def _queries(seed: int, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, DIM)).astype(np.float32), rng.standard_normal((n, ENC)).astype(np.float32)


def _filters(world: World) -> list[SearchFilter]:
    times = np.unique(world.created)
    return [
        SearchFilter(),
        SearchFilter(camera_ids=frozenset({"c1", "c3"})),
        SearchFilter(exclude_camera_ids=frozenset({"c0", "c2"})),
        SearchFilter(created_after=float(times[1]), created_before=float(times[3])),
        SearchFilter(camera_ids=frozenset({"c4", "nowhere"}), created_before=float(times[2])),
        SearchFilter(person_ids=frozenset({"p3", "p5", "p8"}), exclude_camera_ids=frozenset({"c1"})),
        SearchFilter(camera_ids=frozenset({"nowhere"})),
    ]


def _order(scores: np.ndarray, metric: str) -> np.ndarray:
    return np.argsort(-scores if HIGHER[metric] else scores, kind="stable")


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("aggregate", [False, True])
def test_entries_equal_brute_force(world: World, metric: str, aggregate: bool) -> None:
    queries, encodings = _queries(1)
    for where in _filters(world):
        got = world.search(metric, queries, encodings, where, aggregate)(7)
        expected = world.scores(metric, queries, encodings, aggregate)
        keep = world.allowed(where)
        assert len(got) == (1 if aggregate else len(queries))
        for row, s in zip(got, expected, strict=True):
            order = [i for i in _order(s, metric) if keep[i]][:7]
            assert [m.id for m in row] == [int(world.ids[i]) for i in order], (metric, where)
            np.testing.assert_allclose([m.score for m in row], s[order], rtol=1e-4, atol=1e-5)
            for m in row:
                assert (m.person_id, m.camera_id) == (world.person[m.id - 1], world.camera[m.id - 1])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("top_k", [1, 5, 45])
def test_person_rows_equal_brute_force(world: World, metric: str, top_k: int) -> None:
    queries, encodings = _queries(2)
    for where in _filters(world)[:4]:
        got = rank_persons(world.search(metric, queries, encodings, where, True), top_k, world.gallery.size)
        (s,) = world.scores(metric, queries, encodings, aggregate=True)
        keep = world.allowed(where)
        ranking = [i for i in _order(s, metric) if keep[i]]
        best: dict[str, int] = {}
        counts: dict[str, int] = {}
        for i in ranking:
            p = str(world.person[i])
            if p not in best:
                if len(best) == top_k:
                    break
                best[p] = i
            counts[p] = counts.get(p, 0) + 1
        (row,) = got
        assert [r.person_id for r in row] == list(best), (metric, where)
        assert [r.id for r in row] == [int(world.ids[i]) for i in best.values()]
        assert [r.entries for r in row] == [counts[p] for p in best]
        np.testing.assert_allclose([r.score for r in row], s[list(best.values())], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_filters_hold_on_approximate_indexes(tmp_path: Path, index_type: str) -> None:
    world = World(tmp_path, index_type)
    queries, _ = _queries(3)
    for where in _filters(world):
        keep = world.allowed(where)
        for metric in ("cosine", "euclidean"):
            rows = world.gallery.search(VectorQuery(metric, queries, 10, filters=where))
            for row in rows:
                assert all(keep[m.id - 1] for m in row)
                assert len(row) == min(10, int(keep.sum()))  # the selector runs inside the search


def test_deleted_and_retained_entries_leave_the_filters(tmp_path: Path) -> None:
    world = World(tmp_path)
    queries, _ = _queries(4)
    gone = world.gallery.delete([1, 2, 3])
    assert gone == [1, 2, 3]
    cutoff = float(np.unique(world.created)[1])
    erased = world.gallery.erase_created_before(cutoff)
    assert erased == [int(i) for i in world.ids[world.created < cutoff] if i > 3]
    where = SearchFilter(exclude_camera_ids=frozenset({"c0"}))
    rows = world.gallery.search(VectorQuery("cosine", queries, N, where))
    left = {int(i) for i in world.ids[(world.created >= cutoff) & (world.camera != "c0")]}
    assert {m.id for m in rows[0]} == left


def test_gpu_widening_path_equals_the_selector_path(world: World) -> None:
    """GPU indexes take no IDSelector: their search widens until k allowed ids are found (same answer)."""
    index = world.gallery.indexes["cosine"]
    queries = l2_normalize(_queries(5)[0])
    for where in _filters(world):
        allowed = world.gallery._table.select(where)
        with_selector = index.search(queries, 9, allowed)
        index.on_gpu = True  # only switches the code path: the index itself stays on the CPU
        try:
            widened = index.search(queries, 9, allowed)
        finally:
            index.on_gpu = False
        for sel_ids, wide_ids in zip(with_selector[1], widened[1], strict=True):
            assert sel_ids[sel_ids >= 0].tolist() == wide_ids[wide_ids >= 0][:9].tolist()
