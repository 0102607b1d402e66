"""Fixtures for the service tests: real tiny ONNX models (built with onnx.helper, no torch), synthetic
person images whose colours the tiny model separates, and a running app behind httpx's ASGI transport.

Set ``REID_TEST_MODELS_DIR`` (holding ``REID_TEST_MODEL``, default ``demo-siamese``) to run the same API tests
against real exported models instead of the tiny ones.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi import FastAPI
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from service.app import create_app
from service.config import Settings
from service.contract.manifest import (
    InputSpec,
    ModelManifest,
    Provenance,
    ScoringMode,
    Threshold,
    VerificationSpec,
    file_entry,
)
from service.contract.preprocess import preprocess_bytes
from service.contract.scoring import HeadWeights, higher_is_better, pair_scores
from tests.service.milvus_server import milvus_uri  # noqa: F401  (session fixture)
from tests.service.tiny_pairwise import People, finish, make_people, square_head, write_pairwise_models

EMBED_DIM = 16
INPUT_H, INPUT_W = 32, 16
SAME_INDEX = 1
#: Distinct clothing colours: the tiny model embeds the mean colour, so these are distinct identities.
PERSON_COLOURS: dict[str, tuple[int, int, int]] = {
    "p-red": (210, 40, 40),
    "p-green": (40, 190, 60),
    "p-blue": (40, 60, 210),
    "p-yellow": (215, 205, 40),
}


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    """Encode a Pillow image."""
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def person_image(colour: tuple[int, int, int], seed: int, fmt: str = "PNG") -> bytes:
    """A 48×24 'pedestrian': clothing colour with noise and a darker stripe (legs) at a random height."""
    rng = np.random.default_rng(seed)
    arr = np.empty((48, 24, 3), dtype=np.float32)
    arr[:] = colour
    arr += rng.uniform(-20, 20, size=arr.shape)
    top = int(rng.integers(26, 34))
    arr[top:] *= 0.75
    return png_bytes(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), fmt)


def _embedding_graph(rng: np.random.Generator) -> onnx.ModelProto:
    conv_w = rng.standard_normal((8, 3, 1, 1)).astype(np.float32)
    conv_b = (0.1 * rng.standard_normal(8)).astype(np.float32)
    gemm_w = rng.standard_normal((8, EMBED_DIM)).astype(np.float32)
    gemm_b = (0.1 * rng.standard_normal(EMBED_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "conv_w", "conv_b"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "gemm_w", "gemm_b"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_embedding",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, INPUT_H, INPUT_W])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", EMBED_DIM])],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((conv_w, "conv_w"), (conv_b, "conv_b"), (gemm_w, "gemm_w"), (gemm_b, "gemm_b"))
        ],
    )
    return finish(graph)


def _head_graph(weight: np.ndarray, bias: float) -> onnx.ModelProto:
    """Sub → Mul (square) → Gemm (2 logits; the 'same' column holds w, b) → Softmax."""
    inputs = ("embeddings_a", "embeddings_b")
    return square_head("tiny_verification_head", inputs, EMBED_DIM, weight, bias, SAME_INDEX, score=False)


def _calibrate(same: np.ndarray, diff: np.ndarray, higher: bool) -> ScoringMode:
    """A threshold halfway between the classes, with its measured rates (calibrated-looking thresholds)."""
    if higher:
        threshold = float((same.min() + diff.max()) / 2)
        tpr, fmr = float(np.mean(same >= threshold)), float(np.mean(diff >= threshold))
    else:
        threshold = float((same.max() + diff.min()) / 2)
        tpr, fmr = float(np.mean(same <= threshold)), float(np.mean(diff <= threshold))
    return ScoringMode(
        higher_is_better=higher,
        thresholds={"eer": Threshold(threshold=threshold, tpr=tpr, fmr=fmr)},
        default_threshold="eer",
    )


def _embed(path: Path, images: list[bytes], spec_manifest: InputSpec) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess_bytes(b, spec_manifest.to_spec()) for b in images])
    return session.run(["embeddings"], {"images": batch})[0]


def build_tiny_models(root: Path) -> Path:
    """Write ``tiny-embedding`` and ``tiny-siamese`` model folders (real ONNX graphs) under ``root``."""
    rng = np.random.default_rng(1501)
    embed_model = _embedding_graph(rng)
    spec = InputSpec(height=INPUT_H, width=INPUT_W, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    tmp = root / "_calibration"
    tmp.mkdir(parents=True)
    onnx.save(embed_model, tmp / "embedding.onnx")
    colours = list(PERSON_COLOURS.values())
    emb = _embed(
        tmp / "embedding.onnx",
        [person_image(c, 1000 + 10 * i + j) for i, c in enumerate(colours) for j in range(4)],
        spec,
    )
    labels = np.repeat(np.arange(len(colours)), 4)
    ia, ib = np.triu_indices(len(emb), k=1)
    is_same = labels[ia] == labels[ib]
    dist = np.linalg.norm(emb[ia] - emb[ib], axis=1)
    d_mid = float((dist[is_same].max() + dist[~is_same].min()) / 2)
    # logit = bias + Σ wᵢ dᵢ² ≈ bias + mean(w)·‖d‖²: zero at ‖d‖ = d_mid, non-uniform weights
    u = rng.uniform(0.5, 1.5, EMBED_DIM)
    weight = (-(4.0 / d_mid**2) * u / u.mean()).astype(np.float32)
    bias = 4.0
    head = HeadWeights(weight=weight, bias=bias)
    scoring: dict[str, ScoringMode] = {}
    for metric in ("cosine", "correlation", "euclidean", "softmax"):
        s = pair_scores(metric, emb[ia], emb[ib], head)
        scoring[metric] = _calibrate(s[is_same], s[~is_same], higher_is_better(metric))
    models = root / "models"
    for name, kind in (("tiny-embedding", "embedding"), ("tiny-siamese", "siamese")):
        folder = models / name
        folder.mkdir(parents=True)
        onnx.save(embed_model, folder / "embedding.onnx")
        files = {"embedding": file_entry(folder, "embedding.onnx")}
        modes = {k: v for k, v in scoring.items() if kind == "siamese" or k != "softmax"}
        verification = None
        if kind == "siamese":
            onnx.save(_head_graph(weight, bias), folder / "verification_head.onnx")
            np.savez(folder / "head_weights.npz", weight=weight, bias=np.float32(bias))
            files["verification_head"] = file_entry(folder, "verification_head.onnx")
            files["head_weights"] = file_entry(folder, "head_weights.npz")
            verification = VerificationSpec(same_index=SAME_INDEX)
        ModelManifest(
            name=name,
            version="1",
            kind=kind,
            description="tiny test model (mean colour embedding)",
            input=spec,
            files=files,
            embedding_dim=EMBED_DIM,
            normalize_embeddings=False,
            default_metric="softmax" if kind == "siamese" else "cosine",
            scoring=modes,
            verification=verification,
            provenance=Provenance(recipe="test", dataset="synthetic-colours", synthetic=True),
        ).save(folder)
    return models


@pytest.fixture(scope="session", autouse=True)
def _single_thread_faiss() -> None:
    """FAISS's OpenMP threads spin badly on a shared 2-core machine; the service defaults to 1 too."""
    import faiss

    faiss.omp_set_num_threads(1)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder: the real demo models when REID_TEST_MODELS_DIR is set, else tiny built ones."""
    env = os.environ.get("REID_TEST_MODELS_DIR")
    if env:
        return Path(env)
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def model_name() -> str:
    """The model folder the API tests serve."""
    return os.environ.get("REID_TEST_MODEL", "tiny-siamese")


@dataclass(frozen=True)
class PersonImages:
    """Enrolment and held-out query images per person."""

    enrol: dict[str, list[bytes]]
    query: dict[str, bytes]


def synthetic_pedestrian_images(persons: int = 3, seed: int = 7) -> PersonImages:
    """Three synthetic pedestrians (training.data.synthetic) × 4 cameras + 1 held-out image each, as JPEG."""
    from training.data.synthetic import (
        SynthConfig,
        camera_profiles,
        person_rng,
        render_pedestrian_image,
        sample_person,
    )

    config = SynthConfig(identities=persons + 1, train_identities=1, seed=seed)
    cameras = camera_profiles(config)
    enrol: dict[str, list[bytes]] = {}
    query: dict[str, bytes] = {}
    for pid in range(1, persons + 1):
        person = sample_person(person_rng(seed, pid))
        shots = [
            png_bytes(
                render_pedestrian_image(
                    person, cameras[j % len(cameras)], np.random.default_rng([seed, pid, j])
                ),
                "JPEG",
            )
            for j in range(5)
        ]
        enrol[f"person-{pid:04d}"], query[f"person-{pid:04d}"] = shots[:4], shots[4]
    return PersonImages(enrol=enrol, query=query)


@pytest.fixture(scope="session")
def person_images() -> PersonImages:
    """Three persons × (4 enrolment + 1 held-out) images: distinct colours for the tiny models, synthetic
    pedestrians (training.data.synthetic) when real models are tested (REID_TEST_MODELS_DIR)."""
    if os.environ.get("REID_TEST_MODELS_DIR"):
        return synthetic_pedestrian_images()
    persons = list(PERSON_COLOURS.items())[:3]
    enrol = {p: [person_image(c, 100 * i + j) for j in range(4)] for i, (p, c) in enumerate(persons)}
    query = {p: person_image(c, 100 * i + 50) for i, (p, c) in enumerate(persons)}
    return PersonImages(enrol=enrol, query=query)


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio."""
    return "asyncio"


@pytest.fixture
def make_settings(models_dir: Path, model_name: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test app: the test models, a fresh data dir, CPU (overridable by keyword)."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "models_dir": models_dir,
            "model": model_name,
            "data_dir": tmp_path / "data",
            "device": "cpu",
            "max_wait_ms": 2.0,
            "intra_op_threads": 1,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real app with its lifespan running, and an httpx client on its ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


@pytest.fixture
def serve() -> Callable[[Settings], object]:
    """``async with serve(settings) as (app, client): ...``"""
    return running


@pytest.fixture(scope="session")
def pairwise_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pairwise model repository of ``tiny_pairwise.py``, written once for the session."""
    return write_pairwise_models(tmp_path_factory.mktemp("pairwise-models"))


@pytest.fixture(scope="session")
def people() -> People:
    """The three colour identities the tiny pairwise model separates."""
    return make_people()
