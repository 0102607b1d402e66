"""End to end: `reid train` on a tiny synthetic set, `--resume`, `reid eval`, a Siamese run, and DDP."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.cli import main
from tests.training.engine.conftest import TINY_FLAGS
from training.data.synthetic.market import SynthConfig, generate_market_dataset
from training.engine.checkpoint import load_model, read_checkpoint

REPO = Path(__file__).resolve().parents[3]
RUN_FILES = ("config.json", "log.csv", "last.pt", "checkpoint.pt", "metrics.json",
             "cmc.png", "ranks.png", "distances.png", "roc.png")


def _train(root: Path, out: Path, *extra: str) -> int:
    return main(["train", "--recipe", "demo-osnet-cpu", "--root", str(root), "--output", str(out),
                 "--no-progress", *TINY_FLAGS, *extra])


def _log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_train_resume_and_eval(tiny_market: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _train(tiny_market, run, "--epochs", "2", "--eval_every", "1") == 0
    summary = json.loads(capsys.readouterr().out)
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert summary["epochs_completed"] == 2 and 0.0 <= summary["mAP"] <= 1.0
    assert summary["rank1"] <= summary["rank5"] <= summary["rank20"]
    config = json.loads((run / "config.json").read_text())
    assert (config["recipe"], config["epochs"], config["height"], config["p"]) == ("demo-osnet-cpu", 2, 64, 4)
    rows = _log_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["mAP"] for r in rows)  # validated every epoch
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_query"] == 16 and metrics["mAP"] == pytest.approx(summary["mAP"], abs=1e-4)
    assert not (run / "calibration.json").exists()  # thresholds come from the exported graph only
    modes = {"cosine", "correlation", "euclidean"}
    assert set(metrics["tpr_at_fmr"]) == set(metrics["verification"]) == modes
    for mode, tprs in metrics["tpr_at_fmr"].items():
        assert set(tprs) == {"fmr_1e-02", "fmr_1e-03", "fmr_1e-04"}, mode
        assert 0.0 <= metrics["verification"][mode]["roc_auc"] <= 1.0
    # checkpoint.pt is the best validated epoch; last.pt the last one.
    best, last = read_checkpoint(run / "checkpoint.pt"), read_checkpoint(run / "last.pt")
    assert last["epoch"] == 1
    assert best["metrics"]["mAP"] == pytest.approx(max(float(r["mAP"]) for r in rows), abs=1e-5)

    # --resume continues from last.pt to the new epoch count and appends to the log.
    assert _train(tiny_market, run, "--epochs", "3", "--eval_every", "1", "--resume", "--skip-eval") == 0
    capsys.readouterr()
    assert read_checkpoint(run / "last.pt")["epoch"] == 2
    losses = [float(r["total"]) for r in _log_rows(run)]
    assert [r["epoch"] for r in _log_rows(run)] == ["1", "2", "3"]
    assert losses[-1] < 0.95 * losses[0], f"the training loss does not fall: {losses}"

    report = tmp_path / "report"
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--root", str(tiny_market),
                 "--metric", "euclidean", "--rerank", "--flip", "--output", str(report)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    written = json.loads((report / "metrics.json").read_text())
    assert written["rerank"] is True and written["flip"] is True and written["metric"] == "euclidean"
    assert evaluated["mAP"] == pytest.approx(written["mAP"], abs=1e-4)


def test_resume_without_validation_makes_the_last_epoch_the_checkpoint(
    tiny_market: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert _train(tiny_market, run, "--epochs", "1", "--eval_every", "0", "--skip-eval") == 0
    assert read_checkpoint(run / "checkpoint.pt")["epoch"] == 0
    assert _train(tiny_market, run, "--epochs", "2", "--eval_every", "0", "--resume", "--skip-eval") == 0
    capsys.readouterr()
    # without validation checkpoint.pt is the last epoch, also after --resume (it was the first segment's)
    assert read_checkpoint(run / "checkpoint.pt")["epoch"] == read_checkpoint(run / "last.pt")["epoch"] == 1


def test_resume_into_another_architecture_fails(tiny_market: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _train(tiny_market, run, "--epochs", "1", "--skip-eval") == 0
    code = _train(tiny_market, run, "--epochs", "2", "--embedding_dim", "16", "--resume", "--skip-eval")
    assert code == 2
    err = capsys.readouterr().err
    assert "'embedding:osnet_x0_25'" in err and "'embedding:osnet_x0_25+reduce16'" in err


def test_siamese_run_calibrates_softmax(tiny_market: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "siamese"
    code = main(["train", "--recipe", "fusion-resnet50", "--root", str(tiny_market), "--output", str(run),
                 "--no-progress", *TINY_FLAGS, "--epochs", "1", "--batch_size", "8",
                 "--pairs_per_epoch", "32", "--eval_every", "0"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert "softmax" in summary
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["verification"]["softmax"]["roc_auc"] <= 1.0 and "softmax" in metrics["tpr_at_fmr"]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed")
def test_torchrun_two_processes_gloo(tiny_market: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # `reid train` under torchrun; the worker wraps Trainer.fit so that every rank saves what it holds.
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(Path(__file__).with_name("ddp_worker.py")),
           "train", "--recipe", "demo-osnet-cpu", "--root", str(tiny_market), "--output", str(run),
           "--no-progress", *TINY_FLAGS, "--epochs", "2", "--device", "cpu", "--skip-eval"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1 and (run / "checkpoint.pt").is_file()
    assert len(_log_rows(run)) == 2  # only rank 0 writes
    ranks = [torch.load(run / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    parameters = {name for name, _ in load_model(run / "last.pt")[0].named_parameters()}
    # Both ranks hold the same weights after training, bit for bit (DDP averaged every gradient) ...
    different = [k for k in parameters if not torch.equal(ranks[0]["model"][k], ranks[1]["model"][k])]
    assert not different, f"{len(different)} parameters differ between the ranks, e.g. {different[:3]}"
    if "centers" in ranks[0]:
        assert torch.equal(ranks[0]["centers"], ranks[1]["centers"]), "center-loss centers differ"
    # ... they are the weights rank 0 saved, and training moved them.
    assert all(torch.equal(ckpt["model"][k], ranks[0]["model"][k]) for k in parameters)
    moved = [k for k in parameters if not torch.equal(ranks[0]["start"][k], ranks[0]["model"][k])]
    assert len(moved) > len(parameters) // 2, f"only {len(moved)} of {len(parameters)} parameters changed"


def test_time_budget_stops_training(
    tiny_market: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "budget"
    assert _train(tiny_market, run, "--epochs", "50", "--max_train_minutes", "0.0001", "--skip-eval") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stopped_by_time_budget"] is True and summary["epochs_completed"] == 1
    assert len(_log_rows(run)) == 1 and (run / "checkpoint.pt").is_file()


#: 48 persons (32 train, 16 test) × 2 cameras × 3 images: the colour histogram's rank-1 is 34 % (32 queries).
LEARNING_SET = SynthConfig(identities=48, train_identities=32, cameras=2, images_per_camera=3, seed=3)
#: ≈ 240 steps of 32 images (P8 × K4) at 64×32, no augmentation: ≈ 25 s of one CPU core.
LEARNING_FLAGS = ["--height", "64", "--width", "32", "--threads", "1", "--num_workers", "0", "--p", "8",
                  "--k", "4", "--epochs", "40", "--eval_every", "10", "--lr", "3e-3", "--erasing", "0",
                  "--pad", "0", "--center_weight", "0", "--max_train_minutes", "none", "--no-progress"]


@pytest.mark.slow  # from scratch, a network needs ≈ 200 steps to pass the histogram: too long for `make test`
def test_training_beats_the_colour_histogram_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    generate_market_dataset(root, LEARNING_SET, workers=1)
    assert main(["baseline", "--root", str(root)]) == 0
    floor = json.loads(capsys.readouterr().out)
    run = tmp_path / "run"
    argv = ["train", "--recipe", "demo-osnet-cpu", "--root", str(root), "--output", str(run), *LEARNING_FLAGS]
    assert main(argv) == 0
    trained = json.loads(capsys.readouterr().out)  # checkpoint.pt (best validated epoch) on the test split
    losses = [float(r["total"]) for r in _log_rows(run)]
    assert losses[-1] < 0.6 * losses[0], f"the training loss does not fall: {losses}"
    assert trained["rank1"] > floor["rank1"], (trained["rank1"], floor["rank1"])
    assert trained["mAP"] > floor["mAP"], (trained["mAP"], floor["mAP"])
