"""The scale-aware parity gate: a large-magnitude BN-neck ResNet-50 passes it, wrong graphs do not.

The old gate (max |Δ| ≤ 1e-4, absolute) refused a correct export whose embeddings are large; the new rule
(max |Δ| / max |ref| and the per-row cosine, :mod:`training.export.parity`) does not depend on the output's
scale, and still refuses a graph that computes something else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from service.contract.manifest import discover, load
from service.contract.parity import ParityReport
from tests.training.export.test_graphs import model_with_bn_statistics
from training.export.onnx_io import DEFAULT_OPSET, ExportError
from training.export.parity import (
    FP16_MAX_REL_DIFF,
    FP16_MIN_COSINE,
    FP32_MAX_REL_DIFF,
    FP32_MIN_COSINE,
    check_parity,
    compare,
)
from training.families import get_family
from training.models.reid_model import EmbeddingExport, EmbeddingModel

ROOT = Path(__file__).resolve().parents[3]
#: The gate of the earlier exports: max |Δ| ≤ 1e-4 on unnormalised outputs, whatever their scale.
OLD_ABSOLUTE_GATE = 1e-4
#: BN-neck affine weight: embeddings with norms ≈ 1200 and entries up to ≈ 70.
NECK_WEIGHT = 30.0


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((7, 3, 64, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def large_resnet50(images: np.ndarray) -> EmbeddingModel:
    """A BoT-style ResNet-50 (BN neck) at 64×32 whose embeddings are large, as after real training.

    The backbone's BN statistics come from train-mode passes; the BN neck's running statistics are those of
    the pooled features (it whitens them, as a trained neck does) and its weight is :data:`NECK_WEIGHT`.
    """
    model = model_with_bn_statistics(backbone_name="resnet50")
    with torch.no_grad():
        neck = model.head.bottleneck
        features = model.head.pooled_features(model.backbone(torch.from_numpy(images)))
        neck.running_mean.copy_(features.mean(0))
        neck.running_var.copy_(features.var(0) + 1e-6)
        neck.weight.fill_(NECK_WEIGHT)
    return model


def _reference(model: torch.nn.Module):
    export = EmbeddingExport(model).eval()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return export(torch.from_numpy(images)).numpy()

    return run


@pytest.fixture(scope="module")
def exported(large_resnet50: EmbeddingModel, images: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    """The large ResNet-50 through the embedding family's export (the fp32 gate), once for the module."""
    folder = tmp_path_factory.mktemp("r50")
    written = get_family("embedding").export(large_resnet50, folder, images, fp16=False, opset=DEFAULT_OPSET)
    return folder / "embedding.onnx", written


def test_large_bnneck_resnet50_passes_the_scale_aware_gate(
    large_resnet50: EmbeddingModel, images: np.ndarray, exported
) -> None:
    norms = np.linalg.norm(_reference(large_resnet50)(images), axis=1)
    assert norms.min() > 100, norms  # embedding norms far into the tens
    written = exported[1]
    embedding = written.parity.outputs["embedding"]
    assert embedding.max_abs_diff > OLD_ABSOLUTE_GATE  # what the old absolute gate refused
    assert embedding.max_rel_diff <= FP32_MAX_REL_DIFF
    assert embedding.min_cosine is not None and embedding.min_cosine >= FP32_MIN_COSINE
    assert embedding.max_abs_reference > 10
    rule = written.parity.rule
    assert rule is not None and (rule.precision, rule.max_rel_diff, rule.batches) == ("fp32", 1e-3, [1, 7])


def _scaled_output(path: Path, factor: float, out: Path) -> Path:
    """The same graph with its output multiplied by ``factor``: a wrong graph whose cosine is still 1."""
    proto = onnx.load(str(path))
    graph = proto.graph
    name = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{o}_raw" if o == name else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "scale_factor"))
    graph.node.append(helper.make_node("Mul", [f"{name}_raw", "scale_factor"], [name]))
    onnx.save(proto, str(out))
    return out


def test_a_scaled_output_is_refused_though_its_cosine_is_1(
    large_resnet50: EmbeddingModel, images: np.ndarray, exported, tmp_path: Path
) -> None:
    reference = _reference(large_resnet50)
    scaled = _scaled_output(exported[0], 1.01, tmp_path / "scaled.onnx")  # output 1 % too large
    expected = r"scaled\.onnx: .* at batch 1: max \|Δ\| = .* = 0\.01 × max \|ref\|"
    with pytest.raises(ExportError, match=expected):
        check_parity(scaled, reference, {"images": images}, fp16=False)
    # fp16 tolerances: the old cosine-only fp16 gate accepted an output 1.5× too large, the rule does not.
    scaled = _scaled_output(exported[0], 1.5, tmp_path / "scaled16.onnx")
    with pytest.raises(ExportError, match=r"fp16 gate") as caught:
        check_parity(scaled, reference, {"images": images}, fp16=True)
    cosine = re.search(r"min cosine (\d\.\d+)", str(caught.value))
    assert cosine and float(cosine.group(1)) >= FP16_MIN_COSINE
    assert "= 0.5 × max |ref|" in str(caught.value) and FP16_MAX_REL_DIFF < 0.5


def test_a_shifted_bn_neck_channel_is_refused(
    large_resnet50: EmbeddingModel, images: np.ndarray, exported, tmp_path: Path
) -> None:
    # One BN-neck channel's running mean shifted by 5 % of that channel's std: one coordinate of 2048 off.
    neck = large_resnet50.head.bottleneck
    proto = onnx.load(str(exported[0]))
    init = next(
        (init for init in proto.graph.initializer if tuple(init.dims) == (2048,)
         and np.allclose(numpy_helper.to_array(init), neck.running_mean.numpy())),
        None,
    )  # fmt: skip
    assert init is not None, "the BN neck's running mean is not an initializer of the exported graph"
    shifted = numpy_helper.to_array(init).copy()
    shifted[0] += 0.05 * float(neck.running_var[0].sqrt())
    init.CopyFrom(numpy_helper.from_array(shifted, init.name))
    onnx.save(proto, str(tmp_path / "shifted.onnx"))
    with pytest.raises(ExportError, match=r"shifted\.onnx: onnxruntime differs from torch at batch 1"):
        check_parity(tmp_path / "shifted.onnx", _reference(large_resnet50), {"images": images}, fp16=False)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_the_gate_numbers_do_not_depend_on_the_output_scale(scale: float) -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((7, 64))
    ort_out = ref + 1e-6 * rng.standard_normal((7, 64))
    base = compare(ort_out.astype(np.float64), ref)
    got = compare(ort_out * scale, ref * scale)
    assert got.max_rel_diff == pytest.approx(base.max_rel_diff, rel=1e-6)
    assert got.min_cosine == pytest.approx(base.min_cosine, abs=1e-12)
    assert got.max_abs_diff == pytest.approx(base.max_abs_diff * scale, rel=1e-6)  # the old number scales
    score = compare(np.array([1e-9, 0.5]), np.array([-1e-9, 0.5]))  # one number per row: no cosine
    assert score.min_cosine is None and score.max_rel_diff == pytest.approx(4e-9)


def test_shipped_manifests_with_the_old_flat_parity_still_load() -> None:
    folders = discover(ROOT / "models")
    assert folders, "no model folders under models/"
    for folder in folders:
        raw = json.loads((folder / "manifest.json").read_text())
        manifest = load(folder)
        if raw.get("schema_version", 1) == 1:
            assert manifest.parity.rule is None
            assert manifest.parity.measured == raw["parity"]  # every old number kept
    legacy = ParityReport.model_validate({"embedding_max_abs_diff": 6e-6, "fp16": 0.0})
    assert legacy.measured == {"embedding_max_abs_diff": 6e-6, "fp16": 0.0} and not legacy.outputs
