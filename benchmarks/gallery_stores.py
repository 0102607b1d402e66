"""Gallery stores side by side: the embedded store (SQLite + in-process FAISS) and the Milvus store.

Per store and index type: enrol throughput (``store.add`` batches of ``--batch``, default 32), the time
from an acknowledged enrol to the first search that returns it, single-query search latency p50 / p99 (top-10,
cosine) and recall@10 against exact numpy search, on random unit vectors. Prints JSON (and writes it with
``--out``).

    python benchmarks/gallery_stores.py --entries 20000 --dim 128 --out benchmarks/results/gallery_stores.json

Without ``--milvus-uri`` a Milvus 2.3.5 standalone server (PyPI ``milvus``) is started in a temporary folder,
with the proxy time tick at 20 ms (as in the tests). Milvus indexes sealed segments in the background: the
script flushes and waits for the index before measuring searches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.contract.scoring import l2_normalize
from service.gallery.gallery import Gallery
from service.gallery.index import IndexConfig
from service.gallery.protocol import GallerySpec, GalleryStore, NewEntry, VectorQuery


def _open(store: str, index_type: str, dim: int, root: Path, uri: str | None) -> GalleryStore:
    config = IndexConfig(index_type=index_type, ivf_nlist=256, ivf_nprobe=16, hnsw_m=32, hnsw_ef_search=128)
    gallery: GalleryStore
    if store == "embedded":
        gallery = Gallery(root / f"{index_type}-{uuid.uuid4().hex[:6]}", model_id="bench@1", dim=dim,
                          metrics=["cosine"], head=None, config=config, snapshot_every=10**9)  # fmt: skip
    else:
        from service.gallery.milvus import MilvusGallery
        from service.gallery.milvus_client import MilvusConfig

        spec = GallerySpec(model_id="bench@1", dim=dim, metrics=["cosine"])
        prefix = f"bench_{index_type}_{uuid.uuid4().hex[:6]}"
        connection = MilvusConfig(uri=str(uri), collection_prefix=prefix, timeout_s=120)
        gallery = MilvusGallery(connection, spec, config)
    gallery.open()
    return gallery


def settle_milvus(gallery: GalleryStore, wait_s: float) -> tuple[float, int]:
    """Flush and wait until every row is in an indexed segment (searches then use the index, not brute
    force); returns the seconds this took and the rows still pending re-indexing then (0 and 0 for the
    embedded store, whose index is built on insert).

    Pending rows after that are segments Milvus compacted (merged, or rewritten after deletes): until their
    index is built the query nodes keep serving the indexed segments they replace, so searches stay indexed;
    the rebuild costs CPU meanwhile (at 1 M entries with HNSW it takes longer than the first build).
    """
    from service.gallery.milvus import MilvusGallery

    if not isinstance(gallery, MilvusGallery):
        return 0.0, 0
    t0 = time.perf_counter()
    client, name = gallery.db.client, gallery._names["cosine"]
    client.flush(name)
    while time.perf_counter() - t0 < wait_s:
        info = client.describe_index(name, "vector")
        if int(info.get("indexed_rows", 0)) >= gallery.size:
            return time.perf_counter() - t0, int(info.get("pending_index_rows", 0))
        time.sleep(1)
    raise TimeoutError(f"Milvus had not indexed every row of {name} after {wait_s:.0f} s")


def drop_milvus(gallery: GalleryStore) -> None:
    """Drop a Milvus row's collections so that the next row's measurements run without them in memory."""
    from service.gallery.milvus import MilvusGallery

    if isinstance(gallery, MilvusGallery):
        client = gallery.db.client
        for name in client.list_collections():
            if name.startswith(gallery.db.config.collection_prefix):
                client.drop_collection(name)


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row indexes of each query's 10 nearest vectors by cosine (exact, in chunks of 100 k vectors)."""
    q = l2_normalize(queries)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    best_s = np.zeros((len(q), 0), dtype=np.float32)
    for start in range(0, len(vectors), 100_000):
        scores = q @ l2_normalize(vectors[start : start + 100_000]).T
        top = np.argpartition(-scores, min(10, scores.shape[1] - 1), axis=1)[:, :10]
        best_i = np.concatenate([best_i, top + start], axis=1)
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, axis=1)], axis=1)
    order = np.argsort(-best_s, axis=1)[:, :10]
    return np.take_along_axis(best_i, order, axis=1)


def run_one(store: str, index_type: str, vectors: np.ndarray, queries: np.ndarray, root: Path,
            uri: str | None, batch: int, index_wait_s: float) -> dict[str, object]:  # fmt: skip
    gallery = _open(store, index_type, vectors.shape[1], root, uri)
    t0 = time.perf_counter()
    ids: list[int] = []
    for start in range(0, len(vectors), batch):
        part = vectors[start : start + batch]
        ids += gallery.add([NewEntry("p", None, {}, None)] * len(part), part)
    enrol_s = time.perf_counter() - t0
    visible = []
    for q in queries[:20]:  # acknowledged enrol → first search that returns it
        (new_id,) = gallery.add([NewEntry("new", None, {}, None)], q[None])
        t = time.perf_counter()
        while gallery.search(VectorQuery("cosine", q[None], 1))[0][0].id != new_id:
            pass
        visible.append(time.perf_counter() - t)
        gallery.delete([new_id])
    load_after_enrol = os.getloadavg()[0]
    index_s, pending = settle_milvus(gallery, index_wait_s)
    exact = exact_top10(vectors, queries)
    id_arr = np.asarray(ids)
    latency, recall = [], []
    for q, truth in zip(queries, exact, strict=True):
        t = time.perf_counter()
        (row,) = gallery.search(VectorQuery("cosine", q[None], 10))
        latency.append(time.perf_counter() - t)
        recall.append(len({m.id for m in row} & set(id_arr[truth].tolist())) / 10)
    drop_milvus(gallery)
    gallery.close()
    ms = np.array(latency) * 1000
    return {
        "store": store,
        "index": index_type,
        "entries": len(vectors),
        "enrol_batch": batch,
        "enrol_per_s": round(len(vectors) / enrol_s, 1),
        "enrol_s": round(enrol_s, 1),
        "flush_and_index_s": round(index_s, 1),
        "pending_reindex_rows": pending,
        "ack_to_searchable_ms_p50": round(float(np.median(visible)) * 1000, 2),
        "search_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "search_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "recall_at_10": round(float(np.mean(recall)), 4),
        "load_average_1m": [round(load_after_enrol, 2), round(os.getloadavg()[0], 2)],  # after enrol, at end
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--indexes", default="flat,hnsw,ivf")
    parser.add_argument("--stores", default="embedded,milvus")
    parser.add_argument("--batch", type=int, default=32, help="entries per store.add call while filling")
    parser.add_argument("--index-wait-s", type=float, default=3600.0, help="longest wait for Milvus' index")
    parser.add_argument("--milvus-uri", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` ends the run: still stop Milvus
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.entries, args.dim)).astype(np.float32)
    queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        uri = args.milvus_uri
        if "milvus" in args.stores and uri is None:
            from tests.service.milvus_server import free_port, start_milvus

            port = free_port()
            server = start_milvus(Path(tmp) / "milvus", port)
            uri = f"http://127.0.0.1:{port}"
        try:
            results = []
            for store in args.stores.split(","):
                for index in args.indexes.split(","):
                    wait_s = args.index_wait_s
                    row = run_one(store, index, vectors, queries, Path(tmp), uri, args.batch, wait_s)
                    results.append(row)
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # rows survive a cut-off run
        finally:
            if server is not None:
                server.stop()  # type: ignore[attr-defined]
    report = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "milvus": "2.3.5 standalone (PyPI milvus), proxy.timeTickInterval 20 ms" if server else uri,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
