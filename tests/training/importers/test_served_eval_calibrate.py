"""``reid eval --model`` and ``reid calibrate`` on an imported torchreid model, against torchreid's own code.

The reference ranks features of torchreid's own model (from its sdist) with torchreid's
``compute_distance_matrix`` + ``eval_market1501``; ``reid eval --model`` computes the same numbers through
the service's runtime from the imported folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.cli import main
from service.contract.manifest import MANIFEST_FILE, load
from service.contract.preprocess import PreprocessSpec
from tests.training.engine.conftest import tiny_market  # noqa: F401  (fixture)
from tests.training.importers.upstream import randomise, torchreid_features, torchreid_model, torchreid_rank
from training.data.datasets import build_dataset
from training.importers.folder import IMAGENET_MEAN, IMAGENET_STD, sample_images

H, W = 64, 32


@pytest.fixture(scope="module")
def torchreid_osnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """torchreid's osnet_x0_25 with random weights / BN statistics, and its imported model folder."""
    root = tmp_path_factory.mktemp("served")
    spec = PreprocessSpec(height=H, width=W, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    images = torch.from_numpy(sample_images(spec, 16))
    model = randomise(torchreid_model("osnet_x0_25"), seed=7, images=images)
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, root / "osnet.pth.tar")
    folder = root / "models" / "osnet"
    argv = ["models", "import", "--format", "torchreid", "--arch", "osnet_x0_25", "--weights",
            str(root / "osnet.pth.tar"), "--output", str(folder), "--height", str(H), "--width", str(W)]
    assert main(argv) == 0
    return model, folder


def _ids(records: list) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.person_id for r in records]), np.array([r.camera_id for r in records])


def test_eval_model_equals_torchreid_evaluation(
    torchreid_osnet: tuple[torch.nn.Module, Path], tiny_market: Path, tmp_path: Path  # noqa: F811
) -> None:
    model, folder = torchreid_osnet
    argv = ["eval", "--model", str(folder), "--root", str(tiny_market), "--metric", "euclidean",
            "--output", str(tmp_path / "report")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert {"cmc.png", "roc.png", "metrics.json"} <= {p.name for p in (tmp_path / "report").iterdir()}

    split = build_dataset("market1501", tiny_market)
    spec = load(folder).input.to_spec()
    qf, gf = (torchreid_features(model, [r.path for r in rs], spec) for rs in (split.query, split.gallery))
    (q_pids, q_cams), (g_pids, g_cams) = _ids(split.query), _ids(split.gallery)
    rank1, mean_ap = torchreid_rank(qf, gf, (q_pids, g_pids, q_cams, g_cams))
    print(f"reid eval --model: rank-1 {report['rank1']:.4f} mAP {report['mAP']:.4f}; "
          f"torchreid: rank-1 {rank1:.4f} mAP {mean_ap:.4f}")
    assert abs(report["rank1"] - rank1) <= 1e-3 and abs(report["mAP"] - mean_ap) <= 1e-3


def test_calibrate_writes_a_new_version_recording_the_old_thresholds(
    torchreid_osnet: tuple[torch.nn.Module, Path], tiny_market: Path, tmp_path: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "osnet"
    shutil.copytree(torchreid_osnet[1], folder)
    before = load(folder)
    argv = ["calibrate", "--model", str(folder), "--root", str(tiny_market), "--dataset", "market1501",
            "--target-fmr", "0.01"]
    assert main(argv) == 0
    after = load(folder)
    negatives = after.calibrations[-1].counts["negative_pairs"]
    assert negatives * 0.01 < 10  # 32 images: too few pairs to place FMR 1e-2 firmly, and it says so
    assert f"only {negatives} different-person pairs" in capsys.readouterr().err
    assert (before.version, after.version) == ("1", "2") and after.uncalibrated == []
    record = after.calibrations[-1]
    assert record.previous_version == "1" and record.previous == before.scoring
    assert record.identities == 8 and record.images == 32 and record.counts["negative_pairs"] > 0
    assert all(mode.default_threshold == "fmr_1e-02" for mode in after.scoring.values())
    assert main(["models", "check", str(folder)]) == 0


def test_calibrate_refuses_one_person_and_writes_nothing(
    torchreid_osnet: tuple[torch.nn.Module, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "osnet"
    shutil.copytree(torchreid_osnet[1], folder)
    manifest_bytes = (folder / MANIFEST_FILE).read_bytes()
    person = tmp_path / "cams" / "alice"
    person.mkdir(parents=True)
    for cam in (1, 2):
        for i in range(2):
            Image.new("RGB", (32, 64), (40 * cam, 90, 30 * i)).save(person / f"{cam}_{i}.jpg")
    argv = ["calibrate", "--model", str(folder), "--root", str(tmp_path / "cams"), "-o", "train_fraction=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 labelled person" in err, err
    assert (folder / MANIFEST_FILE).read_bytes() == manifest_bytes
