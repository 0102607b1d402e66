"""Files that are not what ``--format torchreid`` says: one-line errors, nothing written."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from service.cli import main
from tests.training.importers.conftest import save_random_torchreid

Capture = pytest.CaptureFixture[str]


def _import(weights: Path, output: Path, arch: str = "osnet_x0_25") -> int:
    return main(["models", "import", "--format", "torchreid", "--arch", arch, "--weights", str(weights),
                 "--output", str(output), "--height", "64", "--width", "32"])


def _one_line_error(capsys: Capture) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


class NotAStateDict:
    """A pickled object of a class: what weights_only=True must refuse to unpickle."""

    def __init__(self) -> None:
        self.weights = [1.0, 2.0]


@pytest.fixture(scope="module")
def good_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_torchreid("osnet_x0_25", tmp_path_factory.mktemp("src") / "osnet_x0_25.pth.tar")


def test_wrong_arch_names_the_first_bad_key_and_the_matching_arch(
    good_file: Path, tmp_path: Path, capsys: Capture
) -> None:
    assert _import(good_file, tmp_path / "models" / "m", arch="osnet_x1_0") == 2
    err = _one_line_error(capsys)
    assert "'conv1.conv.weight' has shape (16, 3, 7, 7), the arch expects (64, 3, 7, 7)" in err
    assert "matches --arch osnet_x0_25" in err
    assert not (tmp_path / "models").exists()


def test_missing_and_unexpected_keys(good_file: Path, tmp_path: Path, capsys: Capture) -> None:
    state = torch.load(good_file, weights_only=True)["state_dict"]
    del state["module.conv5.bn.running_var"]
    torch.save(state, tmp_path / "missing.pth")
    assert _import(tmp_path / "missing.pth", tmp_path / "out") == 2
    assert "missing key 'conv5.bn.running_var'" in _one_line_error(capsys)
    resnet_like = OrderedDict({"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64)})
    torch.save(resnet_like, tmp_path / "other.pth")
    assert _import(tmp_path / "other.pth", tmp_path / "out") == 2
    assert "missing key 'conv1.conv.weight'" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_truncated_file(good_file: Path, tmp_path: Path, capsys: Capture) -> None:
    data = good_file.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    assert _import(tmp_path / "cut.pth", tmp_path / "out") == 2
    assert "cannot read the file (truncated or not a PyTorch file?)" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("payload", ["object", "list"])
def test_pickle_that_is_not_a_state_dict(payload: str, tmp_path: Path, capsys: Capture) -> None:
    path = tmp_path / "thing.pth"
    if payload == "object":
        with path.open("wb") as f:
            pickle.dump(NotAStateDict(), f)
    else:
        torch.save([torch.zeros(3)], path)
    assert _import(path, tmp_path / "out") == 2
    err = _one_line_error(capsys)
    assert ("not a plain state dict" in err) if payload == "object" else ("expected a state dict" in err), err
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_replaced_without_force(
    good_file: Path, tmp_path: Path, capsys: Capture
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert _import(good_file, tmp_path / "out") == 2
    assert "already exists (pass --force" in _one_line_error(capsys)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
