"""Config, recipe resolution, command-line overrides and the learning-rate schedule."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from training.commands import train as train_command
from training.engine.config import TrainConfig
from training.engine.optim import COSINE_FLOOR, lr_factor
from training.engine.overrides import apply_overrides, parse_field
from training.engine.recipes import get_recipe, recipe_names, resolve_config

REQUIRED_RECIPES = ("bot-resnet50", "osnet-x1_0", "osnet-x0_25", "mobilenetv3-large", "demo-osnet-cpu")


def test_required_recipes_exist_and_follow_bot() -> None:
    assert set(REQUIRED_RECIPES) <= set(recipe_names())
    bot = get_recipe("bot-resnet50").config()
    assert bot.backbone == "resnet50" and bot.last_stride == 1
    assert (bot.p, bot.k, bot.height, bot.width, bot.epochs) == (16, 4, 256, 128, 120)
    assert bot.loss_weights() == {"id": 1.0, "triplet": 1.0, "center": 0.0005}
    assert bot.label_smoothing == 0.1 and bot.milestones == (40, 70)
    assert bot.lr * bot.warmup_factor == pytest.approx(3.5e-5)
    for name in REQUIRED_RECIPES:
        assert "003" in get_recipe(name).paper


def test_unknown_recipe_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown recipe 'nope'.*bot-resnet50.*demo-osnet-cpu"):
        resolve_config("nope")


def test_overrides_are_parsed_by_field_type() -> None:
    cfg = resolve_config(
        "osnet-x0_25",
        {
            "epochs": "7",
            "lr": "1e-3",
            "milestones": "3,5",
            "triplet_margin": "none",
            "amp": "false",
            "dataset_options": "split_index=2,variant=labeled",
            "grad_clip": "5",
        },
    )
    assert cfg.recipe == "osnet-x0_25" and cfg.backbone == "osnet_x0_25"
    assert cfg.epochs == 7 and cfg.lr == 1e-3 and cfg.milestones == (3, 5)
    assert cfg.triplet_margin is None and cfg.amp is False and cfg.grad_clip == 5.0
    assert cfg.dataset_options == {"split_index": 2, "variant": "labeled"}


def test_bad_overrides_name_the_field_and_range() -> None:
    with pytest.raises(ValueError, match=r"unknown config field 'lrr'.*valid fields: recipe"):
        resolve_config("demo-osnet-cpu", {"lrr": "1"})
    with pytest.raises(ValueError, match=r"--epochs: cannot parse 'ten' as int"):
        parse_field("epochs", "ten")
    with pytest.raises(ValueError, match=r"optimizer must be one of adam, sgd, rmsprop; got 'lion'"):
        resolve_config("demo-osnet-cpu", {"optimizer": "lion"})
    with pytest.raises(ValueError, match=r"lr must be > 0, got -1.0"):
        resolve_config("demo-osnet-cpu", {"lr": "-1"})
    with pytest.raises(ValueError, match=r"model_kind 'siamese' needs sampler 'pairs'"):
        apply_overrides(TrainConfig(triplet_weight=0.0), {"model_kind": "siamese"})


def test_cli_flags_override_the_recipe() -> None:
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    args = parser.parse_args(
        ["--recipe", "bot-resnet50", "--epochs", "3", "--max-train-minutes", "2.5", "--output", "runs/x"]
    )
    cfg = train_command.config_from_args(args)
    assert (cfg.epochs, cfg.max_train_minutes, cfg.output_dir) == (3, 2.5, "runs/x")
    assert cfg.backbone == "resnet50" and cfg.weight_decay == 5e-4  # untouched recipe values


def test_config_json_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = resolve_config("fusion-resnet50", {"dataset_options": '{"a": [1, 2]}'})
    path = cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(path) == cfg
    with pytest.raises(ValueError, match=r"unknown config field"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_family_sections_flags_and_old_flat_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = resolve_config("fusion-resnet50", {"siamese.dropout": "0.2", "siamese_relu": "false"})
    assert cfg.section == cfg.siamese and (cfg.siamese.dropout, cfg.siamese.relu) == (0.2, False)
    saved = json.loads(cfg.save(tmp_path / "config.json").read_text())
    assert saved["siamese"] == {"dropout": 0.2, "embedding": "pooled", "relu": False}
    assert "siamese_dropout" not in saved and "pairwise" not in saved
    # a config.json of the flat layout (every family's fields at the top) still loads
    old = {k: v for k, v in saved.items() if k != "siamese"}
    old.update(siamese_dropout=0.2, siamese_embedding="pooled", siamese_relu=False, mls_levels=["l2", "l3"],
               pairwise_shortlist=100, filter_size=20)
    assert TrainConfig.from_dict(old) == cfg
    with pytest.raises(ValueError, match=r"pairwise.shortlist is an option of model_kind 'pairwise'"):
        resolve_config("fusion-resnet50", {"pairwise.shortlist": "5"})
    with pytest.raises(ValueError, match=r"siamese.dropout must be in \[0, 1\), got 1.5"):
        resolve_config("fusion-resnet50", {"siamese.dropout": "1.5"})
    with pytest.raises(ValueError, match=r"unknown model family 'nope'; valid families: embedding, siamese"):
        TrainConfig(model_kind="nope")
    # a new model_kind starts from that family's default section
    pairwise = resolve_config("demo-siamese-cpu", {
        "model_kind": "pairwise", "pairwise.levels": "l2,l3,l4", "id_weight": "0", "verification_weight": "1",
    })
    assert pairwise.backbone == "mls" and pairwise.pairwise.levels == ("l2", "l3", "l4")


def test_reid_train_takes_section_flags_and_old_names() -> None:
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    argv = ["--recipe", "mls-l2l3", "--pairwise.shortlist", "7", "--mls_part_sizes", "l2=4"]
    cfg = train_command.config_from_args(parser.parse_args(argv))
    assert cfg.pairwise.shortlist == 7 and cfg.pairwise.part_sizes == {"l2": 4}


def test_warmup_then_step_schedule_known_values() -> None:
    cfg = get_recipe("bot-resnet50").config()  # warm-up 10 epochs from 0.1, steps at 40 / 70, gamma 0.1
    assert lr_factor(cfg, 0.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 5.0) == pytest.approx(0.55)
    assert lr_factor(cfg, 10.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 39.9) == pytest.approx(1.0)
    assert lr_factor(cfg, 40.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 70.0) == pytest.approx(0.01)


def test_cosine_schedule_known_values() -> None:
    cfg = TrainConfig(scheduler="cosine", warmup_epochs=2.0, epochs=12)
    assert lr_factor(cfg, 2.0) == pytest.approx(1.0)
    middle = COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert lr_factor(cfg, 7.0) == pytest.approx(middle)
    assert lr_factor(cfg, 12.0) == pytest.approx(COSINE_FLOOR)


def test_reid_recipes_lists_one_line_each_with_its_paper(capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main

    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == recipe_names()
    for line in lines:
        if line.split()[0] in REQUIRED_RECIPES:
            assert "[paper 003" in line
