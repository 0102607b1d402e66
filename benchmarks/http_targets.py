"""The ratios ``reid bench http`` reports (issue 19's targets), computed from its rows.

Every figure is a ratio within one run, so a shared machine's load hits both sides of it.
"""

from __future__ import annotations

from typing import Any


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median requests/s, with every round's requests/s alongside."""
    ordered = sorted(runs, key=lambda r: r["requests_per_s"] or 0.0)
    row = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        row["rounds_requests_per_s"] = [r["requests_per_s"] for r in runs]
    return row


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The HTTP targets (None where a level was not run): server CPU and latency at concurrency 1 against
    the bare loop's, throughput and tail at concurrency 8, and batching's server CPU saving per image."""

    def row(endpoint: str, batching: str, concurrency: int) -> dict[str, Any]:
        for r in report["http"]:
            if (r["endpoint"], r["batching"], r["concurrency"]) == (endpoint, batching, concurrency):
                return dict(r)
        return {}

    bare = {r["endpoint"]: r for r in report["bare"]}.get("search", {})
    c1, c8 = row("search", "on", 1), row("search", "on", 8)
    on32, off32 = row("embeddings", "on", 32), row("embeddings", "off", 32)
    cpu_on, cpu_off = on32.get("server_cpu_ms_per_request"), off32.get("server_cpu_ms_per_request")
    p50_c1, p50_bare = c1.get("latency_ms_p50"), bare.get("p50_ms")
    return {
        "search_c1_server_cpu_over_bare_cpu (target <= 1.2)": _ratio(
            c1.get("server_cpu_ms_per_request"), bare.get("cpu_ms_per_request")
        ),
        "search_c1_p50_minus_bare_p50_ms (target <= 1.0)": round(p50_c1 - p50_bare, 3)
        if p50_c1 is not None and p50_bare is not None
        else None,
        "search_c8_over_bare (target >= 1.5)": _ratio(c8.get("requests_per_s"), bare.get("requests_per_s")),
        "search_c8_p99_over_p50 (target <= 4)": _ratio(c8.get("latency_ms_p99"), c8.get("latency_ms_p50")),
        "embeddings_c32_batching_on_over_off (req/s)": _ratio(
            on32.get("requests_per_s"), off32.get("requests_per_s")
        ),
        "embeddings_c32_server_cpu_per_image_fall_on_vs_off (target >= 0.30)": round(1 - cpu_on / cpu_off, 3)
        if cpu_on is not None and cpu_off
        else None,
    }
