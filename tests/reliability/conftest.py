"""Fixtures for the reliability suite (issue 9's threat table).

Reuses the service fixtures (tiny real ONNX models built without torch, settings, the ASGI app) and adds:
a live ``reid serve`` (uvicorn) subprocess, process RSS, a per-row figure recorder that
``benchmarks/reliability_report.py`` turns into the measured table, and a log collector that row 15 checks
for image bytes after every test.

Each test carries ``@pytest.mark.row(n)`` (its row in the threat table); ``figure(row, name, value, unit,
limit)`` records a measured number. When ``REID_RELIABILITY_JSON`` names a file, the figures and each row's
outcome are written there at the end of the session.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import (  # noqa: F401  (fixtures re-exported for this folder)
    _single_thread_faiss,
    anyio_backend,
    make_settings,
    model_name,
    models_dir,
    person_images,
    serve,
)

REPORT_ENV = "REID_RELIABILITY_JSON"
API_KEY = "reliability-key"

# ---------------------------------------------------------------------------------------------- image blobs
#: Traces of image content in log text: raw magic numbers (also as Python escapes), base64 of PNG/JPEG/GIF
#: headers, data URLs, and any base64-looking run long enough to hold image bytes.
_BLOB_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("raw PNG signature", re.compile(r"\x89PNG|\\x89PNG")),
    ("raw JPEG SOI", re.compile(r"\xff\xd8\xff|\\xff\\xd8\\xff")),
    ("base64 PNG", re.compile(r"iVBORw0KGgo")),
    ("base64 JPEG", re.compile(r"/9j/[A-Za-z0-9+/]{8}")),
    ("base64 GIF", re.compile(r"R0lGOD[lh]")),
    ("data URL", re.compile(r"data:image/[a-z]+;base64,")),
    ("long base64 run", re.compile(r"[A-Za-z0-9+/]{120,}={0,2}")),
)


def find_image_blobs(text: str) -> list[str]:
    """Names of the image-content patterns found in ``text`` (empty when the text is clean)."""
    return [name for name, pattern in _BLOB_PATTERNS if pattern.search(text)]


@dataclass
class LogCollector:
    """Every log line of the session: in-process records and live-server output files."""

    records: list[str] = field(default_factory=list)
    server_logs: list[Path] = field(default_factory=list)
    checked_chars: int = 0

    def text(self) -> str:
        """All collected log text."""
        parts = list(self.records)
        for path in self.server_logs:
            if path.is_file():
                parts.append(path.read_text(errors="backslashreplace"))
        return "\n".join(parts)


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.DEBUG)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.append(self.format(record))  # includes exception tracebacks
        except Exception:  # a broken record must not break the suite; it is still counted
            self.sink.append(f"<unformattable record from {record.name}>")


_COLLECTOR = LogCollector()


@pytest.fixture
def log_collector() -> LogCollector:
    """Every log line of the reliability tests so far (in-process records and live-server output)."""
    return _COLLECTOR


_LOGGERS = ("service", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def _no_image_bytes_in_logs() -> Iterator[None]:
    """Row 15, after every test of this folder: nothing logged during the test looks like image content.

    While a test runs, every record reaching the root logger is kept (the service loggers at DEBUG), and
    the output of live servers started by the test is read back afterwards.
    """
    collector = _COLLECTOR
    handler = _ListHandler(collector.records)
    root = logging.getLogger()
    root.addHandler(handler)
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    start = len(collector.records)
    sizes = {p: p.stat().st_size if p.is_file() else 0 for p in collector.server_logs}
    try:
        yield
    finally:
        root.removeHandler(handler)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    new = "\n".join(collector.records[start:])
    for path in collector.server_logs:
        if path.is_file():
            with open(path, "rb") as f:
                f.seek(sizes.get(path, 0))
                new += "\n" + f.read().decode(errors="backslashreplace")
    collector.checked_chars += len(new)
    found = find_image_blobs(new)
    assert not found, f"image content in the logs ({', '.join(found)})"


# ----------------------------------------------------------------------------------------------- figures
@dataclass
class _Report:
    figures: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, list[str]] = field(default_factory=dict)


_REPORT = _Report()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for mark in item.iter_markers("row"):
            item.user_properties.append(("reliability_row", mark.args[0]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    for name, row in report.user_properties:
        if name == "reliability_row":
            _REPORT.outcomes.setdefault(str(row), []).append(f"{report.outcome}:{report.nodeid}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        report = {"figures": _REPORT.figures, "outcomes": _REPORT.outcomes}
        Path(path).write_text(json.dumps(report, indent=1))


Figure = Callable[..., None]


@pytest.fixture
def figure() -> Figure:
    """``figure(row, name, value, unit, limit="")``: record one measured number for the report."""

    def record(row: int, name: str, value: float | str, unit: str, limit: str = "") -> None:
        _REPORT.figures.append({"row": row, "name": name, "value": value, "unit": unit, "limit": limit})

    return record


# ------------------------------------------------------------------------------------------------ process
def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (default: this one) in MiB, from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return kb / 1024.0


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A ``reid serve`` subprocess on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    tmp_dir: Path

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def client(self, timeout: float = 10.0, key: bool = True) -> httpx.Client:
        """A client with the API key set."""
        headers = {"X-API-Key": API_KEY} if key else {}
        return httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until ``/ready`` answers 200."""
        deadline = time.monotonic() + timeout_s
        with self.client(timeout=2.0) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
                try:
                    if c.get("/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready in {timeout_s} s: {self.log_path.read_text()[-2000:]}")
                time.sleep(0.1)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(
    models: Path, model: str, data_dir: Path, log_dir: Path, env: dict[str, str] | None = None
) -> LiveServer:
    """Start ``python -m service serve`` with its own TMPDIR; stdout and stderr go to a log file."""
    port = free_port()
    tmp_dir = log_dir / f"tmp-{port}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"server-{port}.log"
    full_env = dict(
        os.environ,
        REID_DEVICE="cpu",
        REID_INTRA_OP_THREADS="1",
        REID_API_KEYS=API_KEY,
        TMPDIR=str(tmp_dir),
        PYTHONUNBUFFERED="1",
    )
    full_env.update(env or {})
    cmd = [
        sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--models-dir", str(models), "--model", model, "--data-dir", str(data_dir), "--log-level", "info",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    _COLLECTOR.server_logs.append(log_path)
    return LiveServer(proc=proc, base_url=f"http://127.0.0.1:{port}", log_path=log_path, tmp_dir=tmp_dir)


@pytest.fixture(scope="module")
def live_server(
    models_dir: Path,  # noqa: F811
    model_name: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """One live server per test module (the default 20 MiB upload limit)."""
    root = tmp_path_factory.mktemp("live")
    server = start_server(models_dir, model_name, root / "data", root)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
