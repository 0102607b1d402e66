"""Gallery search: query latency p50/p99, batch throughput and recall@10 vs exact, per index type.

Indexes are built as :mod:`service.gallery.index` builds them (inner product over L2-normalised embeddings):
``flat`` (exact), ``ivf`` (``IndexIVFFlat``; an nlist × nprobe sweep, quantizer trained on a sample) and
``hnsw`` (``IndexHNSWFlat``; an efSearch sweep). The gallery is synthetic but clustered like re-ID embeddings
(``images_per_identity`` noisy views around one centre per identity); queries are further noisy views of
gallery identities. Latency is one query per call (what ``/search`` does); ``qps_batch`` is all queries in one
call. Recall@k is the mean fraction of the exact top-k (from ``flat``) each index returns.

The exact softmax-head search (:mod:`service.contract.scoring`: augmented gallery vectors in an inner-product
index) is checked against brute force (the head's logit ``Σ w(q − g)² + b`` over every gallery vector).

    python benchmarks/search_speed.py                            # 10k and 100k, dims 512 and 2048
    python benchmarks/search_speed.py --sizes 1000000 --dims 512 --index-types flat,ivf   # the 1M run
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import (  # noqa: E402
    int_list,
    load_average,
    machine_info,
    peak_rss_mib,
    percentiles_ms,
    script_main,
    str_list,
)

DESCRIPTION = "FAISS gallery search: latency p50/p99 and recall@10 vs exact for flat, ivf and hnsw."
MAX_ROUTINE_SIZE = 200_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``search`` arguments."""
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000], help="gallery sizes")
    parser.add_argument("--dims", type=int_list, default=[512, 2048])
    parser.add_argument("--index-types", type=str_list, default=["flat", "ivf", "hnsw"])
    parser.add_argument("--queries", type=int, default=200, help="single-query searches timed per index")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nlist", type=int_list, default=[256, 1024], help="ivf cells (capped at size/39)")
    parser.add_argument("--nprobe", type=int_list, default=[1, 4, 16, 64])
    parser.add_argument(
        "--train-sample", type=int, default=50_000, help="vectors the ivf quantizer trains on"
    )
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-search", type=int_list, default=[32, 128])
    parser.add_argument("--images-per-identity", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.8, help="per-view noise relative to the centre norm")
    parser.add_argument(
        "--spectrum-decay", type=float, default=0.0,
        help="variance of dimension i ∝ i^-DECAY for centres and noise (0: isotropic); 1.0 with --noise 0.66 "
        "matches the same / different-person cosine statistics of demo-osnet's embeddings",
    )
    parser.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads (service default: 1)")
    parser.add_argument("--gpu", choices=("auto", "off", "on"), default="auto", help="faiss GPU indexes")
    parser.add_argument(
        "--large",
        action="store_true",
        help=f"allow gallery sizes above {MAX_ROUTINE_SIZE} (1M × 512 float32 is 2 GB)",
    )
    parser.add_argument("--no-softmax", action="store_true", help="skip the exact softmax-head check")
    parser.add_argument("--seed", type=int, default=0)


def _validate(args: argparse.Namespace) -> None:
    bad = set(args.index_types) - {"flat", "ivf", "hnsw"}
    if bad:
        raise ValueError(f"unknown index type(s) {sorted(bad)}; valid: flat, ivf, hnsw")
    if max(args.sizes) > MAX_ROUTINE_SIZE and not args.large:
        raise ValueError(f"gallery size {max(args.sizes)} > {MAX_ROUTINE_SIZE} needs --large")
    if not 1 <= args.k <= min(args.sizes):
        raise ValueError(f"--k must be in 1..{min(args.sizes)}, got {args.k}")
    if args.queries < 1 or args.images_per_identity < 1 or args.hnsw_m < 4 or args.noise < 0:
        raise ValueError("--queries, --images-per-identity must be >= 1, --hnsw-m >= 4 and --noise >= 0")
    if args.spectrum_decay < 0:
        raise ValueError(f"--spectrum-decay must be >= 0, got {args.spectrum_decay}")


def clustered_embeddings(
    size: int, dim: int, num_queries: int, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised gallery (size × dim) and queries: noisy views of identity centres, float32.

    With ``args.spectrum_decay`` = a > 0, centres and noise have per-dimension standard deviation ∝ i^(-a/2)
    (mean variance 1, so ``noise`` keeps its meaning): a trained model's embeddings put most of their variance
    in a minority of directions (demo-osnet: 90 % in 48 of 128), i.i.d. Gaussian centres put it everywhere.
    The axes are not rotated: every index here is rotation invariant.
    """
    rng = np.random.default_rng([args.seed, size, dim])
    identities = max(1, size // args.images_per_identity)
    std = np.ones(dim, dtype=np.float32)
    if args.spectrum_decay > 0:
        std = np.arange(1, dim + 1, dtype=np.float64) ** (-args.spectrum_decay / 2)
        std = (std * np.sqrt(dim / np.sum(std**2))).astype(np.float32)
    centres = rng.standard_normal((identities, dim), dtype=np.float32) * std
    scale = np.float32(args.noise) * std
    gallery = np.empty((size, dim), dtype=np.float32)
    for start in range(0, size, 65536):  # chunked: no second size × dim temporary
        stop = min(start + 65536, size)
        block = centres[np.arange(start, stop) % identities]
        block += scale * rng.standard_normal(block.shape, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        gallery[start:stop] = block
    queries = centres[rng.integers(0, identities, num_queries)]
    queries += scale * rng.standard_normal(queries.shape, dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return gallery, queries


def _to_gpu(index: Any) -> Any:
    import faiss

    from service.gallery.index import _gpu_resources

    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)


def _measure(
    index: Any, queries: np.ndarray, k: int, exact: np.ndarray | None
) -> tuple[dict[str, Any], np.ndarray]:
    index.search(queries[:1], k)  # warm-up
    load = load_average()
    latencies: list[float] = []
    for i in range(len(queries)):
        q = queries[i : i + 1]
        t0 = time.perf_counter()
        index.search(q, k)
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    _, ids = index.search(queries, k)
    batch_s = time.perf_counter() - t0
    row: dict[str, Any] = {
        **percentiles_ms(latencies),
        "qps_single": round(len(latencies) / sum(latencies), 1),
        "qps_batch": round(len(queries) / batch_s, 1),
        "load_average_1m": load,
    }
    if exact is not None:
        row["recall_at_k"] = round(
            float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact, strict=True)])), 4
        )
    return row, ids


def bench_gallery(size: int, dim: int, args: argparse.Namespace, use_gpu: bool) -> list[dict[str, Any]]:
    """Every index configuration on one synthetic gallery."""
    import faiss

    gallery, queries = clustered_embeddings(size, dim, args.queries, args)
    rows: list[dict[str, Any]] = []
    base = {"gallery_size": size, "dim": dim}
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(gallery)
    flat_build = time.perf_counter() - t0
    devices = [("cpu", False)] + ([("gpu", True)] if use_gpu else [])
    exact: np.ndarray | None = None
    flat_p50: float | None = None
    for device, gpu in devices:
        index = _to_gpu(flat) if gpu else flat
        row, ids = _measure(index, queries, args.k, exact)
        if exact is None:
            exact, flat_p50 = ids, row["p50_ms"]
            row["recall_at_k"] = 1.0
        rows.append({**base, "index": "flat", "device": device, "build_s": round(flat_build, 3), **row})
    if "ivf" in args.index_types:
        rng = np.random.default_rng(args.seed)
        sample = gallery[rng.choice(size, min(size, args.train_sample), replace=False)]
        # faiss wants >= 39 training points per cell: cap nlist, and measure each capped value once
        for nlist in sorted({max(1, min(n, len(sample) // 39)) for n in args.nlist}):
            t0 = time.perf_counter()
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.train(sample)
            ivf.add(gallery)
            build = time.perf_counter() - t0
            for device, gpu in devices:
                index = _to_gpu(ivf) if gpu else ivf
                for nprobe in args.nprobe:
                    if nprobe > nlist:
                        continue
                    (faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()).set_index_parameter(
                        index, "nprobe", nprobe
                    )
                    row, _ = _measure(index, queries, args.k, exact)
                    rows.append(
                        {
                            **base,
                            "index": "ivf",
                            "device": device,
                            "nlist": nlist,
                            "nprobe": nprobe,
                            "train_sample": len(sample),
                            "build_s": round(build, 3),
                            **row,
                        }
                    )
            del ivf, quantizer
    if "hnsw" in args.index_types:
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.add(gallery)
        build = time.perf_counter() - t0
        for ef in args.ef_search:
            hnsw.hnsw.efSearch = ef
            row, _ = _measure(hnsw, queries, args.k, exact)
            rows.append(
                {
                    **base,
                    "index": "hnsw",
                    "device": "cpu",
                    "m": args.hnsw_m,
                    "ef_search": ef,
                    "build_s": round(build, 3),
                    **row,
                }
            )
        del hnsw
    for row in rows:
        if flat_p50 and row["p50_ms"]:
            row["speedup_vs_flat_p50"] = round(flat_p50 / row["p50_ms"], 2)
    return rows


def bench_softmax(size: int, dim: int, args: argparse.Namespace) -> dict[str, Any]:
    """Exact softmax-head search (augmented vectors, inner product) against brute-force head logits."""
    import faiss

    from service.contract.scoring import HeadWeights, gallery_vectors, index_scores, query_vectors

    rng = np.random.default_rng([args.seed, size, dim, 7])
    gallery, queries = clustered_embeddings(size, dim, min(args.queries, 50), args)
    gallery *= 8.0  # raw (unnormalised) embeddings, as the siamese head sees them
    queries *= 8.0
    head = HeadWeights(weight=-rng.uniform(0.01, 0.2, dim).astype(np.float32), bias=3.0)
    index = faiss.IndexFlatIP(dim + 1)
    index.add(gallery_vectors("softmax", gallery, head))
    qvec, const = query_vectors("softmax", queries, head)
    index.search(qvec[:1], args.k)
    times, found, scores = [], [], []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        raw, ids = index.search(qvec[i : i + 1], args.k)
        times.append(time.perf_counter() - t0)
        found.append(ids[0])
        scores.append(index_scores("softmax", raw, const[i : i + 1])[0])
    brute_times, recalls, worst = [], [], 0.0
    w = head.weight.astype(np.float64)
    g64 = gallery.astype(np.float64)
    for i, q in enumerate(queries.astype(np.float64)):
        t0 = time.perf_counter()
        logits = ((g64 - q) ** 2) @ w + head.bias  # Σ w (q − g)² + b over the whole gallery
        top = np.argsort(-logits, kind="stable")[: args.k]
        brute_times.append(time.perf_counter() - t0)
        recalls.append(len(set(top) & set(found[i])) / args.k)
        probs = 1.0 / (1.0 + np.exp(-logits[found[i]]))
        worst = max(worst, float(np.max(np.abs(probs - scores[i]))))
    return {
        "gallery_size": size,
        "dim": dim,
        "queries": len(queries),
        "index": {**percentiles_ms(times)},
        "brute_force_numpy": {**percentiles_ms(brute_times)},
        "recall_at_k_vs_brute_force": round(float(np.mean(recalls)), 4),
        "max_abs_prob_diff": float(f"{worst:.3g}"),
        "load_average_1m": load_average(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every gallery size × dim; return the report."""
    _validate(args)
    import faiss

    from service.gallery.index import faiss_gpu_available

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    use_gpu = args.gpu == "on" or (args.gpu == "auto" and faiss_gpu_available())
    if args.gpu == "on" and not faiss_gpu_available():
        raise ValueError("--gpu on but this faiss build has no GPU support or sees no GPU")
    report: dict[str, Any] = {
        "benchmark": "search",
        "faiss": faiss.__version__,
        "faiss_threads": args.threads,
        "gpu": use_gpu,
        "k": args.k,
        "queries": args.queries,
        "metric": "inner product (cosine)",
        "data": f"clustered synthetic, {args.images_per_identity} views/identity, noise {args.noise}, "
        + (f"spectrum decay {args.spectrum_decay}" if args.spectrum_decay > 0 else "isotropic"),
        **machine_info(),
        "results": [],
    }
    started = time.perf_counter()
    for size in args.sizes:
        for dim in args.dims:
            report["results"].extend(bench_gallery(size, dim, args, use_gpu))
    if not args.no_softmax:
        report["softmax_exact"] = [bench_softmax(size, 512, args) for size in args.sizes if size <= 100_000]
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["peak_rss_mib"] = peak_rss_mib()
    report["targets"] = _targets(report["results"])
    return report


def _targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    flat = [r for r in rows if r["index"] == "flat" and r["device"] == "cpu" and r["dim"] == 512]
    for r in flat:
        if r["gallery_size"] == 100_000:
            out["flat_100k_512_p50_ms (target < 20)"] = r["p50_ms"]
    ivf = [
        r
        for r in rows
        if r["index"] == "ivf"
        and r["device"] == "cpu"
        and r["dim"] == 512
        and r["gallery_size"] >= 1_000_000
        and r.get("recall_at_k", 0) >= 0.95
    ]
    if ivf:
        best = max(ivf, key=lambda r: r["speedup_vs_flat_p50"])
        out["ivf_1m_512 (target recall >= 0.95 at >= 5x flat)"] = {
            k: best[k] for k in ("nlist", "nprobe", "recall_at_k", "p50_ms", "speedup_vs_flat_p50")
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print JSON."""
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
