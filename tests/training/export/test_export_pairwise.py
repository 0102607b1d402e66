"""Export of the papers' models: MLS → encoder + comparator (pairwise), multidepth → embedding, Siamese."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.cli import main
from service.contract.manifest import load
from service.contract.preprocess import preprocess_file, stack_batch
from tests.training.engine.conftest import tiny_market  # noqa: F401  (fixture)
from tests.training.engine.test_paper_recipes import RUN_FLAGS, tiny_flags
from training.data.datasets import build_dataset
from training.engine.checkpoint import load_model
from training.export.onnx_io import ExportError
from training.export.parity import FP32_MAX_REL_DIFF, cpu_session
from training.families.pairwise import COMPARATOR_MAX_BATCH


def _train(recipe: str, root: Path, run: Path, *extra: str) -> Path:
    argv = ["train", "--recipe", recipe, "--root", str(root), "--dataset", "market1501", "--dataset_options",
            "{}", "--output", str(run), *RUN_FLAGS, *tiny_flags(recipe), "--skip-eval", *extra]
    assert main(argv) == 0
    return run / "checkpoint.pt"


@pytest.fixture(scope="module")
def mls_checkpoint(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    run = tmp_path_factory.mktemp("mls")
    return _train("mls-l2l3", tiny_market, run, "--batch_size", "4", "--pairs_per_epoch", "12")


def test_mls_exports_encoder_and_comparator(mls_checkpoint: Path, tiny_market: Path,  # noqa: F811
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mls"
    assert main(["export", "--checkpoint", str(mls_checkpoint), "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = load(out)
    assert manifest.kind == "pairwise" and summary["kind"] == "pairwise"
    assert set(manifest.files) == {"encoder", "comparator"}
    assert manifest.default_metric == "pairwise" and set(manifest.scoring) == {"pairwise", "cosine"}
    assert manifest.scoring["pairwise"].higher_is_better and manifest.scoring["pairwise"].default_threshold
    assert manifest.embedding_dim == 256 and manifest.normalize_embeddings
    assert manifest.pairwise is not None and manifest.pairwise.comparator_max_batch == COMPARATOR_MAX_BATCH
    for key in ("encoder_encoding", "encoder_descriptor", "comparator_score", "comparator_probabilities"):
        assert manifest.parity.outputs[key].max_rel_diff <= FP32_MAX_REL_DIFF, key
    assert manifest.parity.rule is not None and manifest.parity.rule.precision == "fp32"
    assert manifest.parity.outputs["comparator_score"].min_cosine is None  # one number per pair
    assert manifest.parity.measured["pairwise_negative_pairs"] > 0

    # The graphs reproduce the torch model on real images, at batch sizes the gate did not use.
    model, _, _ = load_model(mls_checkpoint)
    split = build_dataset("market1501", tiny_market)
    spec = manifest.input.to_spec()
    images = stack_batch([preprocess_file(r.path, spec) for r in split.gallery[:5]])
    encoder = cpu_session(out / "encoder.onnx")
    encoding, descriptor = encoder.run(["encoding", "descriptor"], {"images": images})
    assert encoding.shape == (5, manifest.pairwise.encoding_dim) and descriptor.shape == (5, 256)
    np.testing.assert_allclose(np.linalg.norm(descriptor, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        ref = model.score(torch.from_numpy(images), torch.from_numpy(np.roll(images, 2, axis=0)))
    comparator = cpu_session(out / "comparator.onnx")
    score, probabilities = comparator.run(
        ["score", "probabilities"], {"encoding_a": encoding, "encoding_b": np.roll(encoding, 2, axis=0)}
    )
    np.testing.assert_allclose(score, ref.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    full = np.repeat(encoding[:1], COMPARATOR_MAX_BATCH, axis=0)
    full_batch = comparator.run(["score"], {"encoding_a": full, "encoding_b": full})[0]
    assert full_batch.shape == (COMPARATOR_MAX_BATCH,)


def test_mls_fp16_export_is_refused(mls_checkpoint: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mls16"
    assert main(["export", "--checkpoint", str(mls_checkpoint), "--output", str(out), "--fp16"]) != 0
    assert "fp16" in capsys.readouterr().err and not out.exists()


def test_multidepth_exports_selection_and_smoothing(tiny_market: Path, tmp_path: Path,  # noqa: F811
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from training.export.exporter import ExportOptions, export_checkpoint

    ckpt = _train("multidepth-vgg16", tiny_market, tmp_path / "md", "--p", "4", "--k", "2")
    with pytest.raises(ExportError, match="explore-filters"):
        export_checkpoint(ExportOptions(checkpoint=ckpt, output=tmp_path / "md-model"))
    assert main(["explore-filters", "--checkpoint", str(ckpt), "--triplets", "4", "--batch-size", "4"]) == 0
    capsys.readouterr()
    manifest = export_checkpoint(ExportOptions(checkpoint=ckpt, output=tmp_path / "md-model"))
    assert manifest.kind == "embedding" and manifest.default_metric == "euclidean"
    assert set(manifest.files) == {"embedding"}
    assert manifest.embedding_dim == 32 + 8 + 2  # 1 filter per layer: 8×4, 4×2, 2×1
    model, _, _ = load_model(ckpt)
    split = build_dataset("market1501", tiny_market)
    images = stack_batch([preprocess_file(r.path, manifest.input.to_spec()) for r in split.query[:3]])
    onnx_out = cpu_session(tmp_path / "md-model" / "embedding.onnx").run(None, {"images": images})[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, model.descriptor(torch.from_numpy(images)).numpy(), atol=1e-4)


def test_siamese_efficientnet_exports_as_siamese(tiny_market: Path, tmp_path: Path,  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _train("siamese-efficientnet-b0", tiny_market, tmp_path / "sia", "--batch_size", "4",
                  "--pairs_per_epoch", "8")
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(tmp_path / "sia-model")]) == 0
    capsys.readouterr()
    manifest = load(tmp_path / "sia-model")
    assert manifest.kind == "siamese" and manifest.default_metric == "softmax"
    assert manifest.embedding_dim == 1280 and manifest.pairwise is None


def test_multidepth_image_resolution_smoothing_passes_parity(tmp_path: Path) -> None:
    """The recipe's default: maps resized to the input size inside the graph, then the 20×20 box filter."""
    from training.engine.checkpoint import build_model
    from training.engine.recipes import resolve_config

    cfg = resolve_config("multidepth-vgg16", {"height": 64, "width": 32})
    assert cfg.multidepth.image_resolution and cfg.multidepth.filter_size == 20
    torch.manual_seed(0)
    model = build_model(cfg, 4)
    model.set_selection({"pool3": [5], "pool4": [1, 2], "pool5": [0]})  # type: ignore[operator]
    model.eval()
    images = np.random.default_rng(0).standard_normal((7, 3, 64, 32)).astype(np.float32)
    written = cfg.family.export(model, tmp_path, images, fp16=False, opset=18)
    assert written.embedding_dim == 4 * 64 * 32
    assert written.parity.outputs["embedding"].max_rel_diff <= FP32_MAX_REL_DIFF
