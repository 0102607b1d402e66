"""``reid train``: train a model from a recipe, then evaluate and calibrate it on the test split.

Examples::

    reid train --recipe demo-osnet-cpu --root data/synthetic --output runs/demo
    reid train --recipe bot-resnet50 --root data/market1501 --pretrained weights/resnet50.pth --epochs 60
    reid train --recipe bot-resnet50 --root data/market1501 --output runs/bot --resume    # continue last.pt
    torchrun --nproc_per_node=2 -m service.cli train --recipe osnet-x0_25 --root data/market1501
    reid train --recipe mls-l2l3 --protocol cuhk03-classic --split 3 --root data/cuhk03

``--protocol NAME --split K`` (``reid eval --list-protocols``) trains on split K of a paper protocol: it sets
``dataset`` and ``dataset_options`` (the protocol's options + the split index) and, unless given, ``root``
(the protocol's ``data/<dataset>``) and the run folder (``<recipe output_dir>/NAME/splitK``, the layout
``reid eval --protocol NAME --checkpoint '.../NAME/split{split}/checkpoint.pt'`` reads back).

Every common field of :class:`training.engine.config.TrainConfig` is a flag (``--lr 3e-4``,
``--milestones 40,70``, ``--triplet_margin none``); the fields of the run family's section are
``--FAMILY.FIELD`` (``--siamese.dropout 0.2``, ``--pairwise.levels l2,l3,l4``,
``--multidepth.filter_size 10``); the old flat names (``--siamese_dropout``, ``--mls_levels``,
``--filter_size`` …) still work. The run folder receives config.json, log.csv, last.pt, checkpoint.pt
(best), metrics.json (TPR at FMR and ROC AUC per scoring mode) and the plots; a JSON summary is printed on
stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from training.commands.common import HEADLINE_KEYS, ranking_summary
from training.engine import progress

HELP = "train a model from a recipe"
DESCRIPTION = (
    "Train a model from a recipe (see `reid recipes`); any config field can be overridden with "
    "--<field> VALUE, a field of the model family's section (model_kind) with --<family>.<field> "
    "VALUE (old flat names such as --siamese_dropout still work). At the end the best checkpoint is "
    "evaluated on the test split (CMC, mAP, mINP, plots) and its verification (TPR at FMR, ROC AUC per "
    "scoring mode) measured; a JSON summary is printed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--recipe``, ``--resume``, ``--output``, the progress flags, one flag per config field and one
    per field of each family's section."""
    from training.engine.config import field_names
    from training.families import family_names, get_family

    parser.add_argument("--recipe", required=True, help="recipe name (see `reid recipes`)")
    parser.add_argument(
        "--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
        help="continue a run: from CHECKPOINT, or from OUTPUT/last.pt when no path is given",
    )
    parser.add_argument("--output", dest="output_dir", default=argparse.SUPPRESS, help="run folder")
    progress.add_arguments(parser)
    parser.add_argument("--skip-eval", action="store_true", help="train only: no final evaluation")
    parser.add_argument(
        "--protocol", metavar="NAME",
        help="paper protocol (see `reid eval --list-protocols`): sets dataset, dataset_options with the "
        "split index, and (unless given) root and the run folder RECIPE_OUTPUT/NAME/splitK",
    )
    parser.add_argument(
        "--split", type=int, metavar="K", help="with --protocol: the split to train on (default 0)"
    )
    overrides = parser.add_argument_group("config overrides (any TrainConfig field)")
    for name in field_names():
        if name in ("recipe", "output_dir", "section"):
            continue
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        overrides.add_argument(*flags, dest=name, default=argparse.SUPPRESS, metavar="VALUE")
    overrides.add_argument("--output_dir", "--output-dir", dest="output_dir", default=argparse.SUPPRESS)
    for family in map(get_family, family_names()):
        if family.options_type is None:
            continue
        group = parser.add_argument_group(
            f"model_kind {family.name} ({family.description})",
            f"fields of the {family.name} section; see {family.options_type.__module__}",
        )
        for option in dataclasses.fields(family.options_type):
            group.add_argument(
                f"--{family.name}.{option.name}", dest=f"{family.name}.{option.name}",
                default=argparse.SUPPRESS, metavar="VALUE",
            )
        for legacy in family.legacy_fields:  # the flat names of earlier versions, kept working
            group.add_argument(f"--{legacy}", dest=legacy, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> Any:
    """The recipe's config with every given flag applied."""
    from training.engine.overrides import all_field_names
    from training.engine.recipes import resolve_config
    from training.families import family_names, get_family

    legacy = [name for family in family_names() for name in get_family(family).legacy_fields]
    names = [name for name in all_field_names() + legacy if name != "recipe"]
    overrides = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if args.protocol is not None:
        overrides.update(protocol_overrides(args.recipe, args.protocol, args.split, overrides))
    elif args.split is not None:
        raise ValueError(f"--split {args.split} needs --protocol NAME (see `reid eval --list-protocols`)")
    return resolve_config(args.recipe, overrides)


def protocol_overrides(recipe: str, name: str, split: int | None, given: dict[str, Any]) -> dict[str, Any]:
    """Config fields set by ``--protocol NAME --split K``; ``given`` are the fields set by other flags.

    Raises:
        ValueError: Unknown protocol or recipe, split out of range, or ``--dataset`` / ``--dataset_options``
            given too (the protocol sets them).
    """
    from pathlib import Path

    from training.engine.recipes import get_recipe
    from training.evaluation.paper_protocols import get_protocol

    protocol = get_protocol(name)
    for flag in ("dataset", "dataset_options"):
        if flag in given:
            raise ValueError(
                f"--{flag} conflicts with --protocol {name}, which sets dataset {protocol.dataset} with "
                f"options {dict(protocol.options)} + the split index"
            )
    split_index = 0 if split is None else split
    out: dict[str, Any] = {
        "dataset": protocol.dataset, "dataset_options": protocol.dataset_options(split_index),
    }
    if "root" not in given:
        out["root"] = protocol.default_root
    if "output_dir" not in given:
        out["output_dir"] = str(Path(get_recipe(recipe).config().output_dir) / name / f"split{split_index}")
    return out


def run(args: argparse.Namespace) -> int:
    """Train, then (rank 0) evaluate + calibrate and print the JSON summary."""
    import os

    # Before torch loads OpenMP: spinning worker threads make a shared, busy CPU many times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pathlib import Path

    from training.engine import distributed
    from training.engine.trainer import LAST_CHECKPOINT, Trainer

    progress.configure_from_args(args)

    cfg = config_from_args(args)
    resume = None
    if args.resume is not None:
        resume = Path(cfg.output_dir) / LAST_CHECKPOINT if args.resume == "auto" else Path(args.resume)
        if not resume.is_file():
            raise FileNotFoundError(f"--resume: checkpoint not found: {resume}")
    started = time.perf_counter()
    try:
        trainer = Trainer(cfg, resume=resume, progress=not args.no_progress)
        result = trainer.fit()
        if not trainer.ctx.is_main:
            return 0
        summary: dict[str, Any] = {
            "run": str(result.output_dir),
            "checkpoint": str(result.checkpoint),
            "recipe": cfg.recipe,
            "dataset": cfg.dataset,
            "backbone": cfg.backbone,
            "epochs_completed": result.epochs_completed,
            "stopped_by_time_budget": result.stopped_by_budget,
            "train_minutes": round(result.train_minutes, 3),
        }
        if not args.skip_eval:
            summary.update(_final_evaluation(trainer, result.checkpoint))
        summary["total_minutes"] = round((time.perf_counter() - started) / 60, 3)
        print(json.dumps(summary, indent=2))
        return 0
    finally:
        distributed.teardown()


def _final_evaluation(trainer: Any, checkpoint: Any) -> dict[str, Any]:
    from training.engine.checkpoint import load_model
    from training.evaluation.evaluator import evaluate_model, is_single_shot
    from training.evaluation.report import write_report

    started = time.perf_counter()
    cfg, split, device = trainer.cfg, trainer.split, trainer.ctx.device
    model, _, ckpt = load_model(checkpoint, map_location=device)
    result = evaluate_model(
        model, cfg, split.query, split.gallery, spec=trainer.spec, device=device, rerank=cfg.rerank,
        flip=cfg.flip_test, batch_size=max(cfg.batch_size, 64), num_workers=cfg.num_workers,
        single_shot=is_single_shot(split),
    )
    extra = {"dataset": cfg.dataset, "root": str(cfg.root), "checkpoint": str(checkpoint),
             "checkpoint_epoch": int(ckpt["epoch"]) + 1}
    metrics = write_report(result, cfg.output_dir, target_fmr=cfg.target_fmr, extra=extra, seed=cfg.seed)
    out: dict[str, Any] = {k: round(float(metrics[k]), 4) for k in HEADLINE_KEYS}
    out["tpr_at_fmr"] = metrics["tpr_at_fmr"].get(cfg.eval_metric, metrics["tpr_at_fmr"]["cosine"])
    out.update(ranking_summary(metrics))
    out["eval_minutes"] = round((time.perf_counter() - started) / 60, 3)
    return out
