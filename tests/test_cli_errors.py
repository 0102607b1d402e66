"""User errors reach the user as one clear line naming the problem, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.cli import main
from training.data.synthetic.market import SynthConfig, generate_market_dataset


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("market")
    config = SynthConfig(identities=6, train_identities=3, cameras=2, images_per_camera=2)
    generate_market_dataset(root, config)
    return root


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_wrong_dataset_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "show", "market1501", "--root", str(tmp_path / "nowhere")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "nowhere" in line and "does not exist" in line


def test_root_without_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "show", "market1501", "--root", str(tmp_path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "bounding_box_train" in line and "missing" in line


def test_unknown_dataset_name(market: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "show", "market99", "--root", str(market)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "unknown dataset 'market99'" in line and "market1501" in line and "viper" in line


def test_non_image_file(market: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "m"
    shutil.copytree(market, root)
    victim = sorted((root / "query").glob("*.jpg"))[0]
    victim.write_text("this is not a picture")
    assert main(["baseline", "--root", str(root)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert victim.name in line and "not a decodable image" in line


def test_manifest_with_bad_checksum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from service.contract.manifest import InputSpec, ModelManifest, Provenance, ScoringMode, file_entry

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "embedding.onnx").write_bytes(b"weights")
    ModelManifest(
        name="model",
        kind="embedding",
        input=InputSpec(height=16, width=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        files={"embedding": file_entry(folder, "embedding.onnx")},
        embedding_dim=4,
        default_metric="cosine",
        scoring={"cosine": ScoringMode(higher_is_better=True)},
        provenance=Provenance(recipe="r", dataset="d"),
    ).save(folder)
    (folder / "embedding.onnx").write_bytes(b"tampered")
    assert main(["models", "check", str(folder)]) == 1
    line = _one_line(capsys.readouterr().out)
    assert "checksum mismatch for embedding.onnx" in line and str(folder) in line
