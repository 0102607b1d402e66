"""SIGTERM on a live ``reid serve`` (uvicorn): /ready flips to 503, in-flight requests finish, the gallery
snapshot is written, the process exits 0, and the gallery reopens intact (from its snapshot, not rebuilt)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.contract.manifest import file_entry, load
from tests.service.conftest import EMBED_DIM, INPUT_H, INPUT_W, PersonImages

API_KEY = "shutdown-key"
HEADERS = {"X-API-Key": API_KEY}
IN_FLIGHT = 20
DRAIN_S = 1.5
GRACEFUL_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _slow_embedding(channels: int = 256, layers: int = 10) -> onnx.ModelProto:
    """A deliberately heavy embedding graph (≈ 0.1 s per image on one thread): requests stay in flight."""
    rng = np.random.default_rng(7)
    w0 = (0.1 * rng.standard_normal((channels, 3, 3, 3))).astype(np.float32)
    inits = [numpy_helper.from_array(w0, "w0")]
    nodes = [helper.make_node("Conv", ["images", "w0"], ["x0"], pads=[1, 1, 1, 1])]
    for i in range(1, layers + 1):
        w = (rng.standard_normal((channels, channels, 3, 3)) / (3 * channels**0.5)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [f"x{i - 1}", f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"x{i}"]))
    gemm = rng.standard_normal((channels, EMBED_DIM)).astype(np.float32)
    inits.append(numpy_helper.from_array(gemm, "gemm_w"))
    nodes += [
        helper.make_node("GlobalAveragePool", [f"x{layers}"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "gemm_w"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow_embedding",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, INPUT_H, INPUT_W])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", EMBED_DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def slow_models_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``slow-embedding``: the tiny embedding model's manifest with a heavy graph of the same input/output."""
    root = tmp_path_factory.mktemp("slow-models")
    folder = root / "slow-embedding"
    shutil.copytree(models_dir / "tiny-embedding", folder)
    onnx.save(_slow_embedding(), folder / "embedding.onnx")
    manifest = load(folder, verify_checksums=False)
    files = dict(manifest.files)
    files["embedding"] = file_entry(folder, "embedding.onnx")
    manifest.model_copy(update={"name": "slow-embedding", "files": files}).save(folder)
    load(folder)  # checksums verify
    return root


def _start(models: Path, data: Path, port: int) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        REID_DEVICE="cpu",
        REID_INTRA_OP_THREADS="1",
        REID_API_KEYS=API_KEY,
        REID_MAX_BATCH="2",  # 20 one-image requests → 10 batches run one after the other
        REID_SNAPSHOT_EVERY="1000",  # only the shutdown writes the snapshot
        REID_SHUTDOWN_DRAIN_S=str(DRAIN_S),
        REID_GRACEFUL_TIMEOUT_S=str(GRACEFUL_S),
    )
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--models-dir", str(models), "--model", "slow-embedding", "--data-dir", str(data)]
    cmd += ["--log-level", "info"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_ready(client: httpx.Client, proc: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            r = client.get("/ready")
            if r.status_code == 200:
                return dict(r.json())
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready in 60 s"
        time.sleep(0.1)


def _wait_queued(base: str, at_least: int) -> int:
    """Poll ``reid_queue_depth`` until ``at_least`` images wait for the model; returns the depth seen."""
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=base, timeout=10.0, headers=HEADERS) as client:
        while True:
            text = client.get("/metrics").text
            depth = next(int(float(line.split()[1])) for line in text.splitlines() if line.startswith(
                "reid_queue_depth "
            ))
            if depth >= at_least:
                return depth
            assert time.monotonic() < deadline, f"only {depth} images queued after 30 s"
            time.sleep(0.02)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=30)
    return out


def test_sigterm_finishes_in_flight_requests_snapshots_and_exits_0(
    slow_models_dir: Path, person_images: PersonImages, tmp_path: Path
) -> None:
    port, data = _free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    proc = _start(slow_models_dir, data, port)
    try:
        with httpx.Client(base_url=base, timeout=60.0, headers=HEADERS) as client:
            assert _wait_ready(client, proc)["gallery_size"] == 0
            for person, images in person_images.enrol.items():
                files = [("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(images[:2])]
                r = client.post("/gallery", files=files, data={"person_id": person})
                assert r.status_code == 201, r.text
        enrolled = 2 * len(person_images.enrol)
        query = next(iter(person_images.query.values()))
        results: list[tuple[int | str, float]] = []
        lock = threading.Lock()

        def search() -> None:
            with httpx.Client(base_url=base, timeout=60.0, headers=HEADERS) as c:  # one connection each
                try:
                    code: int | str = c.post("/search", files=[("images", ("q.png", query, "image/png"))])
                    code = code.status_code  # type: ignore[union-attr]
                except httpx.HTTPError as exc:  # a request cut off by the shutdown
                    code = f"{type(exc).__name__}: {exc}"
                with lock:
                    results.append((code, time.monotonic()))

        threads = [threading.Thread(target=search) for _ in range(IN_FLIGHT)]
        for t in threads:
            t.start()
        queued = _wait_queued(base, at_least=IN_FLIGHT // 2)  # requests past the readiness check
        sigterm_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10.0, headers=HEADERS) as late:  # inside the drain window
            r = late.get("/ready")
            assert r.status_code == 503 and r.json()["reason"] == "shutting down", r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            r = late.post("/search", files=[("images", ("q.png", query, "image/png"))])
            assert r.status_code == 503 and "shutting down" in r.json()["detail"], r.text
        for t in threads:
            t.join(timeout=GRACEFUL_S + 10)
        assert len(results) == IN_FLIGHT
        codes = [code for code, _ in results]
        assert set(codes) <= {200, 503}, codes  # none is cut off
        finished_after = [at for code, at in results if code == 200 and at > sigterm_at]
        assert len(finished_after) >= queued, f"{queued} requests were queued at SIGTERM: {results}"
        returncode = proc.wait(timeout=DRAIN_S + GRACEFUL_S + 15)
        log = _stop(proc)
        assert returncode == 0, log
        assert "Waiting for" in log or "Shutting down" in log, log
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health", timeout=2.0)
    finally:
        _stop(proc)
    assert (data / "gallery.sqlite3").is_file(), sorted(data.iterdir())
    snapshots = sorted((data / "indexes").glob("*.faiss"))
    assert snapshots and all(p.stat().st_size > 0 for p in snapshots), snapshots

    port = _free_port()
    proc = _start(slow_models_dir, data, port)  # reopen: same rows, indexes loaded from the snapshot
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0, headers=HEADERS) as client:
            ready = _wait_ready(client, proc)
            assert ready["gallery_size"] == enrolled, ready
            assert ready["startup"]["indexes_rebuilt"] == [], ready  # type: ignore[index]
            r = client.post("/search", files=[("images", ("q.png", query, "image/png"))])
            assert r.status_code == 200 and r.json()["results"][0]["matches"], r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DRAIN_S + GRACEFUL_S + 15) == 0, _stop(proc)
    finally:
        _stop(proc)


@pytest.mark.anyio
async def test_sigterm_while_loading_never_reports_ready(make_settings) -> None:  # type: ignore[no-untyped-def]
    from service.metrics import ServiceMetrics
    from service.state import ServiceState

    state = ServiceState(settings=make_settings(), metrics=ServiceMetrics())
    state.begin_shutdown()  # the signal handler ran before the lifespan finished loading
    await state.start()
    try:
        assert state.runtime is not None and state.gallery is not None  # loaded, but
        assert (state.ready, state.reason) == (False, "shutting down")
    finally:
        await state.stop()
    assert state.batcher is not None and state.gallery is not None
    assert (state.settings.data_dir / "gallery.sqlite3").is_file()
