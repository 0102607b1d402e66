"""Row 21: one process per data dir. Two real ``reid serve`` processes on one ``REID_DATA_DIR``.

Before the lock both started; the second enrolled a person that the first listed (SQLite) but never found in
``/search`` (its FAISS index was stale). Now the second exits non-zero at once with one line naming the
holder's pid, and a ``kill -9`` of the holder frees the lock for the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.gallery import dirlock
from tests.reliability.conftest import Figure, start_server


@pytest.mark.row(21)
def test_second_server_on_a_data_dir_exits_and_kill_9_frees_it(
    models_dir: Path, model_name: str, tmp_path: Path, figure: Figure
) -> None:
    data = tmp_path / "data"
    first = start_server(models_dir, model_name, data, tmp_path / "first")
    try:
        first.wait_ready()
        t0 = time.monotonic()
        second = start_server(models_dir, model_name, data, tmp_path / "second")
        try:
            code = second.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            second.stop()
            pytest.fail(f"the second server still runs after 10 s: {second.log_path.read_text()[-2000:]}")
        exited_s = time.monotonic() - t0
        errors = [line for line in second.log_path.read_text().splitlines() if "error" in line.lower()]
        assert code != 0
        assert len(errors) == 1, errors
        assert f"process {first.pid}" in errors[0] and "REID_GALLERY=milvus" in errors[0], errors[0]
        with first.client() as c:  # the holder is untouched
            assert c.get("/ready").status_code == 200
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.proc.wait()
    third = start_server(models_dir, model_name, data, tmp_path / "third", env={"REID_API_KEYS": ""})
    try:
        third.wait_ready()
    finally:
        assert third.stop() == 0
    log = third.log_path.read_text()
    assert "REID_API_KEYS is not set" in log  # a keyless start says that it is open
    assert "REID_API_KEYS is not set" not in first.log_path.read_text()
    figure(21, f"second server on the data dir: seconds to exit (exit code {code})", exited_s, "s", "< 10")


def test_the_lock_is_counted_within_a_process_and_released_by_the_last_holder(tmp_path: Path) -> None:
    first = dirlock.acquire(tmp_path)
    second = dirlock.acquire(tmp_path / ".")  # a restart test reopening the gallery in the same process
    assert first == second
    assert (tmp_path / dirlock.LOCK_FILE).read_text().strip() == str(os.getpid())
    probe = "import sys; from service.gallery import dirlock; dirlock.acquire(sys.argv[1])"

    def other_process() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip

    dirlock.release(first)
    held = other_process()
    assert held.returncode != 0 and f"process {os.getpid()}" in held.stderr, held.stderr
    dirlock.release(second)
    assert other_process().returncode == 0
