"""A fresh import has no thresholds: the service scores honestly and decides nothing it cannot back up."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.contract.manifest import load
from tests.service.conftest import running
from tests.training.importers.conftest import pedestrian_png

pytestmark = pytest.mark.anyio


def _settings(folder: Path, data: Path) -> Settings:
    return Settings(models_dir=folder.parent, model=folder.name, data_dir=data, device="cpu",
                    max_wait_ms=2.0, intra_op_threads=1)  # type: ignore[call-arg]


def _file(name: str, image: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return (name, (f"{name}.png", image, "image/png"))


async def test_uncalibrated_model_is_served_honestly(imported_osnet: Path, tmp_path: Path) -> None:
    manifest = load(imported_osnet)
    assert manifest.uncalibrated == ["correlation", "cosine", "euclidean"]
    a, b = pedestrian_png(11), pedestrian_png(12)
    async with running(_settings(imported_osnet, tmp_path / "data")) as (_, client):
        ready = (await client.get("/ready")).json()
        assert ready["calibration"] == "uncalibrated"
        assert ready["uncalibrated_metrics"] == ["correlation", "cosine", "euclidean"]
        models = (await client.get("/models")).json()["models"]
        assert [(m["name"], m["calibration"]) for m in models] == [("osnet", "uncalibrated")]

        r = await client.post("/gallery", files=[_file("images", a)], data={"person_id": "p1"})
        assert r.status_code == 201, r.text
        r = await client.post("/search", files=[_file("images", b)])
        assert r.status_code == 200, r.text
        match = r.json()["results"][0]["matches"][0]
        assert match["same_person"] is None and isinstance(match["score"], float)
        assert r.json()["threshold"] is None

        r = await client.post("/verify", files=[_file("image_a", a), _file("image_b", b)])
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "no calibrated threshold" in r.json()["detail"] and "reid calibrate" in r.json()["detail"]

        r = await client.post("/verify", files=[_file("image_a", a), _file("image_b", b)],
                              data={"threshold": "0.5"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["same_person"] == (body["score"] >= 0.5) and body["threshold"] == 0.5
