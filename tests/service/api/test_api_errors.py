"""Every bad-input case answers problem+json with the right status and a helpful detail (never 500)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid 1×1 PNG whose IHDR is rewritten to declare width × height (CRC fixed)."""
    data = bytearray(_encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"))
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _problem(r, status: int, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["title"]
    for fragment in fragments:
        assert fragment.lower() in body["detail"].lower(), body["detail"]
    return body


def _one(name: str, data: bytes) -> list:
    return [("images", (name, data, "image/jpeg"))]


RED = Image.new("RGB", (24, 48), (200, 30, 30))
JPEG = _encode(RED, "JPEG")
BAD_IMAGES = {
    "not-an-image": (b"hello, this is plain text and not an image", 400, "not a decodable image"),
    "gif-renamed": (_encode(RED, "GIF"), 400, "unsupported image format GIF"),
    "pdf-renamed": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", 400, "unsupported image format PDF"),
    "truncated-jpeg-header": (JPEG[:200], 400, "could not be decoded"),
    "truncated-jpeg-data": (JPEG[:-40], 400, "could not be decoded"),
    "empty": (b"", 400, "empty"),
    "declared-too-many-pixels": (_png_with_declared_size(50_000, 50_000), 413, "pixels"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
async def test_bad_image_files(case: str, make_settings, serve) -> None:
    data, status, fragment = BAD_IMAGES[case]
    async with serve(make_settings(max_pixels=1_000_000)) as (_, client):
        r = await client.post("/embeddings", files=_one("photo.jpg", data))
        body = _problem(r, status, fragment)
        assert "images" in body["detail"]
        # the same bytes as base64 in JSON give the same answer
        r = await client.post("/search", json={"images": [base64.b64encode(data).decode()]})
        _problem(r, status, fragment)


async def test_real_image_over_the_pixel_cap(make_settings, serve) -> None:
    big = _encode(Image.new("RGB", (1200, 1000), (10, 200, 10)), "PNG")
    async with serve(make_settings(max_pixels=1_000_000)) as (_, client):
        _problem(
            await client.post("/embeddings", files=_one("big.png", big)), 413, "above the limit of 1000000"
        )


async def test_body_over_limit_with_and_without_content_length(make_settings, serve) -> None:
    payload = b"\xff" * 200_000
    async with serve(make_settings(max_upload_mb=0.1)) as (_, client):
        r = await client.post("/embeddings", files=_one("x.jpg", payload))
        _problem(r, 413, "limit of 104857 bytes")

        async def chunks():
            for _ in range(20):
                yield b"x" * 10_000

        r = await client.post("/embeddings", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        _problem(r, 413, "exceeds the limit")
        assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"images": ["***not base64***"]}, "base64"),
        ({"images": "abc"}, "images"),
        ({"images": [base64.b64encode(JPEG).decode()], "top_k": "many"}, "top_k"),
        ({"images": [base64.b64encode(JPEG).decode()], "top_k": 5000}, "top_k"),
        ({"images": [base64.b64encode(JPEG).decode()], "metric": "manhattan"}, "metric"),
        ({"images": [], "top_k": 1}, "images"),
        ({"images": [base64.b64encode(JPEG).decode()], "unexpected": 1}, "unexpected"),
    ],
)
async def test_validation_errors(body: dict, fragment: str, make_settings, serve) -> None:
    async with serve(make_settings()) as (_, client):
        problem = _problem(await client.post("/search", json=body), 422, fragment)
        assert problem["errors"] and "input" not in problem["errors"][0]


async def test_verify_needs_one_of_image_or_gallery_id(make_settings, serve) -> None:
    async with serve(make_settings()) as (_, client):
        r = await client.post("/verify", json={"image_a": base64.b64encode(JPEG).decode()})
        _problem(r, 422, "exactly one of image_b and gallery_id_b")
        files = [
            ("image_a", ("a.jpg", JPEG, "image/jpeg")),
            ("image_b", ("b.jpg", b"GIF89a....", "image/jpeg")),
        ]
        _problem(await client.post("/verify", files=files), 400, "image_b")


async def test_malformed_bodies_and_media_types(make_settings, serve) -> None:
    async with serve(make_settings()) as (_, client):
        _problem(
            await client.post("/search", content=b"images=1", headers={"content-type": "text/plain"}),
            415,
            "multipart/form-data",
        )
        _problem(
            await client.post("/search", content=b"{not json", headers={"content-type": "application/json"}),
            400,
            "not valid JSON",
        )
        deep = b"[" * 100_000 + b"]" * 100_000
        r = await client.post("/search", content=deep, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422) and r.headers["content-type"].startswith(PROBLEM)
        _problem(
            await client.post("/search", content=b"[1, 2]", headers={"content-type": "application/json"}),
            422,
            "object",
        )


async def test_unknown_ids_are_404(make_settings, serve) -> None:
    async with serve(make_settings()) as (_, client):
        _problem(await client.get("/gallery/999"), 404, "999")
        _problem(await client.delete("/gallery/999"), 404, "999")
        _problem(await client.delete("/gallery", params={"person_id": "nobody"}), 404, "nobody")
        r = await client.post("/verify", json={"gallery_id_a": 999, "gallery_id_b": 998})
        _problem(r, 404, "gallery_id_a")
        _problem(await client.get("/nowhere"), 404, "/nowhere")


async def test_api_keys(make_settings, serve) -> None:
    async with serve(make_settings(api_keys=["k-one", "k-two"])) as (_, client):
        assert (await client.get("/health")).status_code == 200
        for path in ("/ready", "/models", "/metrics", "/gallery"):
            _problem(await client.get(path), 401, "missing API key")
        _problem(await client.get("/ready", headers={"X-API-Key": "k-three"}), 401, "invalid API key")
        _problem(await client.post("/embeddings", files=_one("a.jpg", JPEG)), 401, "X-API-Key")
        assert (await client.get("/ready", headers={"X-API-Key": "k-two"})).status_code == 200
        assert (await client.get("/ready", headers={"Authorization": "Bearer k-one"})).status_code == 200


async def test_not_ready_is_503_with_the_reason(make_settings, serve) -> None:
    """device=cuda on a machine without the CUDA provider: live, not ready, reason in /ready."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    async with serve(make_settings(device="cuda")) as (_, client):
        assert (await client.get("/health")).status_code == 200
        body = _problem(await client.get("/ready"), 503, "CUDAExecutionProvider")
        assert body["ready"] is False
        r = await client.post("/embeddings", files=_one("a.jpg", JPEG))
        _problem(r, 503, "not ready")
        assert r.headers["retry-after"]


async def test_corrupt_model_file_is_not_ready(make_settings, serve, models_dir, tmp_path) -> None:
    import shutil

    broken = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-embedding", broken / "tiny-embedding")
    (broken / "tiny-embedding" / "embedding.onnx").write_bytes(b"garbage")
    async with serve(make_settings(models_dir=broken, model="tiny-embedding")) as (_, client):
        _problem(await client.get("/ready"), 503, "checksum mismatch")
