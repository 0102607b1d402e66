"""Row 17: schemathesis against a live server's ``/openapi.json``: every check, 0 failures.

``--checks all``: status codes, content types, response schemas, headers, Allow on 405, schema-valid requests
accepted (the document states every limit: image count, non-empty images, metric names, form fields …),
schema-violating requests rejected, auth, stateful links. The hooks in ``schemathesis_hooks.py`` (loaded by
``schemathesis.toml`` from the repository root, here by ``SCHEMATHESIS_HOOKS``) supply real images, the one
constraint JSON Schema cannot state, and read negative multipart cases as the server reads text parts.
Bounded: deterministic generation, ``-n`` examples per operation (fast 5, long 50 as in ``make reliability``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.conftest import API_KEY, Figure, LiveServer

pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e '.[dev]'")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def run_schemathesis(server: LiveServer, examples: int, workdir: Path, timeout_s: float) -> tuple[int, str]:
    """Run the schemathesis CLI with all checks; returns (exit code, output)."""
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.base_url}/openapi.json",
        "-H", f"X-API-Key: {API_KEY}", "--checks", "all", "-n", str(examples), "--generation-deterministic",
        "--request-timeout", "20", "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout_s, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _summary(output: str) -> tuple[int, int]:
    generated = re.search(r"(\d+) generated", output)
    failures = re.search(r"(\d+) unique failures", output)
    return int(generated.group(1)) if generated else 0, int(failures.group(1)) if failures else 0


def _check(live_server: LiveServer, examples: int, tmp_path: Path, figure: Figure) -> None:
    code, output = run_schemathesis(live_server, examples, tmp_path, timeout_s=540)
    generated, failures = _summary(output)
    assert code == 0 and failures == 0, output[-6000:]
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
    _check(live_server, 50, tmp_path, figure)
