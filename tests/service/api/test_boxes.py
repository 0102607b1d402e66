"""Frame + boxes: crops cut by the service equal crops cut by the client and sent one by one."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.service.conftest import PERSON_COLOURS, png_bytes

pytestmark = pytest.mark.anyio
ORIENTATION = 0x0112


def frame_jpeg(orientation: int | None = None, size: tuple[int, int] = (160, 96)) -> bytes:
    """A noisy street frame with one coloured 'pedestrian' per person colour, stored as JPEG; with an EXIF
    orientation the stored pixels are the upright frame turned so that a viewer applying the tag sees it."""
    rng = np.random.default_rng(5)
    width, height = size
    arr = rng.uniform(60, 120, size=(height, width, 3))
    for i, colour in enumerate(PERSON_COLOURS.values()):
        x = 8 + i * (width - 16) // len(PERSON_COLOURS)
        arr[10 : height - 6, x : x + 24] = np.asarray(colour) + rng.uniform(-15, 15, (height - 16, 24, 3))
    upright = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    if orientation is None:
        upright.save(buf, "JPEG", quality=92)
    else:
        stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back clockwise
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        stored.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def client_crop(frame: bytes, box: list[float]) -> bytes:
    """What a pipeline does today: decode, upright, crop (clipped to the frame), encode losslessly."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(frame))).convert("RGB")
    x1, y1, x2, y2 = (int(v) for v in box)
    return png_bytes(img.crop((max(0, x1), max(0, y1), min(img.width, x2), min(img.height, y2))))


#: Boxes in the upright 160×96 frame: inside, touching every border, reaching past the border.
BOXES = [[8, 10, 32, 90], [0, 0, 30, 96], [130, 40, 160, 96], [-20, -5, 50, 40], [150, 80, 400, 300]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _batches(metrics: str) -> tuple[float, float]:
    """(batches, images) the model has run, from /metrics."""
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("reid_batch_size_"))
    return float(values.get("reid_batch_size_count", 0)), float(values.get("reid_batch_size_sum", 0))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("orientation", [None, 6])
async def test_boxes_equal_client_crops(make_settings, serve, orientation: int | None) -> None:
    frame = frame_jpeg(orientation)
    assert Image.open(io.BytesIO(frame)).size == ((160, 96) if orientation is None else (96, 160))
    async with serve(make_settings(max_wait_ms=0.0)) as (_, client):
        before = _batches((await client.get("/metrics")).text)
        r = await client.post("/embeddings", json={"images": [_b64(frame)], "boxes": BOXES})
        assert r.status_code == 200, r.text
        served = np.asarray(r.json()["embeddings"])
        after = _batches((await client.get("/metrics")).text)
        assert (after[0] - before[0], after[1] - before[1]) == (1, len(BOXES))  # all boxes in one batch
        crops = [client_crop(frame, b) for b in BOXES]
        r = await client.post("/embeddings", json={"images": [_b64(c) for c in crops]})
        one_by_one = np.asarray(r.json()["embeddings"])
        # multipart: the frame as a file, the boxes as one JSON field
        r = await client.post(
            "/embeddings",
            files=[("image", ("frame.jpg", frame, "image/jpeg"))],
            data={"boxes": json.dumps(BOXES)},
        )
        assert r.status_code == 200, r.text
        multipart = np.asarray(r.json()["embeddings"])
    assert served.shape == (len(BOXES), one_by_one.shape[1])
    assert np.all(_cosine(served, one_by_one) >= 0.9999)
    assert np.all(_cosine(multipart, one_by_one) >= 0.9999)
    assert not np.allclose(served[0], served[2])  # distinct crops, not one repeated


async def test_boxes_enrol_and_search(make_settings, serve) -> None:
    frame = frame_jpeg()
    people = [[8 + i * 36, 10, 32 + i * 36, 90] for i in range(4)]
    async with serve(make_settings(store_images=True)) as (_, client):
        r = await client.post(
            "/gallery", json={"images": [_b64(frame)], "boxes": people[:2], "person_id": "track-7"}
        )
        assert r.status_code == 201, r.text
        ids = r.json()["ids"]
        assert len(ids) == 2
        entry = (await client.get(f"/gallery/{ids[1]}")).json()
        assert entry["person_id"] == "track-7" and entry["has_image"]
        r = await client.post(
            "/search", json={"images": [_b64(frame)], "boxes": people, "top_k": 1, "metric": "cosine"}
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 4
        assert [res["matches"][0]["id"] for res in results[:2]] == ids
        r = await client.post(
            "/search",
            json={"images": [_b64(client_crop(frame, people[1]))], "top_k": 2, "metric": "cosine"},
        )
        alone = r.json()["results"][0]["matches"][0]
        assert alone["id"] == ids[1]
        assert alone["score"] == pytest.approx(results[1]["matches"][0]["score"], abs=1e-4)


@pytest.mark.parametrize(
    ("boxes", "where"),
    [
        ([[0, 0, 20, 20], [10, 10, 5, 30]], "boxes[1]"),  # x2 < x1
        ([[0, 0, 20, 20], [0, 0, 20, 20], [200, 10, 260, 40]], "boxes[2]"),  # outside the frame
        ([[159, 0, 170, 20]], "boxes[0]"),  # 1 px wide after clipping
        ([[0, 0, 20, 20], [0, 0, 1e400, 20]], "boxes.1.2"),  # not finite (JSON Infinity)
        ([[0, 0, 20]], "boxes.0"),  # three numbers
        ([[0, 0, 20, 20]] * 5, "boxes[4]"),  # above REID_MAX_BOXES_PER_REQUEST=4
    ],
)
async def test_bad_box_is_422_naming_it(make_settings, serve, boxes: list, where: str) -> None:
    body = json.dumps({"images": [_b64(frame_jpeg())], "boxes": boxes})  # 1e400: Infinity
    async with serve(make_settings(max_boxes_per_request=4)) as (_, client):
        for path in ("/embeddings", "/search"):
            r = await client.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["detail"].startswith(where), r.json()


async def test_boxes_need_exactly_one_frame(make_settings, serve) -> None:
    frame = _b64(frame_jpeg())
    async with serve(make_settings()) as (_, client):
        r = await client.post("/embeddings", json={"images": [frame, frame], "boxes": [[0, 0, 9, 9]]})
        assert r.status_code == 422
        assert "1 image" in r.json()["detail"]
