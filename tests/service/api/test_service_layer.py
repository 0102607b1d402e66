"""The service layer: routers only translate HTTP, and the operations speak the service's own errors.

Routers parse and validate, call :class:`service.core.operations.ReidService`, and shape its results; they
never reach into the model, the gallery store or the executors (read from their source, so a router that
starts doing it again fails here).
"""

from __future__ import annotations

import ast
import inspect

import pytest

from service.api import embeddings, gallery, search, verify
from service.core.errors import (
    BadImageError,
    MetricUnavailableError,
    NoEmbeddingError,
    NotFoundError,
    TooManyImagesError,
)
from service.core.operations import ReidService
from service.core.queries import SearchQuery

pytestmark = pytest.mark.anyio
ROUTERS = (embeddings, gallery, search, verify)
INTERNALS = {"runtime", "store", "batcher", "executor", "pairwise", "indexes", "manifest", "head_weights"}


@pytest.mark.parametrize("module", ROUTERS, ids=lambda m: m.__name__)
def test_routers_do_not_reach_into_internals(module: object) -> None:
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    touched = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & INTERNALS
    assert not touched, f"{module.__name__} reaches into {sorted(touched)}"  # type: ignore[attr-defined]
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("service.")
    }
    allowed = ("service.api.", "service.gallery.protocol")
    assert all(name.startswith(allowed) for name in imported), imported
    branches = [n for n in ast.walk(tree) if isinstance(n, ast.Compare) and "metric" in ast.unparse(n)]
    assert not branches, [ast.unparse(n) for n in branches]  # metric choices are the service layer's


async def test_operations_raise_the_service_errors(make_settings, serve, person_images) -> None:
    async with serve(make_settings(max_images_per_request=2)) as (app, _):
        reid: ReidService = app.state.service.operations
        person, images = next(iter(person_images.enrol.items()))
        enrolled = await reid.enrol(images[:2], person_id=person, camera_id=None, metadata={})
        assert len(enrolled.ids) == 2 and enrolled.gallery_size == 2
        verdict = await reid.verify(enrolled.ids[0], images[2], metric="cosine")
        assert verdict.same_person is True and verdict.scoring.higher_is_better
        with pytest.raises(NotFoundError, match="gallery_id_b: no gallery entry with id 999"):
            await reid.verify(images[0], 999)
        with pytest.raises(MetricUnavailableError, match="choose one of"):
            await reid.search(images[:1], SearchQuery(top_k=3, metric="pairwise"))
        with pytest.raises(TooManyImagesError, match="above the limit of 2"):
            await reid.embed(images[:3], "images")
        with pytest.raises(BadImageError, match=r"images\[1\]") as bad:
            await reid.embed([images[0], b"not an image"], "images")
        assert not bad.value.too_large
        with pytest.raises(NotFoundError):
            await reid.delete(999)
        with pytest.raises(NotFoundError, match="no gallery entries for person_id 'nobody'"):
            await reid.erase("nobody")
        ranking = await reid.search(images[2:3], SearchQuery(top_k=5, metric="cosine"))
        hits = ranking.results[0]
        assert {hit.id for hit in hits} == set(enrolled.ids) and ranking.gallery_size == 2
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert all(h.person_id == person and h.same_person is not None for h in hits)
        # an entry whose embedding for the active model is gone (as after a model switch without images)
        store = app.state.service.gallery.store
        store._db.execute("DELETE FROM embeddings WHERE entry_id = ?", (enrolled.ids[0],))
        with pytest.raises(NoEmbeddingError, match="has no embedding for"):
            await reid.verify(enrolled.ids[0], images[0], metric="cosine")
