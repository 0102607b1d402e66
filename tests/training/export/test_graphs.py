"""Parity-gated ONNX export of embedding and Siamese models (real onnxruntime, real graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from service.contract.preprocess import PreprocessSpec, preprocess_file, stack_batch
from service.contract.scoring import HeadWeights, pair_scores
from training.export.graphs import WrittenGraphs, check_head_weights
from training.export.onnx_io import DEFAULT_OPSET, ExportError
from training.export.parity import check_parity, cpu_session
from training.families import get_family
from training.models.backbones import build_backbone
from training.models.heads import SAME_INDEX, BNNeckHead
from training.models.reid_model import EmbeddingModel, SiameseModel

SPEC = PreprocessSpec(height=64, width=32)


def _images(tmp_path, n: int = 7) -> np.ndarray:
    """Real encoded image files, read back through the shared preprocessing."""
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = []
    for i in range(n):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (80, 40, 3), dtype=np.uint8)).save(p, quality=90)
        arrays.append(preprocess_file(p, SPEC))
    return stack_batch(arrays)


def model_with_bn_statistics(seed: int = 0, backbone_name: str = "osnet_x0_25") -> EmbeddingModel:
    """A BN-neck embedding model, in eval mode, whose BN layers saw two train-mode batches."""
    torch.manual_seed(seed)
    backbone = build_backbone(backbone_name)
    model = EmbeddingModel(backbone, BNNeckHead(backbone.feature_dim, num_classes=5))
    # Non-trivial BN statistics, as after training.
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 64, 32))
    return model.eval()


def _export(model: torch.nn.Module, folder: Path, images: np.ndarray, fp16: bool = False) -> WrittenGraphs:
    """The family's export (the fixtures build bare models: a SiameseModel is the siamese family's)."""
    family = get_family("siamese" if isinstance(model, SiameseModel) else "embedding")
    return family.export(model, folder, images, fp16=fp16, opset=DEFAULT_OPSET)


@pytest.fixture(scope="module")
def embedding_model() -> EmbeddingModel:
    return model_with_bn_statistics()


def test_fp32_and_fp16_embedding_export_pass_the_gate(tmp_path, embedding_model):
    images = _images(tmp_path)
    fp32 = _export(embedding_model, tmp_path / "fp32", images, fp16=False)
    assert fp32.files == {"embedding": "embedding.onnx"}
    assert fp32.parity.rule is not None and fp32.parity.rule.precision == "fp32"
    assert fp32.parity.outputs["embedding"].max_rel_diff <= fp32.parity.rule.max_rel_diff
    assert fp32.embedding_dim == embedding_model.embedding_dim
    fp16 = _export(embedding_model, tmp_path / "fp16", images, fp16=True)
    assert fp16.parity.rule is not None and fp16.parity.rule.precision == "fp16"
    assert (fp16.parity.outputs["embedding"].min_cosine or 0.0) >= fp16.parity.rule.min_cosine
    # fp16 weights really are stored as float16 (smaller file), inputs stay float32.
    size32 = (tmp_path / "fp32" / "embedding.onnx").stat().st_size
    size16 = (tmp_path / "fp16" / "embedding.onnx").stat().st_size
    assert size16 < 0.7 * size32
    sess = cpu_session(tmp_path / "fp16" / "embedding.onnx")
    assert sess.get_inputs()[0].type == "tensor(float)" and sess.get_inputs()[0].shape[0] == "batch"


def test_train_mode_model_is_refused_naming_the_module(tmp_path, embedding_model):
    model = model_with_bn_statistics()
    model.head.bottleneck.train()
    with pytest.raises(ExportError, match=r"head\.bottleneck.*training mode"):
        _export(model, tmp_path / "m", _images(tmp_path))


def test_perturbed_onnx_weight_fails_the_gate_with_the_difference(tmp_path, embedding_model):
    images = _images(tmp_path)
    _export(embedding_model, tmp_path / "m", images)
    path = tmp_path / "m" / "embedding.onnx"
    proto = onnx.load(str(path))
    init = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[: arr.size // 2] += 0.5
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    onnx.save(proto, str(path))

    def reference(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return embedding_model(torch.from_numpy(images)).numpy()

    expected = r"embedding\.onnx: onnxruntime differs from torch at batch 1: max \|Δ\| = .* × max \|ref\|"
    with pytest.raises(ExportError, match=expected):
        check_parity(path, reference, {"images": images}, fp16=False)


def test_siamese_export_writes_head_and_exact_weights(tmp_path):
    torch.manual_seed(1)
    model = SiameseModel(build_backbone("osnet_x0_25"), num_classes=4, dropout=0.5).eval()
    # A head with non-trivial weights (as after training).
    with torch.no_grad():
        model.verification_head.classifier.weight.normal_(0, 0.5)
        model.verification_head.classifier.bias.normal_(0, 0.5)
    images = _images(tmp_path)
    out = _export(model, tmp_path / "s", images)
    assert set(out.files) == {"embedding", "verification_head", "head_weights"}
    # 100 random pairs: p(same) from the stored linear weights equals the ONNX head within 1e-5.
    dim = out.embedding_dim
    assert check_head_weights(tmp_path / "s", dim, num_pairs=100, seed=3) <= 1e-5
    head = HeadWeights.from_npz(tmp_path / "s" / "head_weights.npz", dim)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((100, dim)).astype(np.float32)
    b = rng.standard_normal((100, dim)).astype(np.float32)
    probs = cpu_session(tmp_path / "s" / "verification_head.onnx").run(
        None, {"embeddings_a": a, "embeddings_b": b}
    )[0]
    np.testing.assert_allclose(pair_scores("softmax", a, b, head), probs[:, SAME_INDEX], atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert probs[:, SAME_INDEX].std() > 1e-3  # not a constant head
