"""Fixtures for the importer tests: an anyio backend and pedestrian images as encoded bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio."""
    return "asyncio"


def pedestrian_png(seed: int, height: int = 128, width: int = 64) -> bytes:
    """One rendered synthetic pedestrian, PNG-encoded (what a client uploads)."""
    from training.data.synthetic import (
        SynthConfig,
        camera_profiles,
        person_rng,
        render_pedestrian_image,
        sample_person,
    )

    cameras = camera_profiles(SynthConfig(seed=seed))
    person = sample_person(person_rng(seed, 1))
    image = render_pedestrian_image(person, cameras[0], np.random.default_rng(seed), height, width)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
