"""Run every row of the reliability threat table (issue 9) and print each row's result and measured figures.

The rows are the tests in ``tests/reliability/`` (each marked ``@pytest.mark.row(n)``) plus row 19, the
SIGTERM test in ``tests/service/test_graceful_shutdown.py``. This script runs them with pytest (long
variants included unless ``--fast``), collects the figures the tests record (``REID_RELIABILITY_JSON``) and
the outcomes (JUnit XML), and prints a markdown table. ``--update-readme`` rewrites the table in
``tests/reliability/README.md`` between its markers. Bounded: every test has pytest-timeout's limit and the
whole run ``--timeout`` seconds.

    python benchmarks/reliability_report.py            # all rows, long variants included (≈ 10 min)
    python benchmarks/reliability_report.py --fast     # what `make test` runs (≈ 1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "tests" / "reliability" / "README.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
SHUTDOWN_TESTS = "tests/service/test_graceful_shutdown.py"

#: row → (case, expected), abridged from issue 9.
ROWS: dict[int, tuple[str, str]] = {
    1: ("200 MB upload, with / without Content-Length; 60 MiB via urllib, requests, httpx, curl",
        "413 < 1 s, RSS growth < 50 MB, no temp file; every client reads the 413"),
    2: ("gzip body inflating past the limit", "413 / 415, no memory blow-up"),
    3: ("PNG header 50 000²; real 12 000² image", "413 before decoding (< 100 ms)"),
    4: ("empty, random, truncated, PDF/EPS/PSD/GIF as .jpg, CMYK, 16 bit, alpha, 1×1", "4xx / right, no 500"),
    5: ("malformed multipart (backslashes, 10 MB preamble, 100 headers)", "400 fast, /health p99 < 50 ms"),
    6: ("JSON nested 10 000 deep, bad base64, wrong types", "4xx, never 500"),
    7: ("burst at 4 × capacity", "503 + Retry-After quickly, no 500, RSS flat"),
    8: ("corrupt .onnx / checksum mismatch", "live 200, ready 503 + reason, endpoints 503"),
    9: ("REID_DEVICE=cuda without a GPU", "not ready, reason names the CUDA provider"),
    10: ("8 search + 2 enrol/delete threads", "no crash, index == rows, no deleted id returned"),
    11: ("kill -9 during enrolment", "acknowledged writes kept, index == rows"),
    12: ("index file truncated / deleted while stopped", "rebuilt from SQLite, logged"),
    13: ("erase a person", "no vector, row, image, cache entry, bytes on disk"),
    14: ("API keys: none / wrong", "401 everywhere but /health, constant-time compare"),
    15: ("logs after the suite", "no image bytes / base64 blobs"),
    16: ("32 threads × 200 runs on one session", "outputs equal the single-thread reference"),
    17: ("schemathesis on /openapi.json", "no 5xx, responses match the schema"),
    18: ("fuzzed decode + preprocess (hypothesis)", "no crash, no hang"),
    19: ("SIGTERM with requests in flight", "each 200 / 503, exit 0, gallery intact"),
    20: ("dependency audit of pinned minimums", "no known-vulnerable minimums"),
    21: ("second `reid serve` on one data dir; kill -9 of the holder",
         "exits non-zero < 10 s naming the holder's pid; then a new one starts"),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the report."""
    parser.add_argument("--fast", action="store_true", help="skip the long variants (marker 'slow')")
    parser.add_argument("--timeout", type=float, default=1800.0, help="limit for the whole run, seconds")
    parser.add_argument("--update-readme", action="store_true", help=f"rewrite the table in {README.name}")
    parser.add_argument("--json", type=Path, default=None, help="also write rows and figures as JSON here")


def _junit_outcomes(path: Path) -> list[tuple[str, str, float]]:
    """(test id, passed / failed / skipped, seconds) per test case."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            status = "failed"
        elif case.find("skipped") is not None:
            status = "skipped"
        out.append((f"{case.get('classname')}::{case.get('name')}", status, float(case.get("time") or 0.0)))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the suite; returns {"rows": [...], "exit_code": int, "seconds": float}."""
    with tempfile.TemporaryDirectory() as tmp:
        figures_path, junit_path = Path(tmp) / "figures.json", Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "tests/reliability", SHUTDOWN_TESTS, "-q"]
        cmd += ["-p", "no:cacheprovider"]
        cmd += [f"--junitxml={junit_path}", "-o", "junit_family=xunit1"]
        cmd += ["-m", "not slow"] if args.fast else []
        env = dict(os.environ, REID_RELIABILITY_JSON=str(figures_path), REID_STRICT_TIMING="1")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, timeout=args.timeout, text=True, capture_output=True
            )
            code, tail = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
        except subprocess.TimeoutExpired as exc:
            code, tail = -1, f"the run exceeded {args.timeout} s: {exc}"
        seconds = time.perf_counter() - t0
        report: dict[str, Any] = {"figures": [], "outcomes": {}}
        if figures_path.is_file():
            report = json.loads(figures_path.read_text())
        cases = _junit_outcomes(junit_path) if junit_path.is_file() else []
    outcomes = {int(k): [v.split(":", 1)[0] for v in vs] for k, vs in report["outcomes"].items()}
    shutdown = [(status, secs) for test_id, status, secs in cases if "test_graceful_shutdown" in test_id]
    outcomes[19] = [status for status, _ in shutdown]
    rows = []
    for row, (case, expected) in ROWS.items():
        statuses = outcomes.get(row, [])
        result = (
            "FAIL" if "failed" in statuses
            else "pass" if "passed" in statuses
            else "skipped" if statuses
            else "not run"
        )  # fmt: skip
        measured = [
            f"{f['name']}: {_fmt(f['value'])}{(' ' + f['unit']) if f['unit'] else ''}"
            + (f" ({f['limit']})" if f["limit"] else "")
            for f in report["figures"]
            if f["row"] == row
        ]
        if row == 19 and shutdown:
            measured.append(f"SIGTERM tests: {len(shutdown)}, {sum(s for _, s in shutdown):.1f} s")
        tests = sum(1 for s in statuses if s == "passed")
        rows.append({"row": row, "case": case, "expected": expected, "result": result, "tests_passed": tests,
                     "measured": measured})  # fmt: skip
    return {"rows": rows, "exit_code": code, "seconds": round(seconds, 1), "fast": args.fast, "tail": tail}


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table."""
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPU cores "
        f"(load {os.getloadavg()[0]:.1f}), "
        f"{'fast rows only' if report['fast'] else 'long variants included'}, "
        f"{report['seconds']:.0f} s in all.",
        "",
        "| # | case | expected | result | measured |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        measured = "<br>".join(r["measured"]) or "—"
        lines.append(f"| {r['row']} | {r['case']} | {r['expected']} | {r['result']} | {measured} |")
    return "\n".join(lines)


def update_readme(table: str, path: Path = README) -> None:
    """Replace the text between the table markers of the README."""
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table; exit 1 if any row failed or did not run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    report = run(args)
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.update_readme:
        update_readme(table)
    bad = [r["row"] for r in report["rows"] if r["result"] in ("FAIL", "not run")]
    if bad or report["exit_code"] != 0:
        print(f"\nrows failed or not run: {bad}; pytest exit code {report['exit_code']}\n{report['tail']}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
