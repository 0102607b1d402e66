"""``reid models import --format onnx``: any embedding graph, checked on real images at batch 1 and 7."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from service.cli import main
from service.contract.manifest import load, sha256_file
from training.importers.folder import sample_images
from training.importers.torchreid import TorchreidModel

H, W, DIM = 64, 32, 24


def _graph(batch: int | str, *, reshape_to_batch_1: bool = False, nan: bool = False) -> onnx.ModelProto:
    """Conv → global pool → flatten (or a batch-1 reshape) → Gemm, with boxmot-like names and a 2nd output."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((8, DIM)).astype(np.float32), "g"),
        numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape_1"),
        numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero"),
    ]
    flat = (helper.make_node("Reshape", ["pooled", "shape_1"], ["flat"]) if reshape_to_batch_1
            else helper.make_node("Flatten", ["pooled"], ["flat"], axis=1))
    nodes = [
        helper.make_node("Conv", ["input.1", "w"], ["fmap"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["fmap"], ["pooled"]),
        flat,
        helper.make_node("Gemm", ["flat", "g"], ["feat" if nan else "output"]),
    ]
    if nan:  # 0 / 0
        nodes += [
            helper.make_node("Mul", ["feat", "zero"], ["z"]),
            helper.make_node("Div", ["z", "z"], ["output"]),
        ]
    graph = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, H, W])],
        [helper.make_tensor_value_info("fmap", TensorProto.FLOAT, [batch, 8, H, W]),
         helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _import(path: Path, output: Path, *extra: str) -> int:
    return main(["models", "import", "--format", "onnx", "--weights", str(path), "--output", str(output),
                 "--height", str(H), "--width", str(W), *extra])


@pytest.mark.parametrize("batch", ["N", 1])
def test_embedding_graph_imported_renamed_and_checked(batch: int | str, tmp_path: Path) -> None:
    source = tmp_path / "reid.onnx"
    onnx.save(_graph(batch), source)
    assert _import(source, tmp_path / "models" / "m", "--output-name", "output") == 0
    folder = tmp_path / "models" / "m"
    manifest = load(folder)
    assert manifest.embedding_dim == DIM and manifest.uncalibrated == ["correlation", "cosine", "euclidean"]
    src = manifest.provenance.source
    assert src is not None and (src.format, src.sha256) == ("onnx", sha256_file(source))
    assert manifest.parity.measured["batch_axis_made_dynamic"] == float(batch == 1)
    images = sample_images(manifest.input.to_spec())
    ours = ort.InferenceSession(str(folder / "embedding.onnx"), providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    got = ours.run(["embeddings"], {"images": images})[0]
    assert [o.name for o in ours.get_outputs()] == ["embeddings"]
    want = np.concatenate([theirs.run(["output"], {"input.1": images[i : i + 1]})[0] for i in range(7)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_torch_exported_osnet_imports(tmp_path: Path) -> None:
    model = TorchreidModel("osnet_x0_25").eval()
    source = tmp_path / "osnet.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, H, W),), str(source), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17, dynamo=False)
    assert _import(source, tmp_path / "osnet") == 0
    assert load(tmp_path / "osnet").embedding_dim == 512


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (_graph(1, reshape_to_batch_1=True), "batch"),
        (_graph("N", nan=True), "NaN"),
    ],
    ids=["static-batch-reshape", "nan-output"],
)
def test_bad_graph_refused_in_one_line_and_nothing_written(
    graph: onnx.ModelProto, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.onnx"
    onnx.save(graph, source)
    assert _import(source, tmp_path / "models" / "bad") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
