"""The service's flow tests, re-run on the shipped demo models with synthetic pedestrians.

The tests are the ones in ``tests/service/api/test_api_flow.py`` and ``tests/service/test_service_live.py``
(enrol 3 people × 4 images, search with a held-out image of each → its person first, verify same / different,
delete and erase → never returned again, also after a restart; one live uvicorn run). Importing them here
collects them again with this module's fixtures: the real ``models/demo-siamese`` (siamese),
``models/demo-osnet`` (embedding) and ``models/demo-mls`` (pairwise: descriptor shortlist re-ranked by the
comparator) instead of the tiny graphs, and synthetic pedestrians instead of coloured squares.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.api.test_api_flow import (  # noqa: F401  (re-collected with the fixtures below)
    test_enrol_search_verify_delete_erase_and_restart,
    test_filters_exclude_camera_and_person_list,
    test_missing_or_damaged_index_is_rebuilt_from_sqlite,
)
from tests.service.conftest import PersonImages, synthetic_pedestrian_images
from tests.service.test_service_live import test_live_uvicorn_end_to_end  # noqa: F401

MODELS = Path(__file__).resolve().parents[3] / "models"

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="module", params=["demo-siamese", "demo-osnet", "demo-mls"])
def model_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def person_images() -> PersonImages:
    return synthetic_pedestrian_images()
