"""Rows 4 and 6: hostile image files and hostile request bodies.

Every case answers 400/413/415/422 problem+json or a correct result, never a 500, and the worker keeps
serving afterwards. "Correct" is checked against a reference: the same pixels as an 8-bit RGB PNG, converted
by the documented rule (CMYK → RGB, 16 bit scaled to 8 bit, alpha composited on black).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.reliability.conftest import Figure

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _person(size: tuple[int, int] = (24, 48)) -> np.ndarray:
    rng = np.random.default_rng(4)
    arr = np.empty((size[1], size[0], 3), np.uint8)
    arr[:] = (180, 60, 40)
    arr[size[1] // 2 :] = (30, 40, 150)
    return np.clip(arr.astype(int) + rng.integers(-15, 15, arr.shape), 0, 255).astype(np.uint8)


PERSON = Image.fromarray(_person())
JPEG = _encode(PERSON, "JPEG", quality=90)

#: A PSD file header (version 1, 3 channels, 48 × 24, 8 bit), then nothing.
PSD_HEADER = b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x30\x00\x00\x00\x18\x00\x08\x00\x03"
#: name → (bytes sent as "photo.jpg", allowed statuses)
REFUSED: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "empty": (b"", (400,)),
    "random-bytes": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), (400,)),
    "truncated-jpeg": (JPEG[: len(JPEG) // 2], (400,)),
    "jpeg-header-only": (JPEG[:20], (400,)),
    "pdf-renamed": (b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n", (400, 415)),
    "eps-renamed": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", (400, 415)),
    "psd-renamed": (PSD_HEADER, (400, 415)),
    "gif-renamed": (_encode(PERSON, "GIF"), (400, 415)),
    "tiff-renamed": (_encode(PERSON, "TIFF"), (400, 415)),
    "ico-renamed": (_encode(PERSON.resize((16, 16)), "ICO"), (400, 415)),
    "png-bad-crc": (_encode(PERSON, "PNG")[:40] + b"\x00" * 8 + _encode(PERSON, "PNG")[48:], (400,)),
}  # fmt: skip


def _rgba() -> tuple[bytes, np.ndarray]:
    rgb = _person()
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    data = _encode(Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA"), "PNG")
    expected = np.round(rgb.astype(np.float64) * alpha[..., None] / 255.0).astype(np.uint8)
    return data, expected


def _grey16() -> tuple[bytes, np.ndarray]:
    grey = np.tile(np.linspace(0, 65535, 24).astype(np.uint16), (48, 1))
    data = _encode(Image.fromarray(grey), "PNG")
    eight = np.clip(grey / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return data, np.dstack([eight] * 3)


def _cmyk() -> tuple[bytes, np.ndarray]:
    cmyk = PERSON.convert("CMYK")
    data = _encode(cmyk, "JPEG", quality=100)
    with Image.open(io.BytesIO(data)) as img:  # the reference: Pillow's own CMYK → RGB of the decoded JPEG
        expected = np.asarray(img.convert("RGB"))
    return data, expected


def _one_pixel() -> tuple[bytes, np.ndarray]:
    pixel = np.array([[[200, 10, 90]]], np.uint8)
    return _encode(Image.fromarray(pixel), "PNG"), pixel


ACCEPTED = {"rgba": _rgba, "grey-16bit": _grey16, "cmyk-jpeg": _cmyk, "one-pixel": _one_pixel}


def _assert_problem(r, statuses: tuple[int, ...]) -> dict:
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = r.json()
    assert body["status"] == r.status_code and body["detail"], body
    return body


async def _still_serving(client, image: bytes) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/ready")).status_code == 200
    r = await client.post("/embeddings", files=[("images", ("ok.png", image, "image/png"))])
    assert r.status_code == 200, r.text


@pytest.mark.row(4)
async def test_hostile_files_are_refused_never_500(make_settings, serve, figure: Figure) -> None:
    ok = _encode(PERSON, "PNG")
    statuses: dict[str, int] = {}
    async with serve(make_settings()) as (_, client):
        for name, (data, allowed) in REFUSED.items():
            for route in ("/embeddings", "/search"):
                r = await client.post(route, files=[("images", ("photo.jpg", data, "image/jpeg"))])
                _assert_problem(r, allowed)
                statuses[name] = r.status_code
            b64 = base64.b64encode(data).decode()
            r = await client.post("/embeddings", json={"images": [b64]})
            _assert_problem(r, (*allowed, 422) if not data else allowed)
            r = await client.post("/gallery", files=[("images", ("photo.jpg", data, "image/jpeg"))],
                                  data={"person_id": "p"})  # fmt: skip
            _assert_problem(r, allowed)
        await _still_serving(client, ok)
        assert (await client.get("/gallery")).json()["total"] == 0  # nothing half-enrolled
    figure(4, "refused files answered 4xx (none 500)", len(statuses), "cases", f"{len(REFUSED)}")


@pytest.mark.row(4)
@pytest.mark.parametrize("case", sorted(ACCEPTED))
async def test_unusual_but_valid_images_give_the_correct_embedding(case: str, make_settings, serve) -> None:
    data, expected_rgb = ACCEPTED[case]()
    reference = _encode(Image.fromarray(expected_rgb, mode="RGB"), "PNG")
    async with serve(make_settings()) as (_, client):
        r = await client.post(
            "/embeddings",
            files=[
                ("images", ("photo.jpg", data, "image/jpeg")),
                ("images", ("ref.png", reference, "image/png")),
            ],
        )
        assert r.status_code == 200, r.text
        got, want = np.asarray(r.json()["embeddings"], dtype=np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        assert np.isfinite(got).all()
        await _still_serving(client, reference)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DEEP_500 = json.loads(_nested(500))
HOSTILE_JSON: dict[str, tuple[str, dict | str | bytes]] = {
    "nested-10000-body": ("/embeddings", '{"images": ' + _nested(10_000) + "}"),
    "nested-10000-object": ("/search", '{"images": ["AA=="], "x": ' + '{"a":' * 10_000 + "1" + "}" * 10_001),
    "not-base64": ("/embeddings", {"images": ["this is *not* base64 !!"]}),
    "base64-non-ascii": ("/embeddings", {"images": ["ÿØÿà\u202eAAAA"]}),
    "base64-bad-padding": ("/embeddings", {"images": ["QUJD="]}),
    "images-not-a-list": ("/embeddings", {"images": 12}),
    "images-empty": ("/embeddings", {"images": []}),
    "images-of-numbers": ("/embeddings", {"images": [1, 2.5, None]}),
    "images-of-objects": ("/search", {"images": [{"a": 1}]}),
    "top-k-string": ("/search", {"images": ["AA=="], "top_k": "ten"}),
    "top-k-huge": ("/search", {"images": ["AA=="], "top_k": 10**30}),
    "threshold-nan": ("/verify", {"image_a": "AA==", "image_b": "AA==", "threshold": "NaN"}),
    "metric-unknown": ("/verify", {"image_a": "AA==", "image_b": "AA==", "metric": "hamming"}),
    "gallery-id-huge": ("/verify", {"gallery_id_a": 2**70, "gallery_id_b": 2**70}),
    "gallery-id-2^63": ("/verify", {"gallery_id_a": 2**63, "image_b": "AA=="}),
    "gallery-id-string": ("/verify", {"gallery_id_a": "one", "image_b": "AA=="}),
    "person-id-list": ("/gallery", {"images": ["AA=="], "person_id": ["a", "b"]}),
    "person-id-huge": ("/gallery", {"images": ["AA=="], "person_id": "x" * 100_000}),
    "metadata-not-object": ("/gallery", {"images": ["AA=="], "person_id": "p", "metadata": [1, 2]}),
    "metadata-deep": ("/gallery", {"images": ["AA=="], "person_id": "p", "metadata": {"a": DEEP_500}}),
    "extra-field": ("/embeddings", {"images": ["AA=="], "admin": True}),
    "body-is-list": ("/embeddings", "[1, 2, 3]"),
    "body-is-string": ("/embeddings", '"images"'),
    "body-not-utf8": ("/embeddings", b'{"images": ["\xff\xfe"]}'),
    "body-truncated": ("/embeddings", '{"images": ["AA=='),
    "body-empty": ("/embeddings", ""),
}  # fmt: skip


@pytest.mark.row(6)
async def test_hostile_json_bodies_are_4xx_never_500(make_settings, serve, figure: Figure) -> None:
    async with serve(make_settings()) as (_, client):
        for name, (route, body) in HOSTILE_JSON.items():
            if isinstance(body, dict):
                r = await client.post(route, json=body)
            else:
                raw = body.encode() if isinstance(body, str) else body
                r = await client.post(route, content=raw, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith(PROBLEM), name
        await _still_serving(client, _encode(PERSON, "PNG"))
    figure(6, "hostile JSON bodies answered 4xx (none 500)", len(HOSTILE_JSON), "cases")


HOSTILE_FORMS: dict[str, tuple[str, dict[str, str]]] = {
    "metadata-nested-10000": ("/gallery", {"person_id": "p", "metadata": _nested(10_000)}),
    "metadata-not-json": ("/gallery", {"person_id": "p", "metadata": "{oops"}),
    "top-k-text": ("/search", {"top_k": "many"}),
    "gallery-id-huge": ("/verify", {"gallery_id_a": str(2**70)}),
}


@pytest.mark.row(6)
async def test_hostile_form_fields_are_4xx_never_500(make_settings, serve) -> None:
    image = _encode(PERSON, "PNG")
    async with serve(make_settings()) as (_, client):
        for name, (route, fields) in HOSTILE_FORMS.items():
            field = "image_b" if route == "/verify" else "images"
            r = await client.post(route, data=fields, files=[(field, ("a.png", image, "image/png"))])
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith(PROBLEM), name
        for path in (f"/gallery/{2**70}", f"/gallery/{2**63}", "/gallery/-1", "/gallery/abc"):
            for method in ("GET", "DELETE"):
                r = await client.request(method, path)
                assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text[:300])
        r = await client.get("/gallery", params={"offset": str(2**70)})
        assert 400 <= r.status_code < 500 or r.status_code == 200, r.text
        await _still_serving(client, image)
