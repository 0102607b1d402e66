"""Before / after in one run: the same load on two source trees' servers, their rounds alternating.

Each ``--tree LABEL=PATH`` (a checkout, e.g. ``git worktree add --detach /tmp/before <commit>``) gets its own
``python -m service serve`` started in that folder on a copy of one gallery (``--gallery-size`` random
embeddings), with the settings of ``reid bench http`` (faiss 1 thread, flat indexes, ``REID_MAX_BATCH``).
Every (endpoint, concurrency) level runs on each server in turn, ``--rounds`` times, so a shared machine's
load drifts onto every tree alike; each round records req/s, latency percentiles, the server's CPU ms per
request (``/proc``) and the 1-minute load average, and the median round (by req/s) is reported per tree.

    python benchmarks/http_ab.py --tree before=/tmp/before --tree after=. --model demo-osnet \\
        --endpoints search --concurrency 1,8 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import int_list, load_average, machine_info, script_main, str_list  # noqa: E402
from benchmarks.http_batching import _free_port, _image, _level, wait_ready  # noqa: E402
from benchmarks.http_bench import ENDPOINTS, fill_gallery  # noqa: E402
from benchmarks.http_targets import median_row  # noqa: E402

DESCRIPTION = "Two source trees' servers under the same load, rounds alternating (before / after)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``http_ab`` arguments."""
    parser.add_argument("--tree", action="append", required=True, help="LABEL=PATH of a checkout (2 or more)")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--model", default="demo-osnet")
    parser.add_argument("--endpoints", type=str_list, default=["search"])
    parser.add_argument("--concurrency", type=int_list, default=[1, 8])
    parser.add_argument("--requests", type=int, default=1000, help="requests per level and round")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="time bound per level and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per level (1…9)")
    parser.add_argument("--gallery-size", type=int, default=10_000)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--server-threads", type=int, default=2, help="REID_INTRA_OP_THREADS")


def _trees(values: list[str]) -> dict[str, Path]:
    trees = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not (Path(path) / "service").is_dir():
            raise ValueError(f"--tree takes LABEL=PATH of a checkout with a service/ folder, got {value!r}")
        trees[label] = Path(path).resolve()
    if len(trees) < 2:
        raise ValueError("give at least two --tree values")
    return trees


def _serve(tree: Path, args: argparse.Namespace, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        REID_MAX_BATCH=str(args.max_batch),
        REID_MAX_WAIT_MS=str(args.max_wait_ms),
        REID_DEVICE="cpu",
        REID_API_KEYS="",
        REID_QUEUE_SIZE="4096",
        REID_INTRA_OP_THREADS=str(args.server_threads),
        REID_FAISS_THREADS="1",
        REID_INDEX_TYPE="flat",
        PYTHONPATH=str(tree),
    )
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--models-dir", str(args.models_dir.resolve()), "--model", args.model]
    cmd += ["--data-dir", str(data_dir), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=tree)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, base)
    return proc, base


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start one server per tree, run every level on each in turn ``--rounds`` times; return the report."""
    trees = _trees(args.tree)
    if not 1 <= args.rounds <= 9:
        raise ValueError(f"--rounds must be in 1..9, got {args.rounds}")
    from service.inference.sessions import ModelRuntime

    report: dict[str, Any] = {
        "benchmark": "http_ab",
        **machine_info(),
        "trees": {k: str(v) for k, v in trees.items()},
    }
    image = _image()
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    rows: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runtime = ModelRuntime.load(args.models_dir / args.model, device="cpu", intra_op_threads=1)
        fill_gallery(runtime, tmp / "data", args.gallery_size)
        del runtime
        try:
            for label, tree in trees.items():
                shutil.copytree(tmp / "data", tmp / f"data-{label}")
                servers[label] = _serve(tree, args, tmp / f"data-{label}")
            for endpoint in args.endpoints:
                spec = ENDPOINTS[endpoint]
                for concurrency in args.concurrency:
                    for _ in range(args.rounds):
                        for label, (proc, base) in servers.items():
                            result = asyncio.run(
                                _level(
                                    base, image, concurrency, args.requests, args.max_seconds,
                                    path=spec["path"], fields=spec["fields"], data=spec["data"],
                                    server_pid=proc.pid,
                                )
                            )  # fmt: skip
                            rows.setdefault((endpoint, concurrency, label), []).append(
                                {
                                    "endpoint": endpoint,
                                    "tree": label,
                                    "load_average_1m": load_average(),
                                    **result,
                                }
                            )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    report["levels"] = []
    for runs in rows.values():
        row = median_row(runs)
        row["rounds_server_cpu_ms_per_request"] = [r["server_cpu_ms_per_request"] for r in runs]
        row["rounds_load_average_1m"] = [r["load_average_1m"] for r in runs]
        report["levels"].append(row)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print JSON."""
    return script_main(DESCRIPTION, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
