"""``reid eval``: evaluate a checkpoint on a dataset — CMC, mAP, mINP, plots and verification rates —
or a set of per-split checkpoints under a named paper protocol.

Examples::

    reid eval --checkpoint runs/demo/checkpoint.pt --dataset market1501 --root data/synthetic
    reid eval --checkpoint runs/bot/checkpoint.pt --dataset market1501 --root data/market1501 --rerank --flip
    reid eval --checkpoint runs/x/checkpoint.pt --dataset viper --root data/viper -o split_index=3
    reid eval --model models/osnet --root data/my-cameras --dataset folder
    reid eval --list-protocols
    reid eval --protocol cuhk03-classic --root data/cuhk03 \\
        --checkpoint 'runs/mls-l2l3/cuhk03-classic/split{split}/checkpoint.pt' --splits 0-4

``--model DIR`` evaluates a model folder through the service's own runtime (its ONNX sessions, the shared
preprocessing, the manifest's scoring modes; see :mod:`training.commands.evaluate_served`): what is measured
is what is served. The report goes to ``--output`` (default ``eval/<model>-<dataset>``).

One checkpoint: writes metrics.json, cmc.png, ranks.png, distances.png and roc.png into
``--output`` (default: ``eval-<dataset>`` beside the checkpoint) and prints the headline numbers as JSON.

``--protocol NAME`` (see :mod:`training.evaluation.paper_protocols`): the protocol fixes the dataset and its
loader options; split K is evaluated with the checkpoint whose path is ``--checkpoint`` with ``{split}``
replaced by K (each model must be trained on its own split: a model trained on split 0 has seen the other
splits' test identities, so a path without ``{split}`` is refused for more than one split, and a checkpoint
whose training images include the split's test images is refused too). Per split the headline metrics (the
single-shot mean where the protocol is single-shot) are kept; their mean ± sample std over the splits goes to
``protocol.json`` in ``--output`` (default: ``protocol-NAME/`` in the deepest folder of ``--checkpoint``
without ``{split}``) with the papers' published rows, and a JSON summary puts the rows next to ours. No
plots or calibration are written in this mode.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from service.contract.scoring import EMBEDDING_METRICS, METRICS
from training.checks import at_least
from training.commands.common import HEADLINE_KEYS, ranking_summary
from training.engine import progress

HELP = "evaluate a checkpoint or a served model folder on a dataset (CMC, mAP, mINP, plots)"
DESCRIPTION = (
    "Rebuild the model stored in a checkpoint, rank the gallery for every query of the dataset's test split "
    "and report CMC rank-1/5/10/20, mAP and mINP (single shot for CUHK01, CUHK03-classic and VIPeR: their "
    "loaders draw one gallery image per person for each split), with optional k-reciprocal re-ranking and "
    "flip test-time augmentation. "
    "Also measures verification (TPR at FMR, ROC AUC) on the query × gallery pairs. "
    "With --model DIR the model folder is evaluated through the service's runtime (ONNX sessions, shared "
    "preprocessing, the manifest's scoring modes, pairwise shortlist + comparator): what is served. "
    "With --protocol NAME (see --list-protocols) the paper protocol fixes dataset and splits: one checkpoint "
    "per split ('{split}' in --checkpoint), mean ± std over the splits in protocol.json, printed next to the "
    "papers' published rows."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` arguments to ``parser``."""
    parser.add_argument(
        "--checkpoint", help="RUN/checkpoint.pt of reid train; with --protocol it may contain {split}, "
        "replaced by each split index (e.g. 'runs/x/split{split}/checkpoint.pt')",
    )
    parser.add_argument(
        "--model", type=Path, metavar="DIR",
        help="a model folder (models/NAME) evaluated through the service's runtime, instead of --checkpoint",
    )
    parser.add_argument(
        "--protocol", metavar="NAME",
        help="named paper protocol (dataset, options, splits; see --list-protocols)",
    )
    parser.add_argument(
        "--splits", metavar="LIST",
        help="with --protocol: split indices, e.g. '0-4' or '0,3,7' (default: all of them)",
    )
    parser.add_argument(
        "--list-protocols", action="store_true", help="print the paper protocols and their published rows"
    )
    parser.add_argument("--dataset", help="dataset name (default: the one the model was trained on)")
    parser.add_argument("--root", type=Path, help="dataset folder (default: the training root)")
    parser.add_argument(
        "--option", "-o", action="append", default=[], metavar="KEY=VALUE",
        help="dataset loader option, e.g. split_index=3 (repeatable)",
    )
    parser.add_argument(
        "--metric", choices=METRICS,
        help="distance for ranking (default: the run's eval_metric; with --model: the manifest's scoring "
        "modes only, default its default_metric)",
    )
    parser.add_argument(
        "--shortlist", type=int, help="pairwise models: descriptor shortlist re-ranked by the comparator "
        "(default: the run's pairwise.shortlist, 100)"
    )
    parser.add_argument("--p", type=float, default=3.0, help="exponent of the minkowski distance")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, λ=0.3)")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument(
        "--output", type=Path,
        help="report folder (default: CHECKPOINT_DIR/eval-DATASET; with --protocol: protocol-NAME/)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--target-fmr", type=float, default=None, help="default threshold's false-match rate")
    progress.add_arguments(parser)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` → dict; values parsed as JSON when they can be (numbers, booleans)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    """Evaluate and print a JSON summary (or list the protocols)."""
    import os

    progress.configure_from_args(args)
    if args.list_protocols:
        from training.evaluation.paper_protocols import format_protocols

        print(format_protocols())
        return 0
    if args.model is not None:
        if args.checkpoint is not None or args.protocol is not None:
            raise ValueError("--model evaluates a model folder; it excludes --checkpoint and --protocol")
        from training.commands.evaluate_served import run_served

        return run_served(args)
    if args.checkpoint is None:
        raise ValueError("--checkpoint is required (or --model, or --list-protocols)")
    if args.metric is not None and args.metric not in EMBEDDING_METRICS:  # needs the head or the comparator
        raise ValueError(f"--metric {args.metric} is a served scoring mode: use it with --model")
    at_least("--batch-size", args.batch_size, 1)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see `reid train`
    if args.protocol is not None:
        return _run_protocol(args)
    if args.splits is not None:
        raise ValueError(f"--splits {args.splits} needs --protocol NAME (see --list-protocols)")
    return _run_single(args, Path(args.checkpoint))


def _run_single(args: argparse.Namespace, checkpoint: Path) -> int:
    """One checkpoint on one dataset: the full report (metrics, calibration, plots)."""
    from training.data.datasets import build_dataset
    from training.engine.checkpoint import load_model
    from training.engine.distributed import select_device
    from training.engine.trainer import preprocess_spec
    from training.evaluation.evaluator import evaluate_model, is_single_shot
    from training.evaluation.report import write_report

    started = time.perf_counter()
    device = select_device(args.device)
    model, cfg, ckpt = load_model(checkpoint, map_location=device)
    dataset = args.dataset or cfg.dataset
    root = args.root or Path(cfg.root)
    options = parse_options(args.option) if args.option else (cfg.dataset_options if not args.dataset else {})
    split = build_dataset(dataset, root, **options)
    result = evaluate_model(
        model, cfg, split.query, split.gallery, spec=preprocess_spec(cfg), device=device,
        metric=args.metric, p=args.p, rerank=args.rerank, flip=args.flip, batch_size=args.batch_size,
        num_workers=args.num_workers, single_shot=is_single_shot(split), shortlist=args.shortlist,
    )
    output = args.output or checkpoint.parent / f"eval-{dataset}"
    extra = {
        "dataset": dataset, "root": str(root), "dataset_options": options, "checkpoint": str(checkpoint),
        "checkpoint_epoch": int(ckpt["epoch"]) + 1, "architecture": ckpt["architecture"],
    }
    target_fmr = args.target_fmr if args.target_fmr is not None else cfg.target_fmr
    metrics = write_report(result, output, target_fmr=target_fmr, extra=extra, seed=cfg.seed)
    keys = HEADLINE_KEYS
    summary: dict[str, Any] = {"output": str(output), **{k: round(float(metrics[k]), 4) for k in keys}}
    if "single_shot" in metrics:
        summary["single_shot"] = {
            k: {"mean": round(v["mean"], 4), "std": round(v["std"], 4)}
            for k, v in metrics["single_shot"].items() if k in keys
        }
    summary.update(ranking_summary(metrics))
    summary["minutes"] = round((time.perf_counter() - started) / 60, 3)
    print(json.dumps(summary, indent=2))
    return 0


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The six headline metrics of one ranking: the single-shot mean where it was computed."""
    from training.evaluation.paper_protocols import METRIC_KEYS

    single_shot = metrics.get("single_shot")
    if single_shot is not None:
        return {k: float(single_shot[k]["mean"]) for k in METRIC_KEYS}
    return {k: float(metrics[k]) for k in METRIC_KEYS}


def _check_training_split(
    cfg: Any, root: Path, split: Any, options: dict[str, Any], checkpoint: Path, split_index: int,
    protocol: str,
) -> None:
    """Refuse a checkpoint whose training images include test images of this split (same dataset only).

    Images are compared by file name, which in these datasets names one person's image uniquely and is the
    same in both CUHK03 variants (a model trained on ``detected`` split 0 is caught on ``labeled`` split 1).
    """
    from training.data.datasets import build_dataset

    if cfg.dataset != split.name or dict(cfg.dataset_options) == options:
        return  # another dataset (cross-dataset evaluation), or trained on exactly this split
    trained_on = {r.path.name for r in build_dataset(cfg.dataset, root, **cfg.dataset_options).train}
    test_names = {r.path.name for r in [*split.query, *split.gallery]}
    seen = len(test_names & trained_on)
    if seen:
        raise ValueError(
            f"split {split_index}: {checkpoint} was trained on {seen} of this split's {len(test_names)} test "
            f"images (its dataset_options {dict(cfg.dataset_options)}); train one model per split, e.g. "
            f"reid train --protocol {protocol} --split {split_index}"
        )


def _run_protocol(args: argparse.Namespace) -> int:
    """Evaluate one checkpoint per split of a paper protocol; write protocol.json and print a summary."""
    from training.data.datasets import build_dataset
    from training.engine.checkpoint import load_model
    from training.engine.distributed import select_device
    from training.engine.trainer import preprocess_spec
    from training.evaluation.evaluator import evaluate_model, is_single_shot
    from training.evaluation.paper_protocols import RANKINGS, compare_with_papers, get_protocol
    from training.evaluation.protocols import aggregate_runs
    from training.evaluation.splits import default_output, parse_splits, split_checkpoints

    protocol = get_protocol(args.protocol)
    if args.dataset is not None:
        raise ValueError(
            f"--dataset {args.dataset} conflicts with --protocol {protocol.name}, which fixes the dataset "
            f"({protocol.dataset})"
        )
    if args.option:
        raise ValueError(
            f"-o/--option {' '.join(args.option)} conflicts with --protocol {protocol.name}, which fixes the "
            f"loader options ({dict(protocol.options)} + the split index)"
        )
    splits = parse_splits(args.splits, protocol.num_splits)
    checkpoints = split_checkpoints(args.checkpoint, splits)
    missing = [str(path) for path in checkpoints if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint(s) not found: {', '.join(missing)}")
    started = time.perf_counter()
    device = select_device(args.device)
    per_split: list[dict[str, Any]] = []
    for split_index, checkpoint in zip(splits, checkpoints, strict=True):
        model, cfg, ckpt = load_model(checkpoint, map_location=device)
        if per_split and ckpt["architecture"] != per_split[0]["architecture"]:
            raise ValueError(
                f"split {split_index}: {checkpoint} is a {ckpt['architecture']} but split {splits[0]} is a "
                f"{per_split[0]['architecture']}; aggregate the splits of one model"
            )
        root = args.root or Path(cfg.root)
        options = protocol.dataset_options(split_index)
        split = build_dataset(protocol.dataset, root, **options)
        _check_training_split(cfg, root, split, options, checkpoint, split_index, protocol.name)
        result = evaluate_model(
            model, cfg, split.query, split.gallery, spec=preprocess_spec(cfg), device=device,
            metric=args.metric, p=args.p, rerank=args.rerank, flip=args.flip, batch_size=args.batch_size,
            num_workers=args.num_workers, single_shot=is_single_shot(split), shortlist=args.shortlist,
        )
        metrics = result.metrics
        rankings = {"default": _headline(metrics)}
        rankings.update({r: _headline(metrics[r]) for r in RANKINGS[1:] if r in metrics})
        per_split.append({
            "split_index": split_index, "checkpoint": str(checkpoint),
            "checkpoint_epoch": int(ckpt["epoch"]) + 1, "recipe": cfg.recipe,
            "architecture": ckpt["architecture"], "root": str(root),
            "dataset_options": options, "trained_on": {"dataset": cfg.dataset, **dict(cfg.dataset_options)},
            "metric": metrics["metric"], "single_shot": is_single_shot(split),
            "num_query": metrics["num_query"], "num_gallery": metrics["num_gallery"], "rankings": rankings,
        })
    common = [r for r in RANKINGS if all(r in s["rankings"] for s in per_split)]
    aggregate = {r: aggregate_runs([s["rankings"][r] for s in per_split]) for r in common}
    comparison = compare_with_papers(protocol, aggregate)
    output = args.output or default_output(args.checkpoint, protocol.name)
    output.mkdir(parents=True, exist_ok=True)
    report = {
        "protocol": protocol.as_dict(),
        "settings": {
            "checkpoint": args.checkpoint, "splits": list(splits), "device": str(device),
            "metric": args.metric, "rerank": args.rerank, "flip": args.flip, "shortlist": args.shortlist,
            "per_split_value": "single-shot mean over 10 gallery draws (the same draw when the loader keeps "
            "one gallery image per person)" if protocol.single_shot else "full gallery",
            "aggregate": "mean and sample std (ddof 1) over the splits; std 0 for one split; fractions",
        },
        "splits": per_split,
        "aggregate": aggregate,
        "comparison": comparison,
        "minutes": round((time.perf_counter() - started) / 60, 3),
    }
    (output / "protocol.json").write_text(json.dumps(report, indent=2) + "\n")
    summary = {
        "protocol": protocol.name,
        "output": str(output / "protocol.json"),
        "splits": list(splits),
        "recipe": per_split[0]["recipe"],
        "aggregate_percent": {
            ranking: {
                k: {"mean": round(100 * v["mean"], 2), "std": round(100 * v["std"], 2)}
                for k, v in values.items()
            }
            for ranking, values in aggregate.items()
        },
        "papers": [  # published rows next to ours; same_recipe: the row's recipe is the evaluated one
            {
                **{k: row[k] for k in ("paper", "model", "recipes", "ranking")},
                "metrics_percent": row["metrics_percent"], "ours_percent": row["ours_percent"],
                "same_recipe": per_split[0]["recipe"] in row["recipes"],
            }
            for row in comparison
        ],
        "minutes": report["minutes"],
    }
    print(json.dumps(summary, indent=2))
    return 0
