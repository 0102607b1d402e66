"""A tiny real pairwise model repository for the service tests (onnx.helper, no torch), and the helpers
that drive it through the app.

``encoder.onnx``: Conv 1×1 → GAP → Gemm → L2-normalize = descriptor; encoding = [descriptor | pooled
features]. ``comparator.onnx``: weighted squared differences of two encodings → p(same). The comparator's
weights are fitted so it separates three clothing colours, with an order that differs from cosine.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from service.config import Settings
from service.contract.manifest import (
    InputSpec,
    ModelManifest,
    PairwiseSpec,
    Provenance,
    ScoringMode,
    Threshold,
    file_entry,
)
from service.contract.preprocess import preprocess_bytes

DESC_DIM, POOLED = 16, 8
ENC_DIM = DESC_DIM + POOLED  # encoding = [descriptor | pooled conv features]
H, W = 32, 16
SAME = 1
MAX_PAIRS = 5  # comparator_max_batch: a 12-entry gallery takes three comparator calls
SPEC = InputSpec(height=H, width=W, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
COLOURS = {"p-red": (210, 40, 40), "p-green": (40, 190, 60), "p-blue": (40, 60, 210)}


def _image(colour: tuple[int, int, int], seed: int) -> bytes:
    """A 48×24 'pedestrian': clothing colour with noise, darker legs below a random height."""
    rng = np.random.default_rng(seed)
    arr = np.empty((48, 24, 3), dtype=np.float32)
    arr[:] = colour
    arr += rng.uniform(-25, 25, size=arr.shape)
    arr[int(rng.integers(26, 34)) :] *= 0.75
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    """A checked opset-17 model of the graph."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _encoder(rng: np.random.Generator, normalize: bool = True) -> onnx.ModelProto:
    """Conv 1×1 → GAP → Gemm → L2-normalize = descriptor; encoding = [descriptor | pooled features]."""
    inits = {
        "conv_w": rng.standard_normal((POOLED, 3, 1, 1)).astype(np.float32),
        "conv_b": (0.1 * rng.standard_normal(POOLED)).astype(np.float32),
        "gemm_w": rng.standard_normal((POOLED, DESC_DIM)).astype(np.float32),
        "gemm_b": (0.1 * rng.standard_normal(DESC_DIM)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["images", "conv_w", "conv_b"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "gemm_w", "gemm_b"], ["raw"]),
        helper.make_node("ReduceL2", ["raw"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Div" if normalize else "Add", ["raw", "norm"], ["descriptor"]),
        helper.make_node("Concat", ["descriptor", "flat"], ["encoding"], axis=1),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "tiny_pairwise_encoder",
        [vi("images", TensorProto.FLOAT, ["N", 3, H, W])],
        [
            vi("encoding", TensorProto.FLOAT, ["N", ENC_DIM]),
            vi("descriptor", TensorProto.FLOAT, ["N", DESC_DIM]),
        ],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    return finish(graph)


def square_head(
    name: str, inputs: tuple[str, str], dim: int, weight: np.ndarray, bias: float, same: int, score: bool
) -> onnx.ModelProto:
    """The square-layer verification head as an ONNX model: (a − b)² → Gemm (2 logits; column ``same`` holds
    ``weight`` and ``bias``) → Softmax → ``probabilities``; with ``score``, also ``score`` = p(same), first
    (the comparator's outputs)."""
    b_mat = np.zeros((dim, 2), dtype=np.float32)
    b_mat[:, same] = weight
    c_vec = np.zeros(2, dtype=np.float32)
    c_vec[same] = bias
    nodes = [
        helper.make_node("Sub", list(inputs), ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("Gemm", ["sq", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    vi = helper.make_tensor_value_info
    outputs = [vi("probabilities", TensorProto.FLOAT, ["N", 2])]
    weights = [numpy_helper.from_array(b_mat, "w"), numpy_helper.from_array(c_vec, "b")]
    if score:
        nodes.append(helper.make_node("Gather", ["probabilities", "same_col"], ["score"], axis=1))
        outputs.insert(0, vi("score", TensorProto.FLOAT, ["N"]))
        weights.append(numpy_helper.from_array(np.array(same, dtype=np.int64), "same_col"))
    graph = helper.make_graph(
        nodes, name, [vi(n, TensorProto.FLOAT, ["N", dim]) for n in inputs], outputs, weights
    )
    return finish(graph)


def _comparator(weight: np.ndarray, bias: float) -> onnx.ModelProto:
    """(a − b)² → Gemm (the 'same' logit is Σ w(a − b)² + bias) → Softmax → score = p(same)."""
    inputs = ("encoding_a", "encoding_b")
    return square_head("tiny_pairwise_comparator", inputs, ENC_DIM, weight, bias, SAME, score=True)


def _save_model(
    folder: Path,
    name: str,
    encoder: onnx.ModelProto,
    comparator: onnx.ModelProto,
    scoring: dict[str, ScoringMode],
    encoding_dim: int = ENC_DIM,
) -> None:
    folder.mkdir(parents=True)
    onnx.save(encoder, folder / "encoder.onnx")
    onnx.save(comparator, folder / "comparator.onnx")
    ModelManifest(
        name=name,
        kind="pairwise",
        description="tiny pairwise test model (mean-colour descriptor, weighted squared differences)",
        input=SPEC,
        files={
            "encoder": file_entry(folder, "encoder.onnx"),
            "comparator": file_entry(folder, "comparator.onnx"),
        },
        embedding_dim=DESC_DIM,
        normalize_embeddings=True,
        default_metric="pairwise",
        scoring=scoring,
        pairwise=PairwiseSpec(encoding_dim=encoding_dim, comparator_max_batch=MAX_PAIRS, same_index=SAME),
        provenance=Provenance(recipe="test", dataset="synthetic-colours", synthetic=True),
    ).save(folder)


def _mode(same: np.ndarray, diff: np.ndarray) -> ScoringMode:
    assert same.min() > diff.max(), "the tiny model must separate the colour identities"
    threshold = float((same.min() + diff.max()) / 2)
    return ScoringMode(
        higher_is_better=True,
        thresholds={"eer": Threshold(threshold=threshold, tpr=1.0, fmr=0.0)},
        default_threshold="eer",
    )


def write_pairwise_models(root: Path) -> Path:
    """Write tiny-pairwise and tiny-pairwise-b (same graphs, another model id) and two broken folders."""
    rng = np.random.default_rng(2024)
    encoder = _encoder(rng)
    session = ort.InferenceSession(encoder.SerializeToString(), providers=["CPUExecutionProvider"])
    calib = [_image(c, 5000 + 10 * i + j) for i, c in enumerate(COLOURS.values()) for j in range(4)]
    enc, desc = session.run(["encoding", "descriptor"], {"images": batch(calib)})
    labels = np.repeat(np.arange(len(COLOURS)), 4)
    ia, ib = np.triu_indices(len(enc), k=1)
    same = labels[ia] == labels[ib]
    u = rng.uniform(0.2, 1.8, ENC_DIM)
    u[DESC_DIM:] *= 3.0  # the pooled features weigh in, so the comparator's order differs from cosine
    wd2 = ((enc[ia] - enc[ib]) ** 2) @ u
    mid = float((wd2[same].max() + wd2[~same].min()) / 2)
    weight = (-4.0 * u / mid).astype(np.float32)  # logit = 4 − 4·wd²/mid: zero half-way between the classes
    p_same = 1.0 / (1.0 + np.exp(-(4.0 - 4.0 * wd2 / mid)))
    cos = np.sum(desc[ia] * desc[ib], axis=1)
    scoring = {"pairwise": _mode(p_same[same], p_same[~same]), "cosine": _mode(cos[same], cos[~same])}
    comparator = _comparator(weight, 4.0)
    _save_model(root / "tiny-pairwise", "tiny-pairwise", encoder, comparator, scoring)
    _save_model(root / "tiny-pairwise-b", "tiny-pairwise-b", encoder, comparator, scoring)
    _save_model(
        root / "bad-norm",
        "bad-norm",
        _encoder(np.random.default_rng(2024), normalize=False),
        comparator,
        scoring,
    )
    _save_model(root / "bad-dim", "bad-dim", encoder, comparator, scoring, encoding_dim=ENC_DIM + 1)
    return root


def batch(images: list[bytes]) -> np.ndarray:
    """The encoder's input for encoded images, preprocessed as the service does."""
    return np.stack([preprocess_bytes(b, SPEC.to_spec()) for b in images])


@dataclass(frozen=True)
class People:
    """Images per person id: the ones to enrol and one query."""

    enrol: dict[str, list[bytes]]
    query: dict[str, bytes]


def make_people() -> People:
    """Three colour identities: four images to enrol and one query image each."""
    enrol = {p: [_image(c, 100 * i + j) for j in range(4)] for i, (p, c) in enumerate(COLOURS.items())}
    query = {p: _image(c, 100 * i + 50) for i, (p, c) in enumerate(COLOURS.items())}
    return People(enrol=enrol, query=query)


def b64(images: list[bytes]) -> list[str]:
    """Base64 strings, as the JSON API takes images."""
    return [base64.b64encode(b).decode() for b in images]


async def enrol(client: httpx.AsyncClient, people: People) -> dict[str, list[int]]:
    """Each person: two images from cam-a, two from cam-b."""
    ids: dict[str, list[int]] = {}
    for person, images in people.enrol.items():
        for cam, part in (("cam-a", images[:2]), ("cam-b", images[2:])):
            r = await client.post(
                "/gallery", json={"images": b64(part), "person_id": person, "camera_id": cam}
            )
            assert r.status_code == 201, r.text
            ids.setdefault(person, []).extend(r.json()["ids"])
    return ids


async def search(client: httpx.AsyncClient, query: bytes, **fields: object) -> list[dict]:
    """The matches of one query image (``fields`` go into the /search body)."""
    r = await client.post("/search", json={"images": b64([query]), **fields})
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["matches"]


def pairwise_settings(
    make_settings: Callable[..., Settings], pairwise_models: Path, **overrides: object
) -> Settings:
    """Settings that serve tiny-pairwise from ``pairwise_models``."""
    return make_settings(models_dir=pairwise_models, model="tiny-pairwise", **overrides)
