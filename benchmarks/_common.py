"""Shared helpers of the benchmark scripts: machine description, percentiles, peak memory, JSON output.

Every benchmark script defines ``add_arguments(parser)``, ``run(args) -> dict`` (the report) and
``main(argv) -> int`` (parse, run, print the report as one JSON object); ``reid bench`` calls the first two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def machine_info() -> dict[str, Any]:
    """CPU count, load average and library versions: the context every figure needs."""
    info: dict[str, Any] = {
        "host_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return info


def load_average() -> float:
    """The 1-minute load average now (a busy shared machine makes timings pessimistic)."""
    return round(os.getloadavg()[0], 2)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50 / p99 / mean of durations given in seconds, in milliseconds."""
    if not len(seconds):
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def time_calls(fn: Callable[[], object], repeats: int, sync: Callable[[], None] | None = None) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (``sync`` runs before each clock read)."""
    times = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return times


def int_list(text: str) -> list[int]:
    """``"1,8,32"`` → ``[1, 8, 32]`` (argparse type)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def str_list(text: str) -> list[str]:
    """``"a,b"`` → ``["a", "b"]`` (argparse type)."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


def script_main(
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv``, run the benchmark and print its report as one JSON object."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(report, indent=2))
    return 0
