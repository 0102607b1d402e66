"""Row 17: schemathesis against a live server's ``/openapi.json``: no 5xx, responses match the schema.

Every schemathesis check runs (status codes, content types, response schemas, headers, Allow on 405,
negative-data rejection, auth, stateful links …) except ``positive_data_acceptance``: it expects every
schema-valid request to succeed, but a schema cannot say "these base64 bytes decode to an image" or carry the
deployment's ``REID_MAX_IMAGES_PER_REQUEST``, so schema-valid yet undecodable images rightly get 400 / 413.
Bounded: deterministic generation, ``-n`` examples per operation (fast 5, long 100).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.conftest import API_KEY, Figure, LiveServer

pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e '.[dev]'")
EXCLUDED_CHECKS = ("positive_data_acceptance",)


def run_schemathesis(server: LiveServer, examples: int, workdir: Path, timeout_s: float) -> tuple[int, str]:
    """Run the schemathesis CLI with all checks; returns (exit code, output)."""
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.base_url}/openapi.json",
        "-H", f"X-API-Key: {API_KEY}", "--checks", "all", "--exclude-checks", ",".join(EXCLUDED_CHECKS),
        "-n", str(examples), "--generation-deterministic", "--request-timeout", "20", "--no-color",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout_s)
    return proc.returncode, proc.stdout + proc.stderr


def _summary(output: str) -> tuple[int, int]:
    generated = re.search(r"(\d+) generated", output)
    failures = re.search(r"(\d+) unique failures", output)
    return int(generated.group(1)) if generated else 0, int(failures.group(1)) if failures else 0


def _check(live_server: LiveServer, examples: int, tmp_path: Path, figure: Figure) -> None:
    code, output = run_schemathesis(live_server, examples, tmp_path, timeout_s=540)
    generated, failures = _summary(output)
    assert code == 0, output[-6000:]
    assert generated > 50, output[-3000:]
    assert "5xx" not in output.split("SUMMARY")[-1] and "Server error" not in output
    with live_server.client() as c:
        assert c.get("/ready").status_code == 200
    name = f"schemathesis cases (-n {examples}) / failures"
    figure(17, name, f"{generated} / {failures}", "", "0 failures")


@pytest.mark.row(17)
def test_schemathesis_all_checks(live_server: LiveServer, tmp_path: Path, figure: Figure) -> None:
    _check(live_server, 5, tmp_path, figure)


@pytest.mark.row(17)
@pytest.mark.slow
def test_schemathesis_all_checks_long(live_server: LiveServer, tmp_path: Path, figure: Figure) -> None:
    _check(live_server, 100, tmp_path, figure)
