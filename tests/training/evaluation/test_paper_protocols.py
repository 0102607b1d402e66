"""Named paper protocols: the registry, `--splits` parsing, the `{split}` rule, and `reid eval --protocol` end
to end on fake VIPeR / CUHK01 trees with checkpoints trained for a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.cli import main
from tests.training.data.fake_trees import (
    make_cuhk01_tree,
    make_market_tree,
    make_viper_tree,
    write_cuhk03_mat,
)
from tests.training.engine.conftest import TINY_FLAGS
from training.commands.train import protocol_overrides
from training.data.datasets import build_dataset
from training.engine.recipes import recipe_names
from training.evaluation.evaluator import is_single_shot
from training.evaluation.paper_protocols import PaperRow, compare_with_papers, get_protocol, protocol_names
from training.evaluation.splits import default_output, parse_splits, split_checkpoints

RUN_FLAGS = [*TINY_FLAGS, "--epochs", "1", "--eval_every", "0", "--no-progress", "--skip-eval"]


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --- registry ----------------------------------------------------------------------------------------------


def test_registry_datasets_splits_and_options() -> None:
    expected = {
        "market1501": ("market1501", 1, {}),
        "cuhk01": ("cuhk01", 10, {"protocol": "871/100"}),
        "cuhk01-485": ("cuhk01", 10, {"protocol": "485/486"}),
        "cuhk03-classic": ("cuhk03", 20, {"variant": "detected", "protocol": "classic"}),
        "cuhk03-classic-labeled": ("cuhk03", 20, {"variant": "labeled", "protocol": "classic"}),
        "viper": ("viper", 10, {}),
    }
    assert protocol_names() == list(expected)
    for name, (dataset, num_splits, options) in expected.items():
        protocol = get_protocol(name)
        assert (protocol.dataset, protocol.num_splits) == (dataset, num_splits)
        assert dict(protocol.options) == options
    assert get_protocol("viper").dataset_options(7) == {"split_index": 7}
    assert get_protocol("cuhk03-classic").dataset_options(19)["split_index"] == 19
    assert get_protocol("market1501").dataset_options(0) == {}  # one fixed split: no split option
    with pytest.raises(ValueError, match=r"split must be in \[0, 9\], got 10"):
        get_protocol("cuhk01").dataset_options(10)
    with pytest.raises(ValueError, match=r"unknown protocol 'cuhk02'.*viper"):
        get_protocol("cuhk02")


def test_published_rows_and_their_recipes() -> None:
    def row(protocol: str, paper: str, model: str) -> PaperRow:
        (found,) = [r for r in get_protocol(protocol).rows if (r.paper, r.model) == (paper, model)]
        return found

    assert dict(row("market1501", "003", "BoT baseline (ResNet-50)").metrics) == {"rank1": 89.4, "mAP": 75.5}
    assert dict(row("market1501", "003", "OSNet x0.25").metrics) == {"rank1": 77.3, "mAP": 56.3}
    assert dict(row("market1501", "003", "custom MobileNetV3").metrics) == {"rank1": 77.0, "mAP": 56.3}
    assert dict(row("market1501", "004", "Ours (ResNet-50)").metrics) == {"rank1": 78.03, "mAP": 58.34}
    b0 = row("cuhk01", "000", "EfficientNet-B0 Siamese")
    assert dict(b0.metrics) == {"rank1": 70.1, "rank5": 95.2, "rank10": 99.1, "rank20": 99.2}
    assert b0.ranking == "softmax" and b0.recipes == ("siamese-efficientnet-b0",)
    multidepth = row("cuhk01-485", "001", "multi-depth smoothed features (VGG16)")
    assert dict(multidepth.metrics) == {"rank1": 55.2, "rank10": 89.01, "rank20": 94.0}
    assert row("cuhk03-classic", "002", "Ours-(L2, L3)").metrics["rank1"] == 79.45
    assert row("cuhk03-classic", "002", "Ours-(L2, L3, L4)").metrics["rank1"] == 86.45
    assert get_protocol("cuhk03-classic").recipes[:2] == ("mls-l2l3", "mls-l2l3l4")
    known = set(recipe_names())
    for name in protocol_names():
        assert set(get_protocol(name).recipes) <= known, name
    with pytest.raises(ValueError, match="percentages"):
        PaperRow("000", "x", ("r",), {"rank1": 170.1}, "Table 1")
    with pytest.raises(ValueError, match="metrics must be among"):
        PaperRow("000", "x", ("r",), {"top1": 70.1}, "Table 1")


def test_protocols_load_on_fake_trees_with_their_single_shot_flag(tmp_path: Path) -> None:
    roots = {
        "market1501": make_market_tree(tmp_path / "market"),
        "cuhk01": make_cuhk01_tree(tmp_path / "cuhk01", num_persons=110),
        "viper": make_viper_tree(tmp_path / "viper", num_persons=16),
    }
    write_cuhk03_mat(tmp_path / "cuhk03" / "cuhk-03.mat")
    roots["cuhk03"] = tmp_path / "cuhk03"
    for name in protocol_names():
        protocol = get_protocol(name)
        if protocol.name == "cuhk01-485":
            continue  # 485 / 486 needs > 486 identities; the options are those of cuhk01 otherwise
        split = build_dataset(protocol.dataset, roots[protocol.dataset], **protocol.dataset_options(0))
        assert is_single_shot(split) == protocol.single_shot, name


def test_list_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--list-protocols"]) == 0
    out = capsys.readouterr().out
    for name in protocol_names():
        assert f"{name}: dataset" in out
    assert "paper 002 Ours-(L2, L3) [mls-l2l3]: rank1 79.45" in out and "20 split(s)" in out


# --- --splits, {split}, output folder, comparison ----------------------------------------------------------


def test_parse_splits() -> None:
    assert parse_splits(None, 3) == (0, 1, 2)
    assert parse_splits("0-4", 10) == (0, 1, 2, 3, 4)
    assert parse_splits("0,3,7", 10) == (0, 3, 7)
    assert parse_splits("5, 0-1", 10) == (5, 0, 1)
    for text, message in [
        ("", "cannot parse ''"), ("a", "cannot parse 'a'"), ("-1", "cannot parse '-1'"),
        ("4-1", "reversed range '4-1'"), ("8-10", r"\[10\] out of range \(valid: 0..9"),
        ("1,1", r"\[1\] selected more than once"), ("0-2,2", r"\[2\] selected more than once"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_splits(text, 10)


def test_split_placeholder_rule_and_default_output() -> None:
    assert split_checkpoints("runs/x/split{split}/checkpoint.pt", (0, 3)) == [
        Path("runs/x/split0/checkpoint.pt"), Path("runs/x/split3/checkpoint.pt"),
    ]
    assert split_checkpoints("runs/x/checkpoint.pt", (3,)) == [Path("runs/x/checkpoint.pt")]
    with pytest.raises(ValueError, match=r"has no \{split\} but 2 splits are selected.*seen the other"):
        split_checkpoints("runs/x/checkpoint.pt", (0, 1))
    assert default_output("runs/x/split{split}/checkpoint.pt", "viper") == Path("runs/x/protocol-viper")
    assert default_output("runs/x/checkpoint-{split}.pt", "viper") == Path("runs/x/protocol-viper")
    assert default_output("runs/x/checkpoint.pt", "viper") == Path("runs/x/protocol-viper")


def test_comparison_puts_our_percent_next_to_each_row() -> None:
    aggregate = {"default": {k: {"mean": 0.5, "std": 0.01} for k in ("rank1", "rank5", "rank10", "rank20")}}
    rows = compare_with_papers(get_protocol("cuhk01"), aggregate)
    by_paper = {(r["paper"], r["model"]): r for r in rows}
    assert by_paper[("000", "EfficientNet-B0 Siamese")]["ours_percent"] is None  # no softmax ranking here
    mls = by_paper[("002", "Ours-(L2, L3)")]
    assert mls["ours_percent"] == {k: {"mean": 50.0, "std": 1.0} for k in ("rank1", "rank5", "rank10")}
    assert mls["metrics_percent"]["rank1"] == 86.55


def test_eval_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = str(tmp_path / "split{split}" / "checkpoint.pt")
    cases = [
        (["eval", "--protocol", "viper"], "--checkpoint is required"),
        (["eval", "--protocol", "viper", "--checkpoint", template, "--dataset", "viper"],
         "--dataset viper conflicts with --protocol viper"),
        (["eval", "--protocol", "viper", "--checkpoint", template, "-o", "split_index=1"],
         "-o/--option split_index=1 conflicts with --protocol viper"),
        (["eval", "--checkpoint", template, "--splits", "0-1"], "--splits 0-1 needs --protocol"),
        (["eval", "--protocol", "viper", "--checkpoint", template, "--splits", "3-1"], "reversed range"),
        (["eval", "--protocol", "viper", "--checkpoint", str(tmp_path / "c.pt"), "--splits", "0-1"],
         "has no {split} but 2 splits"),
        (["eval", "--protocol", "viper", "--checkpoint", template, "--splits", "0"],
         "checkpoint(s) not found"),
        (["eval", "--protocol", "viper2", "--checkpoint", template], "unknown protocol 'viper2'"),
        (["train", "--recipe", "demo-osnet-cpu", "--split", "1"], "--split 1 needs --protocol"),
        (["train", "--recipe", "demo-osnet-cpu", "--protocol", "viper", "--dataset", "market1501"],
         "--dataset conflicts with --protocol viper"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in _one_line(capsys.readouterr().err), argv


def test_train_protocol_overrides() -> None:
    out = protocol_overrides("mls-l2l3", "cuhk03-classic-labeled", 4, {})
    assert out == {
        "dataset": "cuhk03", "root": "data/cuhk03",
        "dataset_options": {"variant": "labeled", "protocol": "classic", "split_index": 4},
        "output_dir": str(Path("runs/mls-l2l3/cuhk03-classic-labeled/split4")),
    }
    given = protocol_overrides("bot-resnet50", "market1501", None, {"root": "/d", "output_dir": "o"})
    assert given == {"dataset": "market1501", "dataset_options": {}}
    with pytest.raises(ValueError, match=r"split must be in \[0, 9\], got 12"):
        protocol_overrides("mls-l2l3", "viper", 12, {})


# --- end to end --------------------------------------------------------------------------------------------


def _distinct_viper_tree(root: Path, num_persons: int = 16) -> Path:
    """VIPeR layout with a distinct picture per image: one of four colours per person, heavy noise per image,
    so that the tiny models make ranking mistakes (and two splits give different numbers)."""
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=(4, 3))
    for person in range(num_persons):
        colour = palette[person % len(palette)]
        for folder, name in (("cam_a", f"{person:03d}_45.bmp"), ("cam_b", f"{person:03d}_90.bmp")):
            pixels = np.clip(colour + rng.normal(0, 60, size=(32, 16, 3)), 0, 255).astype(np.uint8)
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / folder / name)
    return root


def _train(root: Path, protocol: str, split: int, out: Path) -> Path:
    argv = ["train", "--recipe", "demo-osnet-cpu", "--protocol", protocol, "--split", str(split),
            "--root", str(root), "--output", str(out), *RUN_FLAGS]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == get_protocol(protocol).dataset
    assert config["dataset_options"]["split_index"] == split
    return out / "checkpoint.pt"


def test_eval_protocol_viper_two_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _distinct_viper_tree(tmp_path / "viper")
    runs = tmp_path / "runs"
    for split in (0, 1):
        _train(root, "viper", split, runs / f"split{split}")
    capsys.readouterr()

    template = str(runs / "split{split}" / "checkpoint.pt")
    assert main(["eval", "--protocol", "viper", "--checkpoint", template, "--splits", "0-1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = json.loads((runs / "protocol-viper" / "protocol.json").read_text())
    assert summary["output"] == str(runs / "protocol-viper" / "protocol.json")
    assert [s["split_index"] for s in report["splits"]] == [0, 1]
    assert [s["dataset_options"] for s in report["splits"]] == [{"split_index": 0}, {"split_index": 1}]
    assert all(s["single_shot"] and s["num_query"] == s["num_gallery"] == 8 for s in report["splits"])
    per_split = [s["rankings"]["default"] for s in report["splits"]]
    assert per_split[0] != per_split[1]  # two models, two test sets
    for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
        values = np.array([run[key] for run in per_split])
        assert report["aggregate"]["default"][key]["mean"] == pytest.approx(values.mean())
        assert report["aggregate"]["default"][key]["std"] == pytest.approx(values.std(ddof=1))
    assert report["aggregate"]["default"]["rank20"]["mean"] == 1.0  # 8 gallery persons: all within rank 20
    assert len(report["comparison"]) == len(get_protocol("viper").rows) == len(summary["papers"])
    fusion = next(r for r in summary["papers"] if r["recipes"] == ["fusion-resnet50"])
    assert fusion["metrics_percent"] == {"rank1": 51.3, "rank5": 82.32, "rank10": 90.24}
    expected = round(100 * report["aggregate"]["default"]["rank1"]["mean"], 2)
    assert fusion["ours_percent"]["rank1"]["mean"] == expected
    assert summary["aggregate_percent"]["default"]["rank1"]["mean"] == expected

    # The split-0 model on split 1 scores test identities it was trained on: refused.
    assert main(["eval", "--protocol", "viper", "--checkpoint", str(runs / "split0" / "checkpoint.pt"),
                 "--splits", "1"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "split 1:" in line and "was trained on" in line and "--protocol viper --split 1" in line


def test_eval_protocol_cuhk01_one_split_without_placeholder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_cuhk01_tree(tmp_path / "cuhk01", num_persons=108)
    checkpoint = _train(root, "cuhk01", 3, tmp_path / "run")
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["eval", "--protocol", "cuhk01", "--checkpoint", str(checkpoint), "--splits", "3",
                 "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = json.loads((out / "protocol.json").read_text())
    (split,) = report["splits"]
    assert split["dataset_options"] == {"protocol": "871/100", "split_index": 3}
    assert (split["num_query"], split["num_gallery"]) == (100, 100)
    assert all(v["std"] == 0.0 for v in report["aggregate"]["default"].values())  # one split
    assert report["aggregate"]["default"]["rank1"]["mean"] == split["rankings"]["default"]["rank1"]
    assert summary["splits"] == [3] and summary["papers"][0]["paper"] == "000"


def test_eval_protocol_cuhk03_catches_a_model_trained_on_another_variants_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cuhk03"
    write_cuhk03_mat(root / "cuhk-03.mat")  # 2 classic splits of 4 test ids
    checkpoint = _train(root, "cuhk03-classic", 0, tmp_path / "run")
    capsys.readouterr()
    assert main(["eval", "--protocol", "cuhk03-classic", "--checkpoint", str(checkpoint), "--splits", "0",
                 "--output", str(tmp_path / "report")]) == 0
    (split,) = json.loads((tmp_path / "report" / "protocol.json").read_text())["splits"]
    assert split["single_shot"] and split["num_query"] == 3  # test person (4, 1) has no view-2 image
    # Detected split 0 trained on identities that are test identities of split 1, in either variant.
    capsys.readouterr()  # the first evaluation's progress lines
    assert main(["eval", "--protocol", "cuhk03-classic-labeled", "--checkpoint", str(checkpoint),
                 "--splits", "1"]) == 2
    assert "was trained on" in _one_line(capsys.readouterr().err)
