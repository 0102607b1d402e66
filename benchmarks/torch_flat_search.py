"""Exact (flat) inner-product search on a GPU with torch: one matrix product + ``topk`` per query batch.

A stand-in for FAISS GPU flat search where no faiss GPU build can be installed (it computes the same exact
top-k); it tells what a GPU gallery search costs at 1 M × 512. Latency is one query per call, synchronised.

    python benchmarks/torch_flat_search.py --sizes 100000,1000000 --dim 512 --dtype float16
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import int_list, machine_info, percentiles_ms, script_main  # noqa: E402

DESCRIPTION = "Exact GPU gallery search with torch (matmul + topk): latency p50/p99 and batch queries/s."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments."""
    parser.add_argument("--sizes", type=int_list, default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1024, help="queries per call for the throughput figure")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="cuda")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time single-query and batched exact search per gallery size."""
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    report: dict[str, Any] = {
        "benchmark": "torch_flat_search",
        "dtype": args.dtype,
        "k": args.k,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **machine_info(),
        "results": [],
    }
    gen = torch.Generator(device=device).manual_seed(0)
    for size in args.sizes:
        gallery = torch.nn.functional.normalize(
            torch.randn(size, args.dim, device=device, generator=gen), dim=1
        ).to(dtype)
        queries = torch.nn.functional.normalize(
            torch.randn(max(args.queries, args.batch), args.dim, device=device, generator=gen), dim=1
        ).to(dtype)
        for _ in range(3):
            torch.topk(queries[:1] @ gallery.T, args.k)
        sync()
        times = []
        for i in range(args.queries):
            t0 = time.perf_counter()
            torch.topk(queries[i : i + 1] @ gallery.T, args.k)
            sync()
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.topk(queries[: args.batch] @ gallery.T, args.k)
        sync()
        batch_s = time.perf_counter() - t0
        report["results"].append(
            {
                "gallery_size": size,
                "dim": args.dim,
                **percentiles_ms(times),
                "qps_batch": round(args.batch / batch_s, 1),
                "batch": args.batch,
            }
        )
        del gallery, queries
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print JSON."""
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
