"""`reid train` → `reid export` (fp32 and fp16) → `reid models check`, and train/serve skew, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.cli import main
from service.contract.manifest import load
from service.contract.preprocess import PreprocessSpec, preprocess_bytes
from tests.training.engine.conftest import TINY_FLAGS, tiny_market  # noqa: F401  (fixture)
from training.data.dataset import ReidImageDataset
from training.data.datasets import build_dataset
from training.engine.checkpoint import load_model
from training.export.parity import cpu_session


@pytest.fixture(scope="module")
def trained_run(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    run = tmp_path_factory.mktemp("run")
    argv = ["train", "--recipe", "demo-osnet-cpu", "--root", str(tiny_market), "--output", str(run)]
    assert main([*argv, "--no-progress", *TINY_FLAGS, "--epochs", "1"]) == 0
    return run


@pytest.mark.parametrize("fp16", [False, True])
def test_export_round_trip(trained_run: Path, tmp_path: Path, fp16: bool, capsys) -> None:
    out = tmp_path / ("tiny-fp16" if fp16 else "tiny")
    argv = ["export", "--checkpoint", str(trained_run / "checkpoint.pt"), "--output", str(out)]
    assert main(argv + (["--fp16"] if fp16 else [])) == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = load(out)
    assert manifest.kind == "embedding" and manifest.default_metric == "cosine"
    assert set(manifest.scoring) == {"cosine", "correlation", "euclidean"}
    assert summary["parity"] == manifest.parity.model_dump(mode="json")
    rule, embedding = manifest.parity.rule, manifest.parity.outputs["embedding"]
    assert rule is not None and rule.precision == ("fp16" if fp16 else "fp32")
    assert embedding.max_rel_diff <= rule.max_rel_diff
    assert embedding.min_cosine is not None and embedding.min_cosine >= rule.min_cosine
    for mode in manifest.scoring.values():
        assert mode.default_threshold == "fmr_1e-03" and "eer" in mode.thresholds
    assert manifest.provenance.synthetic and "synthetic" in manifest.provenance.notes
    run_metrics = json.loads((trained_run / "metrics.json").read_text())
    assert manifest.provenance.metrics["rank1"] == pytest.approx(run_metrics["rank1"])
    assert manifest.provenance.metrics["mAP"] == pytest.approx(run_metrics["mAP"])
    assert not list(tmp_path.glob(".*staging*"))  # nothing half-written is left behind

    assert main(["models", "check", str(out)]) == 0
    assert "checksums verified" in capsys.readouterr().out
    onnx_file = out / "embedding.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    assert main(["models", "check", str(out)]) == 1
    assert "checksum mismatch for embedding.onnx" in capsys.readouterr().out


def test_no_train_serve_skew(trained_run: Path, tiny_market: Path, tmp_path: Path) -> None:  # noqa: F811
    """One image file: service preprocessing + onnxruntime vs the training data path + torch."""
    out = tmp_path / "skew"
    assert main(["export", "--checkpoint", str(trained_run / "checkpoint.pt"), "--output", str(out)]) == 0
    manifest = load(out)
    record = build_dataset("market1501", tiny_market).query[0]

    served = preprocess_bytes(record.path.read_bytes(), manifest.input.to_spec())
    ort_embedding = cpu_session(out / "embedding.onnx").run(None, {"images": served[None]})[0][0]

    model, cfg, _ = load_model(trained_run / "checkpoint.pt")
    spec = PreprocessSpec(height=cfg.height, width=cfg.width, mean=tuple(cfg.mean), std=tuple(cfg.std))
    image, _, _, _ = ReidImageDataset([record], spec)[0]
    np.testing.assert_array_equal(image.numpy(), served)  # the same bytes → the same tensor, bit for bit
    with torch.no_grad():
        torch_embedding = model(image[None]).numpy()[0]
    assert np.max(np.abs(torch_embedding - ort_embedding)) <= 1e-4


def test_export_refuses_a_checkpoint_that_is_not_one(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "checkpoint.pt"
    torch.save({"hello": 1}, bogus)
    assert main(["export", "--checkpoint", str(bogus), "--output", str(tmp_path / "m")]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
