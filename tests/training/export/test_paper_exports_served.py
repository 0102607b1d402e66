"""Every paper recipe, trained for a few steps, exports through the parity gate and is served by the real app.

For each recipe of :data:`training.engine.paper_recipes.PAPER_RECIPES` a module-scoped fixture trains a tiny
model (``reid train`` with the TINY sizes, batch 4, a few pairs; multidepth: ``reid explore-filters`` first)
and exports it with ``reid export``. The tests then start the service on that folder (lifespan + httpx ASGI
transport) and check its wiring for the model's kind: ``/ready`` reports the manifest's kind and metrics,
enrolment returns ids, ``/search`` answers for every metric with sorted, finite scores whose ``same_person``
follows the threshold and which equal ``/verify``'s score of the same pair, and ``/verify`` answers for images
and gallery ids. For pairwise models, ``/search`` with a shortlist of the whole gallery must give the
comparator's exhaustive ranking. The models are barely trained: no test asserts who ranks first.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.cli import main
from service.config import Settings
from service.contract.manifest import ModelManifest, load
from service.contract.scoring import higher_is_better
from tests.service.conftest import PersonImages, running, synthetic_pedestrian_images
from tests.training.engine.conftest import tiny_market  # noqa: F401  (fixture)
from tests.training.engine.test_paper_recipes import RUN_FLAGS, tiny_flags
from training.engine.paper_recipes import PAPER_RECIPES

pytestmark = pytest.mark.anyio

#: The service kind each recipe's export must have (multidepth exports as an embedding model).
SERVED_KIND: dict[str, str] = {
    "siamese-efficientnet-b0": "siamese",
    "fusion-resnet50": "siamese",
    "fusion-vgg16": "siamese",
    "mls-l2l3": "pairwise",
    "mls-l2l3l4": "pairwise",
    "multidepth-vgg16": "embedding",
}
ENROL_PER_PERSON = 2
PERSONS = 3
GALLERY_SIZE = PERSONS * ENROL_PER_PERSON
#: /search and /verify compute the same pair's score along different paths (index vs direct, batched).
SCORE_TOL = 1e-4


@dataclass(frozen=True)
class ExportedModel:
    """A recipe's exported model folder inside a models dir of its own."""

    recipe: str
    models_dir: Path
    manifest: ModelManifest


def _train_and_export(recipe: str, root: Path, work: Path) -> ExportedModel:
    run = work / "run"
    extra = ["--p", "4", "--k", "2"] if recipe == "multidepth-vgg16" else ["--pairs_per_epoch", "8"]
    argv = ["train", "--recipe", recipe, "--root", str(root), "--dataset", "market1501", "--dataset_options",
            "{}", "--output", str(run), *RUN_FLAGS, *tiny_flags(recipe), "--batch_size", "4", "--skip-eval",
            *extra]
    assert main(argv) == 0, recipe
    checkpoint = run / "checkpoint.pt"
    if recipe == "multidepth-vgg16":
        argv = ["explore-filters", "--checkpoint", str(checkpoint), "--triplets", "4", "--batch-size", "4"]
        assert main(argv) == 0
    models_dir = work / "models"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(models_dir / recipe)]) == 0
    return ExportedModel(recipe=recipe, models_dir=models_dir, manifest=load(models_dir / recipe))


@pytest.fixture(scope="module", params=PAPER_RECIPES)
def exported(request: pytest.FixtureRequest, tiny_market: Path,  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """The recipe trained for a few steps on the tiny Market-layout set and exported (once per module)."""
    recipe = str(request.param)
    return _train_and_export(recipe, tiny_market, tmp_path_factory.mktemp(recipe))


@pytest.fixture(scope="module")
def pedestrians() -> PersonImages:
    """Three synthetic pedestrians × 4 enrolment images + 1 held-out query each (JPEG)."""
    return synthetic_pedestrian_images(persons=PERSONS)


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio."""
    return "asyncio"


def _settings(model: ExportedModel, data_dir: Path) -> Settings:
    # shortlist = the gallery size: a pairwise /search scores every entry with the comparator
    return Settings(models_dir=model.models_dir, model=model.recipe, data_dir=data_dir, device="cpu",
                    max_wait_ms=2.0, intra_op_threads=1, shortlist=GALLERY_SIZE)


def _jpeg(name: str, image: bytes) -> tuple[str, bytes, str]:
    return (name, image, "image/jpeg")


def _b64(image: bytes) -> str:
    return base64.b64encode(image).decode()


def _decision(score: float, threshold: float | None, higher_is_better: bool) -> bool | None:
    if threshold is None:
        return None
    return score >= threshold if higher_is_better else score <= threshold


def _threshold(manifest: ModelManifest, metric: str) -> float | None:
    """The manifest's default threshold for ``metric`` (None: the metric is served uncalibrated)."""
    return next((mode.default_value() for name, mode in manifest.scoring.items() if name == metric), None)


def _higher(manifest: ModelManifest, metric: str) -> bool:
    """Whether a larger score means 'same person' (the service's table; the manifest must agree)."""
    higher = higher_is_better(metric)
    if metric in manifest.scoring:
        assert manifest.scoring[metric].higher_is_better is higher, metric
    return higher


async def _enrol(client: httpx.AsyncClient, pedestrians: PersonImages) -> dict[int, str]:
    """Enrol 2 images of each person; returns gallery id → person id."""
    person_of: dict[int, str] = {}
    for person, images in pedestrians.enrol.items():
        enrol = images[:ENROL_PER_PERSON]
        files = [("images", _jpeg(f"{person}-{i}.jpg", img)) for i, img in enumerate(enrol)]
        r = await client.post("/gallery", files=files, data={"person_id": person})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["person_id"] == person and len(body["ids"]) == ENROL_PER_PERSON
        person_of.update(dict.fromkeys(body["ids"], person))
    assert len(person_of) == GALLERY_SIZE  # distinct ids
    return person_of


async def _verify(client: httpx.AsyncClient, body: dict[str, Any], manifest: ModelManifest,
                  metric: str) -> float:
    """POST /verify (JSON); checks the metric, threshold and decision, and returns the score.

    A metric the manifest does not calibrate is refused without a request threshold (422 problem+json) and
    decided at the request's threshold with one.
    """
    threshold = _threshold(manifest, metric)
    if threshold is None:
        r = await client.post("/verify", json=body)
        assert r.status_code == 422 and "threshold" in r.json()["detail"], r.text
        threshold = 0.5
        body = {**body, "threshold": threshold}
    r = await client.post("/verify", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["metric"] == metric and out["model"] == manifest.model_id
    assert out["threshold"] == (None if threshold is None else pytest.approx(threshold))
    assert math.isfinite(out["score"]), out
    assert out["same_person"] is _decision(out["score"], out["threshold"], out["higher_is_better"]), out
    return float(out["score"])


async def test_ready_enrol_search_verify(exported: ExportedModel, pedestrians: PersonImages,
                                         tmp_path: Path) -> None:
    manifest = exported.manifest
    assert manifest.kind == SERVED_KIND[exported.recipe]
    async with running(_settings(exported, tmp_path / "data")) as (_, client):
        r = await client.get("/ready")
        assert r.status_code == 200, r.text
        ready = r.json()
        assert ready["kind"] == manifest.kind and ready["model"] == manifest.model_id
        metrics: list[str] = ready["metrics"]
        assert manifest.default_metric in metrics and set(manifest.scoring) <= set(metrics), metrics
        assert ("pairwise" in metrics) is (manifest.kind == "pairwise")
        assert ("softmax" in metrics) is (manifest.kind == "siamese")

        person_of = await _enrol(client, pedestrians)
        queries = list(pedestrians.query.values())
        for metric in metrics:
            files = [("images", _jpeg(f"q{i}.jpg", q)) for i, q in enumerate(queries)]
            r = await client.post("/search", files=files, data={"metric": metric, "top_k": "4"})
            assert r.status_code == 200, r.text
            body = r.json()
            higher = _higher(manifest, metric)
            assert body["metric"] == metric and body["gallery_size"] == GALLERY_SIZE
            threshold = _threshold(manifest, metric)
            assert body["threshold"] == (None if threshold is None else pytest.approx(threshold))
            assert len(body["results"]) == len(queries)
            for result in body["results"]:
                matches = result["matches"]
                scores = [m["score"] for m in matches]
                assert len(matches) == 4 and all(math.isfinite(s) for s in scores), (metric, matches)
                assert scores == sorted(scores, reverse=higher), (metric, scores)
                assert len({m["id"] for m in matches}) == 4
                for m in matches:
                    assert person_of[m["id"]] == m["person_id"]
                    assert m["same_person"] is _decision(m["score"], body["threshold"], higher), (metric, m)

        # /verify: two images at the default metric, then two gallery ids, then an image against an id
        persons = list(pedestrians.query)
        default = manifest.default_metric
        spare = pedestrians.enrol[persons[1]][ENROL_PER_PERSON:]  # images of person 2 not in the gallery
        await _verify(client, {"image_a": _b64(queries[0]), "image_b": _b64(spare[0])}, manifest, default)
        files = [("image_a", _jpeg("a.jpg", queries[1])), ("image_b", _jpeg("b.jpg", spare[1]))]
        r = await client.post("/verify", files=files)  # multipart
        assert r.status_code == 200 and r.json()["metric"] == default, r.text
        ids = sorted(person_of)
        await _verify(client, {"gallery_id_a": ids[0], "gallery_id_b": ids[-1]}, manifest, default)
        await _verify(client, {"image_a": _b64(queries[2]), "gallery_id_b": ids[1]}, manifest, default)


async def test_search_scores_equal_verify_scores(exported: ExportedModel, pedestrians: PersonImages,
                                                 tmp_path: Path) -> None:
    """Every metric's /search over the whole gallery equals /verify of the query against each entry.

    For pairwise models this is the comparator re-ranking: with a shortlist of the whole gallery, /search must
    order every entry by the comparator score that /verify computes for the same pair. Scores equal within
    the tolerance may come in either order (siamese-efficientnet-b0 after a few steps embeds every image
    alike: its eval-mode BatchNorm statistics are still the initial ones, under which the signal vanishes).
    """
    manifest = exported.manifest
    query = next(iter(pedestrians.query.values()))
    async with running(_settings(exported, tmp_path / "data")) as (_, client):
        metrics = (await client.get("/ready")).json()["metrics"]
        await _enrol(client, pedestrians)
        for metric in metrics:
            r = await client.post("/search", files=[("images", _jpeg("q.jpg", query))],
                                  data={"metric": metric, "top_k": str(GALLERY_SIZE)})
            assert r.status_code == 200, r.text
            matches = r.json()["results"][0]["matches"]
            assert len(matches) == GALLERY_SIZE, (metric, matches)
            verified: dict[int, float] = {}
            for m in matches:
                pair = {"image_a": _b64(query), "gallery_id_b": m["id"], "metric": metric}
                verified[m["id"]] = await _verify(client, pair, manifest, metric)
            for m in matches:
                expected_score = pytest.approx(verified[m["id"]], abs=SCORE_TOL, rel=SCORE_TOL)
                assert m["score"] == expected_score, (metric, m, verified)
            higher = _higher(manifest, metric)
            expected = sorted(verified, key=lambda i: (-verified[i] if higher else verified[i], i))
            got = [m["id"] for m in matches]
            if got != expected:  # allow swaps only between scores equal within the tolerance
                for a, b in zip(got, expected, strict=True):
                    assert verified[a] == pytest.approx(verified[b], abs=SCORE_TOL), (metric, got, verified)
            # a smaller top_k is the head of the same ranking, up to ties (pairwise: cut after re-ranking)
            r = await client.post("/search", files=[("images", _jpeg("q.jpg", query))],
                                  data={"metric": metric, "top_k": "2"})
            assert r.status_code == 200, r.text
            head = [m["id"] for m in r.json()["results"][0]["matches"]]
            assert len(head) == 2, (metric, head)
            for a, b in zip(head, got[:2], strict=True):
                assert verified[a] == pytest.approx(verified[b], abs=SCORE_TOL), (metric, head, verified)
