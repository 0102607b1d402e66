"""End to end against a live ``reid serve`` (uvicorn) on 127.0.0.1, and the no-torch import boundary."""

from __future__ import annotations

import os
import pkgutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import service


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_importing_every_service_module_leaves_torch_out() -> None:
    names = [m.name for m in pkgutil.walk_packages(service.__path__, prefix="service.")]
    assert {
        "service.app",
        "service.api.search",
        "service.gallery.gallery",
        "service.inference.sessions",
    } <= set(names)
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "import service.commands.serve\n"
        "print('TORCH=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "TORCH=", proc.stdout


def test_live_uvicorn_end_to_end(models_dir: Path, model_name: str, person_images, tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, REID_DEVICE="cpu", REID_INTRA_OP_THREADS="1", REID_API_KEYS="live-key")
    cmd = [
        sys.executable,
        "-m",
        "service",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--models-dir",
        str(models_dir),
        "--model",
        model_name,
        "--data-dir",
        str(tmp_path / "data"),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": "live-key"}
    try:
        with httpx.Client(base_url=base, timeout=10.0, headers=headers) as client:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not become ready in 30 s"
                time.sleep(0.2)
            assert client.get("/health", headers={}).json() == {"status": "ok"}
            for person, images in person_images.enrol.items():
                files = [("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(images)]
                r = client.post("/gallery", files=files, data={"person_id": person})
                assert r.status_code == 201, r.text
            for person, query in person_images.query.items():
                r = client.post("/search", files=[("images", ("q.png", query, "image/png"))])
                assert r.status_code == 200, r.text
                assert r.json()["results"][0]["matches"][0]["person_id"] == person
            r = client.post("/search", content=b"\x00" * 10, headers={"content-type": "image/png"})
            assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json")

            def chunks():
                for _ in range(30):
                    yield b"x" * 1024 * 1024

            r = client.post("/embeddings", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413
            assert client.get("/health").status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
