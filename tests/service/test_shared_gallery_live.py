"""Live ``reid serve`` processes sharing one Milvus gallery: enrol on A → found by search on B; erase on B →
never returned by A; ``kill -9`` A while clients enrol → B (itself ``--workers 2``) keeps answering and every
acknowledged entry is present. And ``--workers`` with the embedded gallery is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.service.milvus_server import free_port


def _serve(port: int, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "service", "serve", "--port", str(port), "--log-level", "warning", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_ready(proc: subprocess.Popen[str], base: str, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=5.0) as client:
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{base} not ready in {seconds} s"
            time.sleep(0.3)


def _files(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{i}.png", img, "image/png")) for i, img in enumerate(images)]


def test_two_services_share_one_milvus_gallery(
    models_dir: Path, model_name: str, person_images, tmp_path: Path, milvus_uri: str
) -> None:
    env = dict(
        os.environ,
        REID_DEVICE="cpu",
        REID_INTRA_OP_THREADS="1",
        REID_MODELS_DIR=str(models_dir),
        REID_MODEL=model_name,
        REID_GALLERY="milvus",
        REID_MILVUS_URI=milvus_uri,
        REID_MILVUS_COLLECTION_PREFIX="live_" + uuid.uuid4().hex[:8],
    )
    port_a, port_b = free_port(), free_port()
    a = _serve(port_a, dict(env, REID_DATA_DIR=str(tmp_path / "a")))
    b = _serve(port_b, dict(env, REID_DATA_DIR=str(tmp_path / "b")), "--workers", "2")
    base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    persons = list(person_images.enrol)
    try:
        _wait_ready(a, base_a)
        _wait_ready(b, base_b)
        with (
            httpx.Client(base_url=base_a, timeout=30.0) as ca,
            httpx.Client(base_url=base_b, timeout=30.0) as cb,
        ):
            ids: dict[str, list[int]] = {}
            for person in persons:  # enrol on A → the next search on B finds it
                r = ca.post("/gallery", files=_files(person_images.enrol[person]), data={"person_id": person})
                assert r.status_code == 201, r.text
                ids[person] = r.json()["ids"]
                r = cb.post("/search", files=_files([person_images.query[person]]), data={"top_k": "4"})
                assert {m["id"] for m in r.json()["results"][0]["matches"]} == set(ids[person]), r.text
            erased = cb.delete("/gallery", params={"person_id": persons[0]})  # erase on B → never on A
            assert sorted(erased.json()["deleted_ids"]) == sorted(ids[persons[0]])
            r = ca.post("/search", files=_files([person_images.query[persons[0]]]), data={"top_k": "100"})
            assert not {m["id"] for m in r.json()["results"][0]["matches"]} & set(ids[persons[0]])
            assert ca.get(f"/gallery/{ids[persons[0]][0]}").status_code == 404

            acknowledged: list[int] = []
            stop = threading.Event()

            def enrol_on_a() -> None:  # a client enrolling on A until A dies
                with httpx.Client(base_url=base_a, timeout=10.0) as client:
                    while not stop.is_set():
                        try:
                            r = client.post("/gallery", files=_files(person_images.enrol[persons[1]][:1]),
                                            data={"person_id": "during-crash"})  # fmt: skip
                        except httpx.TransportError:
                            return
                        if r.status_code == 201:
                            acknowledged.extend(r.json()["ids"])

            clients = [threading.Thread(target=enrol_on_a) for _ in range(2)]
            for t in clients:
                t.start()
            deadline = time.monotonic() + 60
            while len(acknowledged) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(a.pid, signal.SIGKILL)  # kill -9 A mid-enrolment
            a.wait(timeout=10)
            stop.set()
            for t in clients:
                t.join(timeout=30)
            assert len(acknowledged) >= 6
            page = cb.get("/gallery", params={"person_id": "during-crash", "limit": 1000}).json()
            assert set(acknowledged) <= {e["id"] for e in page["items"]}  # every acknowledged entry is there
            for person in persons[1:]:  # and B keeps answering
                r = cb.post("/search", files=_files([person_images.query[person]]))
                assert r.status_code == 200 and r.json()["results"][0]["matches"][0]["person_id"] in (
                    person,
                    "during-crash",
                )
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_workers_need_the_shared_gallery(models_dir: Path, tmp_path: Path) -> None:
    env = dict(
        os.environ, REID_GALLERY="embedded", REID_MODELS_DIR=str(models_dir), REID_DATA_DIR=str(tmp_path)
    )
    proc = _serve(free_port(), env, "--workers", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "--workers 2 needs a gallery shared by every process" in out, out
