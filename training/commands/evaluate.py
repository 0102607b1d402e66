"""``reid eval``: evaluate a checkpoint on a dataset — CMC, mAP, mINP, plots and calibrated thresholds.

Examples::

    reid eval --checkpoint runs/demo/checkpoint.pt --dataset market1501 --root data/synthetic
    reid eval --checkpoint runs/bot/checkpoint.pt --dataset market1501 --root data/market1501 --rerank --flip
    reid eval --checkpoint runs/x/checkpoint.pt --dataset viper --root data/viper -o split_index=3

Writes metrics.json, calibration.json, cmc.png, ranks.png, distances.png and roc.png into ``--output``
(default: ``eval-<dataset>`` beside the checkpoint) and prints the headline numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HELP = "evaluate a checkpoint on a dataset (CMC, mAP, mINP, plots)"
DESCRIPTION = (
    "Rebuild the model stored in a checkpoint, rank the gallery for every query of the dataset's test split "
    "and report CMC rank-1/5/10/20, mAP and mINP (mean ± std over repeated single-shot galleries for CUHK01, "
    "CUHK03-classic and VIPeR), with optional k-reciprocal re-ranking and flip test-time augmentation. "
    "Also calibrates verification thresholds on the query × gallery pairs."
)
METRICS = ("cosine", "euclidean", "correlation", "cityblock", "minkowski")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` arguments to ``parser``."""
    parser.add_argument("--checkpoint", required=True, type=Path, help="RUN/checkpoint.pt of reid train")
    parser.add_argument("--dataset", help="dataset name (default: the one the model was trained on)")
    parser.add_argument("--root", type=Path, help="dataset folder (default: the training root)")
    parser.add_argument(
        "--option", "-o", action="append", default=[], metavar="KEY=VALUE",
        help="dataset loader option, e.g. split_index=3 (repeatable)",
    )
    parser.add_argument(
        "--metric", choices=METRICS, help="distance for ranking (default: the run's eval_metric)"
    )
    parser.add_argument(
        "--shortlist", type=int, help="pairwise models: descriptor shortlist re-ranked by the comparator "
        "(default: the run's pairwise_shortlist, 100)"
    )
    parser.add_argument("--p", type=float, default=3.0, help="exponent of the minkowski distance")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, λ=0.3)")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument("--output", type=Path, help="report folder (default: CHECKPOINT_DIR/eval-DATASET)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--target-fmr", type=float, default=None, help="default threshold's false-match rate")


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
    """Evaluate and print a JSON summary."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see `reid train`
    from training.data.datasets import build_dataset
    from training.engine.checkpoint import load_model
    from training.engine.distributed import select_device
    from training.engine.evaluator import evaluate_model, is_single_shot
    from training.engine.report import write_report
    from training.engine.trainer import preprocess_spec

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    started = time.perf_counter()
    device = select_device(args.device)
    model, cfg, ckpt = load_model(args.checkpoint, map_location=device)
    dataset = args.dataset or cfg.dataset
    root = args.root or Path(cfg.root)
    options = parse_options(args.option) if args.option else (cfg.dataset_options if not args.dataset else {})
    split = build_dataset(dataset, root, **options)
    shortlist = args.shortlist if args.shortlist is not None else cfg.pairwise_shortlist
    result = evaluate_model(
        model, split.query, split.gallery, spec=preprocess_spec(cfg), device=device,
        metric=args.metric or cfg.eval_metric, p=args.p, rerank=args.rerank, flip=args.flip,
        batch_size=args.batch_size, num_workers=args.num_workers, single_shot=is_single_shot(split),
        shortlist=shortlist,
    )
    output = args.output or args.checkpoint.parent / f"eval-{dataset}"
    extra = {
        "dataset": dataset, "root": str(root), "dataset_options": options, "checkpoint": str(args.checkpoint),
        "checkpoint_epoch": int(ckpt["epoch"]) + 1, "architecture": ckpt["architecture"],
    }
    target_fmr = args.target_fmr if args.target_fmr is not None else cfg.target_fmr
    metrics = write_report(result, output, model=model, target_fmr=target_fmr, extra=extra, seed=cfg.seed)
    keys = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
    summary: dict[str, Any] = {"output": str(output), **{k: round(float(metrics[k]), 4) for k in keys}}
    if "single_shot" in metrics:
        summary["single_shot"] = {
            k: {"mean": round(v["mean"], 4), "std": round(v["std"], 4)}
            for k, v in metrics["single_shot"].items() if k in keys
        }
    for ranking in ("softmax", "descriptor"):  # Siamese head ranking; pairwise: descriptor-only ranking
        if ranking in metrics:
            summary[ranking] = {k: round(float(metrics[ranking][k]), 4) for k in keys}
    summary["verification"] = {  # ROC AUC / balanced accuracy at the EER on the test split's pairs
        mode: {k: round(float(v), 4) for k, v in values.items()}
        for mode, values in metrics["verification"].items()
    }
    summary["minutes"] = round((time.perf_counter() - started) / 60, 3)
    print(json.dumps(summary, indent=2))
    return 0
