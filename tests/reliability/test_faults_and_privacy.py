"""Rows 8, 9, 12, 13 and 14: broken models, a missing GPU, damaged index files, erasure, API keys."""

from __future__ import annotations

import hmac
import io
import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, PngImagePlugin

import service.api.deps as deps
from service.contract.manifest import file_entry, load
from tests.reliability.conftest import Figure

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


def _png(colour: tuple[int, int, int], text: str = "", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour) + rng.integers(-20, 20, (48, 24, 3)), 0, 255).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


async def _assert_not_ready(client, *reason: str) -> dict:
    assert (await client.get("/health")).status_code == 200
    r = await client.get("/ready")
    assert r.status_code == 503 and r.headers["content-type"].startswith(PROBLEM), r.text
    body = r.json()
    assert body["ready"] is False
    for fragment in reason:
        assert fragment.lower() in body["reason"].lower(), body["reason"]
    image = _png((200, 30, 30))
    files = [("images", ("a.png", image, "image/png"))]
    pair = [("image_a", ("a.png", image, "image/png")), ("image_b", ("b.png", image, "image/png"))]
    for route, kwargs in (
        ("/embeddings", {"files": files}),
        ("/search", {"files": files}),
        ("/gallery", {"files": files, "data": {"person_id": "p"}}),
        ("/verify", {"files": pair}),
    ):
        r = await client.post(route, **kwargs)
        assert r.status_code == 503, (route, r.text)
        assert r.headers["retry-after"] and "not ready" in r.json()["detail"]
    for path in ("/gallery", "/gallery/1"):
        assert (await client.get(path)).status_code == 503
    return body


def _copy_model(models_dir: Path, name: str, root: Path) -> Path:
    folder = root / "models" / name
    shutil.copytree(models_dir / name, folder)
    return folder


@pytest.mark.row(8)
@pytest.mark.parametrize("fault", ["checksum-mismatch", "corrupt-onnx-matching-checksum", "missing-file"])
async def test_broken_model_keeps_the_service_live_not_ready(
    fault: str, models_dir: Path, model_name: str, make_settings, serve, tmp_path: Path
) -> None:
    folder = _copy_model(models_dir, model_name, tmp_path)
    onnx_path = folder / "embedding.onnx"
    data = bytearray(onnx_path.read_bytes())
    expected: tuple[str, ...]
    if fault == "missing-file":
        onnx_path.unlink()
        expected = ("embedding.onnx",)
    else:
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # flip bytes inside the weights/graph
        onnx_path.write_bytes(bytes(data[: len(data) * 3 // 4]))
        expected = ("checksum",)
        if fault == "corrupt-onnx-matching-checksum":  # the manifest agrees: onnxruntime itself must refuse
            manifest = load(folder, verify_checksums=False)
            files = dict(manifest.files)
            files["embedding"] = file_entry(folder, "embedding.onnx")
            manifest.model_copy(update={"files": files}).save(folder)
            expected = ()
    settings = make_settings(models_dir=folder.parent, model=model_name)
    async with serve(settings) as (_, client):
        body = await _assert_not_ready(client, *expected)
    assert body["reason"] not in ("", "ready", "starting")


@pytest.mark.row(9)
async def test_cuda_without_gpu_is_not_ready_with_the_reason(make_settings, serve) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider; the no-GPU case cannot be staged")
    async with serve(make_settings(device="cuda")) as (_, client):
        body = await _assert_not_ready(client, "CUDAExecutionProvider")
    assert "unavailable" in body["reason"].lower() or "no cudaexecutionprovider" in body["reason"].lower()


async def _enrol(client, person: str, colour: tuple[int, int, int], n: int, text: str = "") -> list[int]:
    files = [("images", (f"{i}.png", _png(colour, text, seed=i), "image/png")) for i in range(n)]
    data = {"person_id": person, "metadata": f'{{"note": "{text}"}}'}
    r = await client.post("/gallery", files=files, data=data)
    assert r.status_code == 201, r.text
    return r.json()["ids"]


@pytest.mark.row(12)
@pytest.mark.parametrize("damage", ["truncated", "deleted", "zero-length", "all-deleted"])
async def test_damaged_index_files_are_rebuilt_from_sqlite_and_logged(
    damage: str, make_settings, serve, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    async with serve(settings) as (_, client):
        ids = await _enrol(client, "p-red", (210, 40, 40), 3)
        ids += await _enrol(client, "p-blue", (40, 60, 210), 3)
    files = sorted((settings.data_dir / "indexes").glob("*.faiss"))
    assert files
    targets = files if damage == "all-deleted" else files[:1]
    for path in targets:
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif damage == "zero-length":
            path.write_bytes(b"")
        else:
            path.unlink()
    caplog.set_level(logging.INFO, logger="service")
    caplog.clear()
    query = _png((210, 40, 40), seed=9)
    async with serve(settings) as (_, client):
        ready = (await client.get("/ready")).json()
        assert ready["ready"] and ready["gallery_size"] == len(ids)
        assert len(ready["startup"]["indexes_rebuilt"]) == len(targets)
        r = await client.post("/search", files=[("images", ("q.png", query, "image/png"))])
        assert r.status_code == 200 and r.json()["results"][0]["matches"][0]["person_id"] == "p-red"
    logged = [rec.getMessage() for rec in caplog.records if "rebuilding index" in rec.getMessage()]
    assert len(logged) == len(targets), logged
    assert all(path.is_file() for path in files)  # rewritten


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.row(13)
async def test_erasing_a_person_leaves_no_trace_on_disk(make_settings, serve, figure: Figure) -> None:
    marker = "ERASE-ME-7f3c1d"
    settings = make_settings(store_images=True, snapshot_every=1000)
    async with serve(settings) as (app, client):
        kept = await _enrol(client, "p-keep", (40, 190, 60), 3)
        erased = await _enrol(client, f"person-{marker}", (210, 40, 40), 4, text=marker)
        gallery = app.state.service.gallery
        vectors = [gallery.embedding(i) for i in erased]
        assert all(v is not None for v in vectors)
        before = b"".join(_files_under(settings.data_dir).values())
        assert marker.encode() in before  # the marker really is on disk before the erase
        r = await client.delete("/gallery", params={"person_id": f"person-{marker}"})
        assert r.status_code == 200 and sorted(r.json()["deleted_ids"]) == sorted(erased)
        # in memory: no row, no vector in any index, no label cache entry
        for i in erased:
            assert (await client.get(f"/gallery/{i}")).status_code == 404
            assert gallery.embedding(i) is None and i not in gallery._table
        for metric, index in gallery.indexes.items():
            assert not set(erased) & set(index.ids().tolist()) - index.tombstones, metric
        for metric in sorted(gallery.indexes):
            files = [("images", ("q.png", _png((210, 40, 40)), "image/png"))]
            r = await client.post("/search", data={"metric": metric, "top_k": 100}, files=files)
            assert r.status_code == 200, r.text
            assert {m["id"] for m in r.json()["results"][0]["matches"]} == set(kept)
        # on disk, while the service is still running (WAL checkpointed, freed pages overwritten)
        on_disk = _files_under(settings.data_dir)
        _assert_no_trace(on_disk, marker, vectors)
    on_disk = _files_under(settings.data_dir)  # and after a clean stop
    _assert_no_trace(on_disk, marker, vectors)
    with sqlite3.connect(settings.data_dir / "gallery.sqlite3") as db:
        assert db.execute("PRAGMA secure_delete").fetchone()[0] in (0, 1, 2)  # readable database
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == len(kept)
    figure(13, "bytes on disk scanned for the erased person", sum(len(b) for b in on_disk.values()), "B")


def _assert_no_trace(files: dict[str, bytes], marker: str, vectors: list[np.ndarray]) -> None:
    assert files
    for name, data in files.items():
        assert marker.encode() not in data, f"{name} still holds the erased person's id / image / metadata"
        for vec in vectors:
            raw = np.asarray(vec, np.float32).tobytes()
            assert raw[:32] not in data, f"{name} still holds an erased embedding"


@pytest.mark.row(14)
async def test_every_endpoint_but_health_needs_a_key(
    make_settings, serve, monkeypatch: pytest.MonkeyPatch, figure: Figure
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    keys = ["k-alpha-0001", "k-beta-0002", "k-gamma-0003"]
    docs = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}  # documentation, open by design
    checked = 0
    async with serve(make_settings(api_keys=keys)) as (app, client):
        paths = app.openapi()["paths"]  # every API route (FastAPI nests included routers in app.routes)
        routes = [(p, m.upper()) for p, ops in paths.items() for m in ops if m in ("get", "post", "delete")]
        assert len(routes) >= 10 and ("/health", "GET") in routes
        for route_path, route_method in routes:
            path = route_path.replace("{gallery_id}", "1")
            for method in (route_method,):
                for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                                {"X-API-Key": keys[0] + "x"}, {"X-API-Key": ""}):  # fmt: skip
                    r = await client.request(method, path, headers=headers)
                    if path == "/health":
                        assert r.status_code == 200, (method, path, headers)
                    else:
                        assert r.status_code == 401, (method, path, headers, r.status_code)
                        assert r.headers["content-type"].startswith(PROBLEM)
                        assert r.headers["www-authenticate"]
                    checked += 1
        assert not set(paths) & docs
        calls.clear()
        r = await client.get("/ready", headers={"X-API-Key": keys[0]})
        assert r.status_code == 200
        # constant time: every configured key is compared with hmac.compare_digest, also after a match
        assert len(calls) == len(keys) and {b for _, b in calls} == {k.encode() for k in keys}
        calls.clear()
        assert (await client.get("/ready", headers={"X-API-Key": "nope"})).status_code == 401
        assert len(calls) == len(keys)
    figure(14, "requests checked for 401 (routes × methods × bad keys)", checked, "requests")
